"""The HTTP server: KServe's ModelServer data plane (v1, v2, /metrics) plus OpenAI routes, behind the hardening
middleware, bound to the host you choose (127.0.0.1 unless told otherwise).

KServe 0.21's ModelServer.start() binds 0.0.0.0 and mutates a module-global FastAPI app; `MedFoundryModelServer`
builds the same endpoints on an app of its own and runs uvicorn on the requested host, without gRPC.
The model loads in the background after the socket is open, so `/v2/health/ready` answers 503 until it is loaded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from medfoundry.config.release import ServingConfig
from medfoundry.serving import metrics
from medfoundry.serving.batching import QueueFull, ShuttingDown
from medfoundry.serving.engine import RequestError
from medfoundry.serving.hardening import GuardMiddleware, json_response
from medfoundry.serving.model import MedVLMModel, kserve

log = logging.getLogger("medfoundry.serving")
OPEN_PATHS = frozenset({"/", "/metrics", "/v2/health/live", "/v2/health/ready"})


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    serving: ServingConfig = field(default_factory=ServingConfig)


class _ModelAwareDataPlane(kserve.protocol.dataplane.DataPlane):
    """KServe's server readiness is always true; ours is true once every registered model is loaded."""

    async def ready(self) -> bool:
        models = list(self.model_registry.get_models().values())
        return bool(models) and all([await m.healthy() for m in models])


class MedFoundryModelServer(kserve.ModelServer):
    def __init__(self, settings: ServerSettings):
        super().__init__(http_port=settings.port, enable_grpc=False, workers=1, enable_latency_logging=False)
        self.settings = settings
        self.dataplane = _ModelAwareDataPlane(model_registry=self.registered_models)
        self._uvicorn = None

    def create_app(self, model: MedVLMModel):
        from fastapi import FastAPI
        from fastapi.exceptions import RequestValidationError
        from kserve import errors as kerr
        from kserve.protocol.rest.server import metrics_handler
        from kserve.protocol.rest.v2_endpoints import register_v2_endpoints

        self.register_model(model)
        app = FastAPI(title="medfoundry model server", docs_url=None, redoc_url=None)
        app.add_api_route("/", self.dataplane.live, methods=["GET"])
        app.add_api_route("/metrics", metrics_handler, methods=["GET"])
        register_openai_routes(app, model, self.settings.serving)
        # No KServe v1 routes: this model takes v2 or OpenAI requests, and v1 :predict could only answer 400.
        register_v2_endpoints(app, self.dataplane, self.model_repository_extension)

        retry = {"Retry-After": "5"}
        handlers = {
            RequestValidationError: lambda r, e: json_response(400, _validation_message(e), "invalid_request_error"),
            RequestError: lambda r, e: json_response(400, str(e), "invalid_request_error", e.code, e.param),
            QueueFull: lambda r, e: json_response(
                429, str(e), "rate_limit_error", "queue_full", headers={"Retry-After": str(e.retry_after)}
            ),
            ShuttingDown: lambda r, e: json_response(503, str(e), "server_error", "shutting_down", headers=retry),
            kerr.ModelNotReady: lambda r, e: json_response(503, str(e), "server_error", "model_not_ready", headers=retry),
            kerr.ServerNotReady: lambda r, e: json_response(503, "model is loading", "server_error", "not_ready", headers=retry),
            kerr.InvalidInput: lambda r, e: json_response(400, str(e.reason), "invalid_request_error"),
            kerr.ModelNotFound: lambda r, e: json_response(404, str(e.reason), "not_found_error", "model_not_found"),
            kerr.ServerNotLive: kerr.server_not_live_handler,
            NotImplementedError: kerr.not_implemented_error_handler,
        }
        for exc, handler in handlers.items():
            app.add_exception_handler(exc, _async(handler))

        @app.exception_handler(Exception)
        async def _unexpected(request: Request, err: Exception):
            log.error("unhandled %s on %s", type(err).__name__, request.url.path)
            return json_response(500, "internal error", "server_error")

        return GuardMiddleware(
            app, api_key=self.settings.api_key, max_body_bytes=self.settings.serving.max_body_bytes, open_paths=OPEN_PATHS
        )

    def uvicorn_server(self, model: MedVLMModel):
        import uvicorn

        config = uvicorn.Config(
            self.create_app(model),
            host=self.settings.host,
            port=self.settings.port,
            log_config=None,
            access_log=False,  # an access log line per request is noise at load; metrics count them
            timeout_graceful_shutdown=5,
            loop="asyncio",
        )
        self._uvicorn = uvicorn.Server(config)
        return self._uvicorn

    def start_loading(self, model: MedVLMModel) -> threading.Thread:
        def load() -> None:
            try:
                model.load()
            except Exception:  # noqa: BLE001 - logged in load(); the server stays up and not ready
                pass

        thread = threading.Thread(target=load, name="medfoundry-model-load", daemon=True)
        thread.start()
        return thread

    def serve(self, model: MedVLMModel) -> None:
        """Blocking: open the socket, load the model in the background, serve until SIGINT/SIGTERM."""
        server = self.uvicorn_server(model)
        self.start_loading(model)
        try:
            server.run()
        finally:
            model.stop()


