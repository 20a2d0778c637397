"""Generation engines behind the server: in-process transformers (batched, token-by-token) and vLLM when present.

An engine runs one batch at a time on the batcher's worker thread. Prompts are rendered and encoded exactly as
`medfoundry.models.generation.generate` does (medfoundry.models.chat), so greedy outputs match it; the serving loop
adds what a server needs on top: per-request token limits, stop strings, cancellation and incremental text for
streaming, all from one stopping criterion that sees every new token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

log = logging.getLogger("medfoundry.serving")


class RequestError(ValueError):
    """A request the model cannot serve as given (answered 400); str() is safe to return to the client."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request"):
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass
class GenerationRequest:
    messages: list[dict[str, Any]]  # HF chat format; image parts are {"type": "image"}
    image: Image.Image | None = None
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    cancelled: bool = False

    @property
    def group(self) -> tuple:
        """Requests batch together only when they sample the same way."""
        return ("greedy",) if self.temperature <= 0 else ("sample", self.temperature, self.top_p)


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) | "length"


# emit(row, kind, value): kind "start" (prompt tokens) or "delta" (new text) for streaming clients.
Emit = Callable[[int, str, Any], None]


class Engine:
    name: str
    accepts_images: bool
    context_length: int

    def run_batch(self, requests: list[GenerationRequest], emit: Emit) -> list[GenerationResult | Exception]:
        raise NotImplementedError


class InProcessEngine(Engine):
    """A `medfoundry.models.loading.LoadedModel` driven by transformers' generate on this process's device."""

    def __init__(self, loaded: Any, name: str):
        self.loaded = loaded
        self.name = name
        self.accepts_images = loaded.is_vision
        text_config = loaded.model.config.get_text_config()
        self.context_length = int(getattr(text_config, "max_position_embeddings", 2048) or 2048)
        eos = loaded.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        if loaded.tokenizer.eos_token_id is not None:
            self.eos_ids.add(loaded.tokenizer.eos_token_id)

    def _encode(self, requests: list[GenerationRequest]) -> Any:
        from medfoundry.models.chat import ChatPrompt, encode, render

        prompts = [ChatPrompt(messages=r.messages, image=r.image) for r in requests]
        texts = [render(self.loaded, p.to_messages(self.loaded.is_vision), add_generation_prompt=True) for p in prompts]
        images = [r.image if self.loaded.is_vision else None for r in requests]
        return encode(self.loaded, texts, images, padding_side="left")

    def run_batch(self, requests: list[GenerationRequest], emit: Emit) -> list[GenerationResult | Exception]:
        import torch
        from transformers import StoppingCriteriaList

        results: list[GenerationResult | Exception | None] = [None] * len(requests)
        live = list(range(len(requests)))
        while True:  # drop prompts that cannot be encoded or are too long, then encode the rest again
            try:
                batch = self._encode([requests[i] for i in live])
            except Exception:  # noqa: BLE001 - find the request the processor cannot take; fail it, serve the rest
                for row in live:
                    try:
                        self._encode([requests[row]])
                    except Exception as err:  # noqa: BLE001
                        results[row] = RequestError(f"could not encode the prompt: {type(err).__name__}")
                if all(results[row] is None for row in live):
                    raise
                live = [row for row in live if results[row] is None]
                if not live:
                    return results  # type: ignore[return-value]
                continue
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            too_long = [
                (row, n) for row, n in zip(live, lengths, strict=True) if n + requests[row].max_new_tokens > self.context_length
            ]
            if not too_long:
                break
            for row, n in too_long:
                results[row] = RequestError(
                    f"prompt ({n} tokens) plus max_tokens ({requests[row].max_new_tokens}) exceeds the model's context "
                    f"length ({self.context_length})",
                    param="messages",
                    code="context_length_exceeded",
                )
            live = [row for row in live if results[row] is None]
            if not live:
                return results  # type: ignore[return-value]

        tracker = _RowTracker(self.loaded.tokenizer, [requests[i] for i in live], live, self.eos_ids, emit)
        for pos, row in enumerate(live):
            emit(row, "start", int(lengths[pos]))
        first = requests[live[0]]
        kwargs: dict[str, Any] = {"do_sample": False}
        if first.temperature > 0:
            kwargs = {"do_sample": True, "temperature": first.temperature, "top_p": first.top_p}
            if first.seed is not None:
                torch.manual_seed(first.seed)
        with torch.inference_mode():
            self.loaded.model.generate(
                **batch.to(self.loaded.device),
                max_new_tokens=max(requests[i].max_new_tokens for i in live),
                pad_token_id=self.loaded.tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList([tracker]),
                **kwargs,
            )
        for pos, row in enumerate(live):
            results[row] = tracker.result(pos, int(lengths[pos]))
        return results  # type: ignore[return-value]


