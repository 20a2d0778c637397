"""Request hardening as one ASGI middleware: API-key auth, body size limit, per-route metrics.

- Auth: `Authorization: Bearer <key>` (what the OpenAI SDK sends) or `X-API-Key: <key>`; missing -> 401, wrong -> 403.
  Health probes and /metrics stay open so Kubernetes and Prometheus need no secret.
- Bodies over `max_body_bytes` -> 413, checked on Content-Length and again while reading (chunked uploads).
- Nothing from the request body is logged here.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from medfoundry.serving import metrics


def json_response(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
):
    from fastapi.responses import JSONResponse

    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class GuardMiddleware:
    def __init__(self, app: Any, api_key: str | None, max_body_bytes: int, open_paths: frozenset[str]):
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes
        self.open_paths = open_paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_tracking(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._check_auth(scope) or self._check_length(scope)
            if refusal is not None:
                await refusal(scope, receive, send_tracking)
                return
            body, refusal = await self._read_body(receive)
            if refusal is not None:
                await refusal(scope, receive, send_tracking)
                return
            await self.app(scope, _replay(body, receive), send_tracking)
        finally:
            # The matched route template (FastAPI puts it in the scope), never the raw path: bounded label values.
            label = getattr(scope.get("route"), "path", None) or "unrouted"
            metrics.REQUESTS.labels(route=label, status=str(status["code"])).inc()
            metrics.LATENCY.labels(route=label).observe(time.perf_counter() - started)

    def _check_auth(self, scope: dict):
        if self.api_key is None or scope["path"] in self.open_paths:
            return None
        headers = dict(scope.get("headers") or [])
        given = None
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        elif b"x-api-key" in headers:
            given = headers[b"x-api-key"].strip()
        if not given:
            metrics.REJECTED.labels(reason="unauthenticated").inc()
            return json_response(
                401, "missing API key: send Authorization: Bearer <key>", "authentication_error", "missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given, self.api_key):
            metrics.REJECTED.labels(reason="forbidden").inc()
            return json_response(403, "invalid API key", "permission_error", "invalid_api_key")
        return None

    def _too_large(self):
        metrics.REJECTED.labels(reason="too_large").inc()
        return json_response(
            413, f"request body exceeds {self.max_body_bytes} bytes", "invalid_request_error", "request_too_large"
        )

    def _check_length(self, scope: dict):
        for key, value in scope.get("headers") or []:
            if key == b"content-length":
                try:
                    if int(value) > self.max_body_bytes:
                        return self._too_large()
                except ValueError:
                    return json_response(400, "invalid Content-Length", "invalid_request_error")
        return None

    async def _read_body(self, receive: Any) -> tuple[bytes, Any]:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return b"", None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _replay(body: bytes, receive: Any):
    """A receive() that hands the already-read body to the app once, then waits for disconnect as usual."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