async def _unless_disconnected(request: Request, work: Any, poll_s: float = 0.5) -> Any:
    """Await `work`, cancelling it (which frees its engine slot) if the client disconnects first; None then."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=poll_s)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            return None


def _async(handler):
    async def wrapped(request, err):
        return handler(request, err)

    return wrapped


def _validation_message(err: Any) -> str:
    errors = err.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    if first.get("type") == "json_invalid":
        return f"malformed JSON body: {first.get('ctx', {}).get('error', first.get('msg'))}"
    return f"{where}: {first.get('msg')}"


def register_openai_routes(app: Any, model: MedVLMModel, serving: ServingConfig) -> None:
    from fastapi.responses import StreamingResponse

    from medfoundry.serving import openai_api as oa

    async def list_models():
        return oa.model_list(model.name, model.loaded_at)

    async def chat_completions(request: Request):
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            metrics.REJECTED.labels(reason="invalid").inc()
            return json_response(400, f"malformed JSON body: {err}", "invalid_request_error", "invalid_json")
        if not isinstance(body, dict):
            return json_response(400, "the body must be a JSON object", "invalid_request_error", "invalid_json")
        try:
            chat = oa.parse_request(body)
            if chat.model != model.name:
                return json_response(404, f"model {chat.model!r} is not served here (try {model.name!r})",
                                     "not_found_error", "model_not_found", "model")
            if not model.ready:
                metrics.REJECTED.labels(reason="not_ready").inc()
                return json_response(503, "model is loading", "server_error", "not_ready", headers={"Retry-After": "5"})
            generation, image = oa.to_generation(chat, serving.max_new_tokens, serving.max_new_tokens, model.accepts_images)
            if image is not None:
                generation.image = await model.decode_image(*image)
        except RequestError:
            metrics.REJECTED.labels(reason="invalid").inc()
            raise
        if serving.log_prompts:
            log.info("prompt: %s", json.dumps([m["content"] for m in generation.messages])[:2000])
        cid = oa.completion_id()
        if not chat.stream:
            result = await _unless_disconnected(request, model.batcher.submit(generation))
            if result is None:  # the client went away: its slot was freed; nobody reads this response
                return json_response(499, "client closed the request", "client_closed")
            return oa.chat_completion(cid, model.name, result)

        events = model.batcher.stream(generation)
        kind, value = await events.__anext__()  # errors (queue full, prompt too long) still get a status code
        include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
        created = int(time.time())

        content_chunk = oa.content_chunks(cid, model.name, created)

        async def sse():
            try:
                yield oa.chunk(cid, model.name, created, {"role": "assistant", "content": ""})
                async for kind, value in events:
                    if kind == "delta" and value:
                        yield content_chunk(value)
                    elif kind == "done":
                        yield oa.chunk(cid, model.name, created, {}, finish_reason=value.finish_reason)
                        if include_usage:
                            yield oa.chunk(cid, model.name, created, {}, usage=oa.usage(value))
                yield "data: [DONE]\n\n"
            except (RequestError, ShuttingDown) as err:
                yield "data: " + json.dumps(oa.error_body(str(err), "server_error")) + "\n\n"
            finally:
                await events.aclose()

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    app.add_api_route("/openai/v1/models", list_models, methods=["GET"])
    app.add_api_route("/openai/v1/chat/completions", chat_completions, methods=["POST"])


class BackgroundServer:
    """Run a server in a thread of this process (tests, benchmarks): `with BackgroundServer(model, settings) as url:`."""

    def __init__(self, model: MedVLMModel, settings: ServerSettings, wait_ready: bool = True, timeout: float = 120):
        self.model = model
        self.settings = settings
        self.wait_ready = wait_ready
        self.timeout = timeout
        self.server = MedFoundryModelServer(settings)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    def __enter__(self) -> str:
        uv = self.server.uvicorn_server(self.model)
        self._thread = threading.Thread(target=lambda: asyncio.run(uv.serve()), name="medfoundry-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.timeout
        while not uv.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.02)
        if self.wait_ready:
            if not self.model.ready:
                self.server.start_loading(self.model).join(self.timeout)
            if not self.model.ready:
                raise RuntimeError(f"model did not load: {self.model.load_error}")
        return self.url

    def __exit__(self, *exc: Any) -> None:
        if self.server._uvicorn is not None:
            self.server._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.model.stop()
