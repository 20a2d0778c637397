"""`medfoundry promote` and `medfoundry rollback` (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("promote")(promote_command)
    app.command("rollback")(rollback_command)


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _actor() -> str:
    """Who runs the command: recorded with every promotion and rollback."""
    import getpass
    import socket

    return f"{getpass.getuser()}@{socket.gethostname()} (cli)"


def _profile(profile: str, overrides: list[str] | None):
    from medfoundry import tracking
    from medfoundry.cli import load_profile_or_exit

    prof = load_profile_or_exit(profile, overrides)
    tracking.configure(prof)
    return prof


def promote_command(
    model: str = typer.Option(None, "--model", "-m", help="Registered model name (default: the profile's)."),
    env: str = typer.Option(None, "--env", "-e", help="dev | staging | prod (default: the profile's)."),
    version: str = typer.Option(None, "--version", "-v", help="Model version (default: the `candidate` alias)."),
    profile: str = typer.Option("tiny", "--profile", "-p", help="Profile (gates, GitOps repository, tracking)."),
    set_: list[str] = typer.Option(None, "--set", help="Override a profile field, e.g. --set gates.max_regression=0.05."),
) -> None:
    """Gate a registered version against the champion; on pass, commit its InferenceService and move the aliases."""
    from rich.console import Console
    from rich.table import Table

    from medfoundry.release.gitops import GitOpsError
    from medfoundry.release.promote import PromotionError, promote_model
    from medfoundry.release.registry import RegistryError

    prof = _profile(profile, set_)
    console = Console()
    try:
        result = promote_model(prof, model or prof.tracking.registered_model, version or "", env, actor=_actor())
    except (PromotionError, RegistryError, GitOpsError) as err:
        raise _fail(str(err)) from None
    if result.decision is not None:
        table = Table(title=f"gate for {result.name} v{result.version} -> {result.env}", title_justify="left")
        for column in ("check", "benchmark", "result", "detail"):
            table.add_column(column)
        for check in result.decision.checks:
            table.add_row(check.name, check.benchmark, "[green]pass[/]" if check.passed else "[red]FAIL[/]", check.detail)
        console.print(table)
        console.print(f"decision recorded: {result.decision_path}")
    if not result.promoted:
        console.print(f"[bold red]refused[/]: {result.name} v{result.version} stays out of {result.env}")
        raise typer.Exit(1)
    console.print(f"[bold green]{result.message}[/]" + (" (pushed)" if result.pushed else ""))
    console.print(f"manifest: {result.manifest_path}")


def rollback_command(
    env: str = typer.Option(None, "--env", "-e", help="dev | staging | prod (default: the profile's)."),
    profile: str = typer.Option("tiny", "--profile", "-p"),
    set_: list[str] = typer.Option(None, "--set"),
) -> None:
    """Undo the newest promotion of an environment: restore its previous manifest and aliases in one commit."""
    from rich.console import Console

    from medfoundry.release.gitops import GitOpsError
    from medfoundry.release.promote import PromotionError, rollback

    prof = _profile(profile, set_)
    try:
        result = rollback(prof, env, actor=_actor())
    except (PromotionError, GitOpsError) as err:
        raise _fail(str(err)) from None
    Console().print(f"[bold]{result.message}[/] in {result.commit[:10]}" + (" (pushed)" if result.pushed else ""))
