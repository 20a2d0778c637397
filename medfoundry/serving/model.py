"""The medical VLM as a `kserve.Model`: loads from the registry or a path, serves requests through continuous
batching (or vLLM), answers KServe v2.

KServe v2 inference (`POST /v2/models/<name>/infer`):
    inputs:  "text" BYTES [n] (prompts), optional "image" BYTES [n] (base64 data URIs, "" for none)
    parameters: max_tokens, temperature (optional)
    outputs: "text_output" BYTES [n]
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

from medfoundry.config.release import ServingConfig
from medfoundry.serving import metrics
from medfoundry.serving.engine import GenerationRequest, RequestError, text_only_refusal


def _import_kserve():
    # kserve.model_server parses sys.argv at import time; our own CLI flags (e.g. --model) would be taken for its.
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve
    finally:
        sys.argv = argv
    return kserve


kserve = _import_kserve()
log = logging.getLogger("medfoundry.serving")


def resolve_model_path(uri: str) -> str:
    """A loadable location for `load_model`: models:/NAME@alias|/VERSION resolved through the MLflow registry."""
    if uri.startswith("models:/"):
        from medfoundry.release.registry import download_model

        return str(download_model(uri))
    return uri


def served_name(uri: str) -> str:
    """Default model name on the endpoint: the registered name, or the folder name."""
    from pathlib import PurePath

    if uri.startswith("models:/"):
        return uri[len("models:/") :].split("@")[0].split("/")[0]
    return PurePath(uri.rstrip("/")).name or "model"


class MedVLMModel(kserve.Model):
    def __init__(
        self,
        name: str,
        model_uri: str,
        serving: ServingConfig,
        model_cfg: Any = None,
        backend: str = "auto",
    ):
        super().__init__(name)
        self.model_uri = model_uri
        self.serving = serving
        self.model_cfg = model_cfg
        self.backend = backend
        self.engine = None  # kserve.Model reads `engine` as "has a separate engine to start": keep it falsy
        self._engine = None
        self.batcher = None
        self.load_error: str | None = None
        self.loaded_at = int(time.time())

    @property
    def accepts_images(self) -> bool:
        return bool(self._engine and self._engine.accepts_images)

    def load(self) -> bool:
        from medfoundry.serving.batching import Batcher
        from medfoundry.serving.engine import InProcessEngine, make_engine

        started = time.perf_counter()
        try:
            path = resolve_model_path(self.model_uri)
            self._engine = make_engine(
                path, self.name, self.backend, self.model_cfg, self.serving.threads, self.serving.max_queue
            )
        except Exception as err:
            self.load_error = f"{type(err).__name__}: {err}"
            log.error("model %s failed to load: %s", self.name, self.load_error)
            raise
        if isinstance(self._engine, InProcessEngine):
            self.batcher = Batcher(
                self._engine, self.serving.max_batch_size, self.serving.batch_timeout_ms, self.serving.max_queue
            )
        else:  # vLLM schedules its own continuous batches behind the same submit/stream interface
            self.batcher = self._engine
        self.loaded_at = int(time.time())
        self.ready = True
        metrics.MODEL_READY.labels(model=self.name).set(1)
        log.info("model %s ready (%s, %.1fs)", self.name, type(self._engine).__name__, time.perf_counter() - started)
        return self.ready

    def stop(self) -> None:
        self.ready = False
        metrics.MODEL_READY.labels(model=self.name).set(0)
        if self.batcher is not None:
            self.batcher.close()

    async def decode_image(self, data: bytes, filename: str):
        from medfoundry.serving.openai_api import decode_image

        return await asyncio.to_thread(decode_image, data, filename, self.serving.max_image_size)

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        from kserve import InferOutput, InferRequest, InferResponse

        from medfoundry.serving.openai_api import decode_data_uri

        if not isinstance(payload, InferRequest):
            raise kserve.errors.InvalidInput("use the v2 protocol: POST /v2/models/<name>/infer")
        inputs = {i.name: i for i in payload.inputs}
        if "text" not in inputs or inputs["text"].datatype != "BYTES":
            raise kserve.errors.InvalidInput('expected a BYTES input named "text"')
        texts = [_as_str(v) for v in inputs["text"].data]
        images = [_as_str(v) for v in inputs["image"].data] if "image" in inputs else [""] * len(texts)
        if len(images) != len(texts):
            raise kserve.errors.InvalidInput('"image" must have one entry per "text" entry ("" for none)')
        params = payload.parameters or {}
        try:
            max_tokens = int(_param(params.get("max_tokens"), self.serving.max_new_tokens))
            temperature = float(_param(params.get("temperature"), 0.0))
        except (TypeError, ValueError):
            raise kserve.errors.InvalidInput("max_tokens and temperature must be numbers") from None
        if not 1 <= max_tokens <= self.serving.max_new_tokens:
            raise kserve.errors.InvalidInput(f"max_tokens must be in 1..{self.serving.max_new_tokens}")
        requests = []
        for text, image_uri in zip(texts, images, strict=True):
            image = None
            if image_uri:
                if not self.accepts_images:
                    raise kserve.errors.InvalidInput(str(text_only_refusal()))
                try:
                    image = await self.decode_image(*decode_data_uri(image_uri))
                except RequestError as err:
                    raise kserve.errors.InvalidInput(str(err)) from None
            content = [{"type": "image"}, {"type": "text", "text": text}] if image is not None else text
            requests.append(
                GenerationRequest(
                    messages=[{"role": "user", "content": content}],
                    image=image,
                    max_new_tokens=max_tokens,
                    temperature=temperature,
                )
            )
        try:
            results = await asyncio.gather(*(self.batcher.submit(r) for r in requests))
        except RequestError as err:
            raise kserve.errors.InvalidInput(str(err)) from None
        output = InferOutput(name="text_output", shape=[len(results)], datatype="BYTES", data=[r.text for r in results])
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[output])


def _as_str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)


def _param(value: Any, default: Any) -> Any:
    if value is None:
        return default
    # v2 parameters arrive as plain values (REST) or InferParameter messages (gRPC).
    for attr in ("int64_param", "double_param", "string_param"):
        if hasattr(value, attr) and value.HasField(attr):
            return getattr(value, attr)
    return value
