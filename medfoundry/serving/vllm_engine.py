"""vLLM's async engine behind the same request/stream interface as the in-process scheduler (GPU machines).

vLLM schedules its own continuous batches and pages the KV cache, so this class replaces the whole
`serving.batching.Batcher` rather than an engine step: each request is one `AsyncLLMEngine.generate` stream in
DELTA mode (real token-by-token streaming), leaving the stream early aborts the request inside vLLM, and images go
in as `multi_modal_data` for models vLLM knows to be multimodal. A text-only model refuses images with the same 400
as the in-process engine. The bounded queue is kept: past `max_queue` requests in flight, 429 with Retry-After.

Import-guarded: `vllm` is imported only when this engine is chosen (`--backend vllm`, or `auto` on a CUDA machine
where vLLM is installed). Not exercised on the CPU development machines (see docs/serving.md).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from medfoundry.serving import metrics
from medfoundry.serving.batching import QueueFull
from medfoundry.serving.engine import GenerationRequest, GenerationResult, text_only_refusal


class VLLMEngine:
    def __init__(self, model_path: str, name: str, max_model_len: int | None = None, max_queue: int = 256):
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        args = AsyncEngineArgs(model=model_path, max_model_len=max_model_len, limit_mm_per_prompt={"image": 1})
        self.llm = AsyncLLMEngine.from_engine_args(args)
        self.name = name
        self.model_config = self.llm.model_config
        self.accepts_images = bool(self.model_config.is_multimodal_model)
        self.context_length = int(self.model_config.max_model_len)
        self.max_queue = max_queue
        self.in_flight = 0
        from transformers import AutoProcessor, AutoTokenizer

        # The chat template that renders image placeholders lives on the processor for VLMs.
        self.template = (AutoProcessor if self.accepts_images else AutoTokenizer).from_pretrained(model_path)

    def _prompt(self, request: GenerationRequest) -> dict[str, Any]:
        if request.image is not None and not self.accepts_images:
            raise text_only_refusal()
        text = self.template.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        prompt: dict[str, Any] = {"prompt": text}
        if request.image is not None:
            prompt["multi_modal_data"] = {"image": request.image.convert("RGB")}
        return prompt

    async def stream(self, request: GenerationRequest) -> AsyncIterator[tuple[str, Any]]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        prompt = self._prompt(request)
        if self.in_flight >= self.max_queue:
            metrics.REJECTED.labels(reason="queue_full").inc()
            raise QueueFull(retry_after=1)
        params = SamplingParams(
            max_tokens=request.max_new_tokens, temperature=request.temperature, top_p=request.top_p,
            seed=request.seed, stop=request.stop or None, output_kind=RequestOutputKind.DELTA,
        )
        self.in_flight += 1
        metrics.RUNNING.set(self.in_flight)
        text, tokens, started = "", 0, False
        try:
            async for out in self.llm.generate(prompt, params, request_id=uuid.uuid4().hex):
                if not started:
                    started = True
                    yield "start", len(out.prompt_token_ids)
                completion = out.outputs[0]
                tokens += len(completion.token_ids)
                if completion.text:
                    text += completion.text
                    yield "delta", completion.text
                if out.finished:
                    reason = "length" if completion.finish_reason == "length" else "stop"
                    metrics.PROMPT_TOKENS.inc(len(out.prompt_token_ids))
                    metrics.COMPLETION_TOKENS.inc(tokens)
                    yield "done", GenerationResult(text, len(out.prompt_token_ids), tokens, reason)
                    return
        finally:  # leaving early closes vLLM's generator, which aborts the request and frees its KV blocks
            self.in_flight -= 1
            metrics.RUNNING.set(self.in_flight)

    async def submit(self, request: GenerationRequest) -> GenerationResult:
        async for kind, value in self.stream(request):
            if kind == "done":
                return value
        raise RuntimeError("vLLM stream ended without a result")

    def retry_after(self) -> int:
        return 1

    def close(self) -> None:
        self.llm.shutdown()
