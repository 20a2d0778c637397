"""The console's FastAPI app. Route handlers only parse the request, check the role and CSRF, call one function of
`medfoundry.services`, and render a template; what an action does lives in the service layer."""

from __future__ import annotations

import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from medfoundry.console.auth import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, AuthSettings, Identity
from medfoundry.workspace import Workspace

HERE = Path(__file__).resolve().parent
ENVIRONMENTS = ("dev", "staging", "prod")
MAX_IMAGE_BYTES = 8 * 1024 * 1024


class Refused(Exception):
    """A request the console refuses with a page that says why (status 400/403/404/409/422)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ConsoleSettings:
    profile: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)
    auth: AuthSettings = field(default_factory=AuthSettings)
    kfp_host: str = ""
    endpoint: str = "http://127.0.0.1:8080"  # the Playground's default model server
    endpoint_api_key: str = ""  # sent to the default endpoint only; never rendered


def create_app(settings: ConsoleSettings) -> FastAPI:
    from medfoundry import tracking
    from medfoundry.console import plots
    from medfoundry.services import runs as run_service

    profile = run_service.resolve_profile(settings.profile, settings.overrides)
    tracking.configure(profile)
    workspace = Workspace.resolve(profile.workspace)
    auth = settings.auth
    app = FastAPI(title="medfoundry console", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(plots=plots, fmt_time=_fmt_time, fmt_duration=_fmt_duration)
    model_name = profile.tracking.registered_model

    # ------------------------------------------------------------------ request plumbing
    @app.middleware("http")
    async def session_middleware(request: Request, call_next):
        session = auth.decode_session(request.cookies.get(SESSION_COOKIE))
        fresh = session is None
        if fresh:
            session = {"sid": secrets.token_urlsafe(18), "user": "", "role": ""}
        request.state.session = session
        request.state.identity = auth.identify(request.headers, session)
        try:
            response = await call_next(request)
        except Refused as err:  # raised inside a handler
            response = _refusal(request, err)
        if fresh and "set_session" not in request.state._state:
            _set_cookie(response, auth.encode_session(session["sid"]))
        new = request.state._state.get("set_session")
        if new is not None:
            _set_cookie(response, new)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                                    "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    def _set_cookie(response: Response, value: str) -> None:
        response.set_cookie(SESSION_COOKIE, value, httponly=True, samesite="strict", secure=auth.secure_cookies,
                            max_age=12 * 3600)

    @app.exception_handler(Refused)
    async def refused_handler(request: Request, err: Refused):
        return _refusal(request, err)

    def _refusal(request: Request, err: Refused) -> Response:
        if err.status == 401 and request.method == "GET" and not request.headers.get("hx-request"):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        if request.headers.get("hx-request"):
            return HTMLResponse(f'<div class="error" role="alert">{_escape(err.message)}</div>', status_code=err.status)
        return render(request, "error.html", {"message": err.message}, status=err.status)

    def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        who: Identity = request.state.identity
        base = {
            "request": request,
            "who": who,
            "csrf": auth.csrf_token(request.state.session["sid"]),
            "auth_mode": auth.mode,
            "profile": profile,
        }
        return templates.TemplateResponse(request, template, {**base, **context}, status_code=status)

    def need(request: Request, role: str) -> Identity:
        who: Identity = request.state.identity
        if not who.authenticated:
            raise Refused(401, "sign in first")
        if not who.can(role):
            raise Refused(403, f"{who.user} has the {who.role} role; this needs {role}")
        return who

    async def form_with_csrf(request: Request, role: str = "operator") -> tuple[Identity, Any]:
        """Every state-changing request: an identity with the role, and the session's CSRF token (form field or
        header). Bearer-token API calls carry no cookie, so they need no CSRF token."""
        who = need(request, role)
        form = await request.form()
        if who.via != "bearer":
            presented = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
            if not auth.csrf_ok(request.state.session["sid"], presented):
                raise Refused(403, "missing or wrong CSRF token: reload the page and try again")
        return who, form

    # ------------------------------------------------------------------ sign in
    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz():
        return "ok"

    @app.get("/favicon.ico")
    async def favicon():
        return Response(status_code=204)

    @app.get("/")
    async def home():
        return RedirectResponse("/runs", status_code=303)

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request):
        return render(request, "login.html", {"error": ""})

    @app.post("/login")
    async def login(request: Request):
        form = await request.form()
        if not auth.csrf_ok(request.state.session["sid"], form.get(CSRF_FIELD)):
            raise Refused(403, "missing or wrong CSRF token: reload the page and try again")
        entry = auth.check_token(str(form.get("token", ""))) if auth.mode == "token" else None
        if entry is None:
            return render(request, "login.html", {"error": "unknown token"}, status=401)
        # A new session id on sign-in: a CSRF token or cookie seen before sign-in is worthless afterwards.
        request.state.set_session = auth.encode_session(secrets.token_urlsafe(18), entry.name, entry.role)
        return RedirectResponse(str(form.get("next") or "/runs"), status_code=303)

    @app.post("/logout")
    async def logout(request: Request):
        await form_with_csrf(request, "viewer")
        request.state.set_session = auth.encode_session(secrets.token_urlsafe(18))
        return RedirectResponse("/login", status_code=303)

    # ------------------------------------------------------------------ pipelines and runs
    def run_form(request: Request, pipeline: str, profile_name: str, values: dict[str, str], errors: dict[str, str],
                 message: str = "", status: int = 200) -> HTMLResponse:
        from medfoundry.config.profile import available_profiles

        try:
            chosen = run_service.resolve_profile(profile_name)
        except Exception as err:  # noqa: BLE001 - an unknown profile name in the URL
            raise Refused(404, str(err)) from None
        cluster = []
        cluster_error = ""
        if settings.kfp_host:
            try:
                cluster = run_service.cluster_pipelines(settings.kfp_host)
            except Exception as err:  # noqa: BLE001 - the page still works without the cluster
                cluster_error = f"Kubeflow Pipelines at {settings.kfp_host} did not answer: {type(err).__name__}"
        return render(request, "pipelines.html", {
            "pipelines": run_service.pipelines(), "cluster": cluster, "cluster_error": cluster_error,
            "kfp_host": settings.kfp_host, "pipeline": pipeline, "profiles": available_profiles(),
            "chosen": profile_name, "fields": _fields(chosen.model_dump(mode="json")), "values": values,
            "errors": errors, "message": message,
            "open_sections": {k.split(".")[0] for k in errors} | {"general", "data", "pretrain", "sft", "rl"},
        }, status=status)

    @app.get("/pipelines", response_class=HTMLResponse)
    async def pipelines_page(request: Request, pipeline: str = "medical-mllm-recipe", profile: str = ""):
        need(request, "viewer")
        return run_form(request, pipeline, profile or settings.profile, {}, {})

    @app.post("/runs")
    async def start_run(request: Request):
        from medfoundry.config import ProfileError

        who, form = await form_with_csrf(request)
        pipeline, profile_name = str(form.get("pipeline", "")), str(form.get("profile", settings.profile))
        values = {k[2:]: str(v) for k, v in form.items() if k.startswith("f:")}
        try:
            defaults = _fields(run_service.resolve_profile(profile_name).model_dump(mode="json"))
            changed = {k: v for k, v in values.items() if k in defaults and v != defaults[k]}
            unknown = sorted(k for k in values if k not in defaults)
            if unknown:
                raise ProfileError(f"unknown field {unknown[0]}", {k: "unknown field" for k in unknown})
            overrides = run_service.parse_overrides([f"{k}={v}" for k, v in changed.items()])
            run = run_service.start_run(workspace, pipeline, profile_name, overrides, who.user, settings.kfp_host)
        except ProfileError as err:
            fields = getattr(err, "fields", {}) or {}
            return run_form(request, pipeline, profile_name, values, fields, str(err), status=422)
        except run_service.RunError as err:
            return run_form(request, pipeline, profile_name, values, {}, str(err), status=409)
        return RedirectResponse(f"/runs/{run.run_id}", status_code=303)

    @app.get("/runs", response_class=HTMLResponse)
    async def runs_page(request: Request, page: int = 1):
        need(request, "viewer")
        size = 50
        page = max(page, 1)
        found, total = run_service.list_runs(workspace, (page - 1) * size, size)
        return render(request, "runs.html", {"runs": found, "total": total, "page": page, "pages": -(-total // size)})

    def _run_or_404(run_id: str):
        try:
            return run_service.get_run(workspace, run_id)
        except run_service.RunError as err:
            raise Refused(404, str(err)) from None

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    async def run_page(request: Request, run_id: str):
        need(request, "viewer")
        detail = run_service.run_detail(_run_or_404(run_id))
        return render(request, "run.html", {"d": detail, "log": run_service.read_log(detail.run),
                                            "mlflow": _mlflow_base(detail.run.tracking_uri)})

    @app.get("/runs/{run_id}/status", response_class=HTMLResponse)
    async def run_status(request: Request, run_id: str):
        need(request, "viewer")
        detail = run_service.run_detail(_run_or_404(run_id))
        response = render(request, "_run_status.html", {"d": detail, "log": run_service.read_log(detail.run),
                                                        "mlflow": _mlflow_base(detail.run.tracking_uri)})
        if detail.run.status in run_service.TERMINAL:
            response.status_code = 286  # htmx: stop polling
        return response

    @app.get("/runs/{run_id}/log")
    async def run_log(request: Request, run_id: str):
        need(request, "viewer")
        run = _run_or_404(run_id)
        return PlainTextResponse(run_service.read_log(run, tail_bytes=None),
                                 headers={"Content-Disposition": f'attachment; filename="{run.run_id}.log"'})

    @app.post("/runs/{run_id}/cancel")
    async def cancel(request: Request, run_id: str):
        who, _ = await form_with_csrf(request)
        try:
            run_service.cancel_run(workspace, run_id, who.user)
        except run_service.RunError as err:
            raise Refused(409, str(err)) from None
        return RedirectResponse(f"/runs/{run_id}", status_code=303)

    # ------------------------------------------------------------------ data
    @app.get("/data", response_class=HTMLResponse)
    async def data_page(request: Request, run: str = ""):
        from medfoundry.services import data as data_service

        need(request, "viewer")
        versions = data_service.dataset_versions()
        chosen = run or (versions[0].run_id if versions else "")
        report = data_service.coverage_report(chosen) if chosen else {"coverage": {}, "rarity_coverage": {}, "plots": []}
        return render(request, "data.html", {"versions": versions, "chosen": chosen, "report": report})

    @app.get("/artifacts/{run_id}/{path:path}")
    async def artifact(request: Request, run_id: str, path: str):
        from medfoundry.services import data as data_service

        need(request, "viewer")
        if not path.endswith((".png", ".svg")):
            raise Refused(400, "only plot images are served")
        tmp = Path(tempfile.mkdtemp(prefix="mf-artifact-"))
        try:
            local = data_service.artifact_file(run_id, path, tmp)
        except Exception as err:  # noqa: BLE001 - unknown run or path
            raise Refused(404, f"no artifact {path} in run {run_id}: {type(err).__name__}") from None
        return FileResponse(local, media_type="image/svg+xml" if path.endswith(".svg") else "image/png")

    # ------------------------------------------------------------------ models
    from medfoundry.release.registry import RegistryError
    from medfoundry.services import models as model_service

    def _version(name: str, version: str):
        from medfoundry.release import registry

        try:
            return registry.get_version(name, version)
        except RegistryError as err:
            raise Refused(404, str(err)) from None

    @app.get("/models", response_class=HTMLResponse)
    async def models_page(request: Request, page_token: str = ""):
        need(request, "viewer")
        versions, next_token = model_service.page_versions(model_name, page_token=page_token or None)
        return render(request, "models.html", {"versions": versions, "model_name": model_name,
                                               "next_token": next_token, "first": not page_token})

    @app.get("/models/{name}/compare", response_class=HTMLResponse)
    async def compare_page(request: Request, name: str, base: str = "", candidate: str = ""):
        need(request, "viewer")
        versions = [v for v in model_service.list_versions(name)]
        result, error = None, ""
        if base and candidate:
            try:
                result = model_service.compare_versions(name, base, candidate)
            except RegistryError as err:
                error = str(err)
        return render(request, "compare.html", {"name": name, "versions": versions, "base": base,
                                                "candidate": candidate, "result": result, "error": error},
                      status=200 if not error else 404)

    @app.get("/models/{name}/{version}", response_class=HTMLResponse)
    async def model_page(request: Request, name: str, version: str, env: str = ""):
        need(request, "viewer")
        info = _version(name, version)
        env = env if env in ENVIRONMENTS else profile.gitops.environment
        decision, champion = model_service.gate_preview(profile, name, info.version, env)
        return render(request, "model.html", {"info": info, "scores": model_service.eval_scores(info),
                                              "decision": decision, "champion": champion, "env": env,
                                              "environments": ENVIRONMENTS, "result": None})

    @app.post("/models/{name}/{version}/promote", response_class=HTMLResponse)
    async def promote(request: Request, name: str, version: str):
        from medfoundry.release.gitops import GitOpsError
        from medfoundry.release.promote import PromotionError

        who, form = await form_with_csrf(request)
        env = str(form.get("env", ""))
        if env not in ENVIRONMENTS:
            raise Refused(400, f"unknown environment {env!r}: use one of {', '.join(ENVIRONMENTS)}")
        if form.get("confirm") != "yes":
            raise Refused(400, "promotion not confirmed: tick the confirmation box")
        info = _version(name, version)
        try:
            result = model_service.promote(profile, name, info.version, env, who.user)
        except (PromotionError, RegistryError, GitOpsError) as err:
            raise Refused(409, str(err)) from None
        info = _version(name, version)
        decision, champion = model_service.gate_preview(profile, name, info.version, env)
        return render(request, "model.html", {"info": info, "scores": model_service.eval_scores(info),
                                              "decision": result.decision or decision, "champion": champion,
                                              "env": env, "environments": ENVIRONMENTS, "result": result},
                      status=200 if result.promoted else 409)

    # ------------------------------------------------------------------ GitOps
    @app.get("/gitops", response_class=HTMLResponse)
    async def gitops_page(request: Request, env: str = ""):
        need(request, "viewer")
        env = env if env in ENVIRONMENTS else profile.gitops.environment
        history = model_service.gitops_history(profile, env)
        return render(request, "gitops.html", {"env": env, "environments": ENVIRONMENTS, "history": history,
                                               "result": None})

    @app.post("/gitops/{env}/rollback", response_class=HTMLResponse)
    async def rollback(request: Request, env: str):
        from medfoundry.release.gitops import GitOpsError
        from medfoundry.release.promote import PromotionError

        who, form = await form_with_csrf(request)
        if env not in ENVIRONMENTS:
            raise Refused(400, f"unknown environment {env!r}")
        if form.get("confirm") != "yes":
            raise Refused(400, "rollback not confirmed: tick the confirmation box")
        try:
            result = model_service.rollback(profile, env, who.user)
        except (PromotionError, GitOpsError) as err:
            raise Refused(409, str(err)) from None
        history = model_service.gitops_history(profile, env)
        return render(request, "gitops.html", {"env": env, "environments": ENVIRONMENTS, "history": history,
                                               "result": result})

    @app.get("/gitops/commit/{sha}", response_class=HTMLResponse)
    async def commit_page(request: Request, sha: str):
        from medfoundry.release.gitops import GitOpsError

        need(request, "viewer")
        try:
            text = model_service.gitops_commit(profile, sha)
        except GitOpsError as err:
            raise Refused(404, str(err)) from None
        return render(request, "commit.html", {"sha": sha, "text": text})

    # ------------------------------------------------------------------ playground
    @app.get("/playground", response_class=HTMLResponse)
    async def playground_page(request: Request):
        need(request, "viewer")
        return render(request, "playground.html", {"endpoint": settings.endpoint})

    async def chat_request(request: Request):
        from medfoundry.services.playground import ChatRequest

        who, form = await form_with_csrf(request, "viewer")
        endpoint = str(form.get("endpoint") or settings.endpoint).strip()
        if endpoint != settings.endpoint and not who.can("operator"):
            raise Refused(403, "only operators may chat with an endpoint other than the configured one")
        if not endpoint.startswith(("http://", "https://")):
            raise Refused(400, f"endpoint {endpoint!r}: use an http:// or https:// URL")
        upload = form.get("image")
        image, image_name = None, ""
        if upload is not None and getattr(upload, "filename", ""):
            image = await upload.read(MAX_IMAGE_BYTES + 1)
            image_name = upload.filename
            if len(image) > MAX_IMAGE_BYTES:
                raise Refused(413, "image larger than 8 MiB")
        question = str(form.get("question", "")).strip()
        if not question:
            raise Refused(400, "type a question first")
        try:
            chat = ChatRequest(
                endpoint=endpoint, question=question, model=str(form.get("model", "")).strip(), image=image or None,
                image_name=image_name, temperature=_number(form, "temperature", float, 0.0, 2.0),
                top_p=_number(form, "top_p", float, 0.01, 1.0), max_tokens=_number(form, "max_tokens", int, 1, 4096),
            )
        except ValueError as err:
            raise Refused(400, str(err)) from None
        key = str(form.get("api_key", "")) or (settings.endpoint_api_key if endpoint == settings.endpoint else "")
        return chat, key or None

    @app.post("/playground/chat")
    async def chat(request: Request):
        from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

        from medfoundry.services.playground import PlaygroundError, stream_chat

        chat_req, key = await chat_request(request)
        try:
            pieces = await run_in_threadpool(stream_chat, chat_req, key)
        except (PlaygroundError, ValueError) as err:
            raise Refused(502 if isinstance(err, PlaygroundError) else 400, str(err)) from None
        return StreamingResponse(iterate_in_threadpool(pieces), media_type="text/plain; charset=utf-8",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/playground/snippet", response_class=HTMLResponse)
    async def snippet(request: Request):
        from medfoundry.services.playground import snippets

        chat_req, _ = await chat_request(request)
        return render(request, "_snippet.html", {"snippets": snippets(chat_req)})

    return app


def _number(form: Any, key: str, kind: type, lo: float, hi: float):
    raw = str(form.get(key, "")).strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{key}: {raw!r} is not a number") from None
    if not lo <= value <= hi:
        raise ValueError(f"{key}: {value} is outside {lo}..{hi}")
    return value


def _fields(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Leaf fields of a profile as dotted keys and their YAML text: the run form's inputs."""
    import json

    out: dict[str, str] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_fields(value, dotted + "."))
        elif isinstance(value, str):
            out[dotted] = value
        else:
            out[dotted] = json.dumps(value)
    return out


def _mlflow_base(tracking_uri: str) -> str:
    """Links to MLflow runs work when the store is an MLflow server; a sqlite store has no UI to link to."""
    return tracking_uri.rstrip("/") if tracking_uri.startswith("http") else ""


def _fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{seconds:.1f}s"


def _escape(text: str) -> str:
    from html import escape

    return escape(text)
