"""`medfoundry console`: serve the web console (heavy imports stay inside the command body)."""

from __future__ import annotations

from pathlib import Path

import typer

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(app: typer.Typer) -> None:
    app.command("console")(console_command)


def console_command(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind. Loopback by default; 0.0.0.0 only behind auth (in a container)."
    ),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="Port to listen on."),
    profile: str = typer.Option(
        "tiny", "--profile", "-p",
        help="Profile for the workspace, MLflow store, registered model name, gates and GitOps repository.",
    ),
    set_: list[str] = typer.Option(None, "--set", help="Override a profile field of the console's profile (KEY=VALUE)."),
    auth: str = typer.Option(
        "token", "--auth",
        help="token: sign in with an API token from --token-file (or a one-off token printed at start); "
        "proxy: trust the identity header of an OIDC proxy (oauth2-proxy's X-Forwarded-User / X-Forwarded-Email).",
    ),
    token_file: Path = typer.Option(
        None, "--token-file", envvar="MEDFOUNDRY_CONSOLE_TOKEN_FILE", dir_okay=False,
        help="File of API tokens, one per line: `TOKEN [viewer|operator [NAME]]` (a mounted Secret works). "
        "Without it a random operator token is generated and printed once.",
    ),
    operators: str = typer.Option(
        "", "--operators", envvar="MEDFOUNDRY_CONSOLE_OPERATORS",
        help="--auth proxy: comma-separated users or emails with the operator role; everyone else is a viewer.",
    ),
    user_header: str = typer.Option("X-Forwarded-User", "--user-header", help="--auth proxy: the user header."),
    email_header: str = typer.Option("X-Forwarded-Email", "--email-header", help="--auth proxy: the email header."),
    secure_cookies: bool = typer.Option(
        False, "--secure-cookies", help="Mark the session cookie Secure (set it when users reach the console over HTTPS)."
    ),
    kfp_host: str = typer.Option(
        "", "--kfp-host", envvar="MEDFOUNDRY_KFP_HOST",
        help="Kubeflow Pipelines API endpoint: runs start there and its pipelines are listed. Empty: local runs.",
    ),
    endpoint: str = typer.Option(
        "http://127.0.0.1:8080", "--endpoint", envvar="MEDFOUNDRY_ENDPOINT",
        help="The Playground's default model server (ours or any OpenAI-compatible endpoint).",
    ),
    endpoint_key_file: Path = typer.Option(
        None, "--endpoint-key-file", dir_okay=False,
        help="File holding the API key of --endpoint (sent to it by the server, never shown in a page).",
    ),
) -> None:
    """Serve the web console: pipelines and runs, datasets, models (compare, promote, roll back), a chat playground."""
    import secrets

    import uvicorn

    from medfoundry.cli import _fail
    from medfoundry.config import ProfileError
    from medfoundry.console.app import ConsoleSettings, create_app
    from medfoundry.console.auth import AuthConfigError, AuthSettings, TokenEntry, load_tokens
    from medfoundry.services.runs import parse_overrides

    if auth not in ("token", "proxy"):
        raise _fail(f"--auth {auth!r}: use token or proxy")
    if auth == "proxy" and host not in LOOPBACK and not operators:
        typer.echo("warning: --auth proxy without --operators: everyone is a viewer", err=True)
    one_off = ""
    try:
        if auth == "token" and token_file is not None:
            tokens = load_tokens(token_file)
        elif auth == "token":
            import hashlib

            one_off = secrets.token_urlsafe(24)
            tokens = [TokenEntry("local-operator", "operator", hashlib.sha256(one_off.encode()).hexdigest())]
        else:
            tokens = []
    except (OSError, AuthConfigError) as err:
        raise _fail(str(err)) from None
    settings = ConsoleSettings(
        profile=profile,
        auth=AuthSettings(
            mode=auth, tokens=tokens, proxy_user_header=user_header.lower(), proxy_email_header=email_header.lower(),
            operators=frozenset(o.strip() for o in operators.split(",") if o.strip()), secure_cookies=secure_cookies,
        ),
        kfp_host=kfp_host, endpoint=endpoint,
        endpoint_api_key=endpoint_key_file.read_text().strip() if endpoint_key_file else "",
    )
    try:
        settings.overrides = parse_overrides(set_ or [])
        app = create_app(settings)
    except ProfileError as err:
        raise _fail(str(err)) from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    typer.echo(f"medfoundry console on http://{shown}:{port}/ (profile {profile}, auth {auth})")
    if one_off:
        typer.echo(f"sign in with this one-off operator token (valid until the console stops): {one_off}")
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)