class _RowTracker:
    """Stopping criterion that follows each row: appends its token, emits the new text, and marks the row done at
    EOS, its own max_new_tokens, a stop string, or cancellation. transformers calls it once per generated token."""

    def __init__(self, tokenizer, requests, rows, eos_ids, emit: Emit):
        self.tokenizer = tokenizer
        self.requests = requests
        self.rows = rows
        self.eos_ids = eos_ids
        self.emit = emit
        n = len(requests)
        self.tokens: list[list[int]] = [[] for _ in range(n)]
        self.text = [""] * n
        self.sent = [0] * n  # characters of text already emitted
        self.finish: list[str | None] = [None] * n
        self.holdback = [max((len(s) for s in r.stop), default=1) - 1 for r in requests]

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        newest = input_ids[:, -1].tolist()
        for pos, token in enumerate(newest):
            if self.finish[pos] is not None:
                continue
            request = self.requests[pos]
            if request.cancelled:
                self.finish[pos] = "cancelled"
                continue
            if token in self.eos_ids:
                self._close(pos, "stop")
                continue
            self.tokens[pos].append(token)
            text = self.tokenizer.decode(self.tokens[pos], skip_special_tokens=True)
            hit = min((i for i in (text.find(s) for s in request.stop if s) if i >= 0), default=-1)
            if hit >= 0:
                self.text[pos] = text[:hit]
                self._close(pos, "stop")
            elif len(self.tokens[pos]) >= request.max_new_tokens:
                self.text[pos] = text
                self._close(pos, "length")
            else:
                self.text[pos] = text
                # Hold back a partial UTF-8 character and anything that may still become a stop string.
                safe = len(text.rstrip("\ufffd")) - self.holdback[pos]
                if safe > self.sent[pos]:
                    self.emit(self.rows[pos], "delta", text[self.sent[pos] : safe])
                    self.sent[pos] = safe
        return torch.tensor([f is not None for f in self.finish], dtype=torch.bool, device=input_ids.device)

    def _close(self, pos: int, reason: str) -> None:
        self.finish[pos] = reason
        text = self.text[pos]
        if len(text) > self.sent[pos]:
            self.emit(self.rows[pos], "delta", text[self.sent[pos] :])
            self.sent[pos] = len(text)

    def result(self, pos: int, prompt_tokens: int) -> GenerationResult:
        if self.finish[pos] is None:  # generate stopped on its own length limit
            self._close(pos, "length")
        reason = self.finish[pos]
        return GenerationResult(self.text[pos], prompt_tokens, len(self.tokens[pos]), "stop" if reason == "cancelled" else reason)


class VLLMEngine(Engine):
    """vLLM's offline engine (GPU machines with vllm installed). Batches come from the same batcher; vLLM pages the
    KV cache and schedules them. Streaming clients receive each completion as one delta."""

    def __init__(self, model_path: str, name: str, max_model_len: int | None = None):
        from vllm import LLM  # import-guarded by make_engine

        self.llm = LLM(model=model_path, max_model_len=max_model_len, limit_mm_per_prompt={"image": 1})
        self.name = name
        self.accepts_images = True
        self.context_length = int(self.llm.llm_engine.model_config.max_model_len)
        self.tokenizer = self.llm.get_tokenizer()

    def run_batch(self, requests: list[GenerationRequest], emit: Emit) -> list[GenerationResult | Exception]:
        from vllm import SamplingParams

        prompts, params = [], []
        for r in requests:
            text = self.tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
            prompt: dict[str, Any] = {"prompt": text}
            if r.image is not None:
                prompt["multi_modal_data"] = {"image": r.image.convert("RGB")}
            prompts.append(prompt)
            params.append(
                SamplingParams(
                    max_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p, seed=r.seed,
                    stop=r.stop or None,
                )
            )
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results: list[GenerationResult | Exception] = []
        for row, out in enumerate(outputs):
            completion = out.outputs[0]
            emit(row, "start", len(out.prompt_token_ids))
            emit(row, "delta", completion.text)
            reason = "length" if completion.finish_reason == "length" else "stop"
            results.append(GenerationResult(completion.text, len(out.prompt_token_ids), len(completion.token_ids), reason))
        return results


def vllm_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def make_engine(
    model_path: str, name: str, backend: str = "auto", model_cfg: Any = None, threads: int | None = None
) -> Engine:
    """`backend`: "auto" (vLLM on a GPU machine where it is installed, else in-process), "vllm" or "transformers"."""
    if backend == "vllm" or (backend == "auto" and vllm_available()):
        try:
            return VLLMEngine(model_path, name)
        except Exception as err:  # noqa: BLE001 - fall back when vLLM cannot take this checkpoint
            if backend == "vllm":
                raise
            log.warning("vLLM could not load the model (%s); using the in-process engine", type(err).__name__)
    import torch

    from medfoundry.models.loading import load_model

    if threads:
        torch.set_num_threads(threads)
    return InProcessEngine(load_model(model_path, model_cfg), name)
