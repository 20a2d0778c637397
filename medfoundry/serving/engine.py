"""Generation engines behind the server: an in-process continuous-batching engine (transformers models on this
process's device) and vLLM's async engine where a GPU and vLLM are present (`medfoundry.serving.vllm_engine`).

The in-process engine keeps one running batch. At every decoding step the scheduler (`serving.batching`) may add
newcomers (their prompts are prefilled together, then their KV cache rows are merged into the running batch) and
finished, stopped or cancelled sequences leave it at once, so a short request never waits for a long one and a
freed slot is refilled at the next step. The batch's KV cache is one left-padded `DynamicCache`: rows joining later
get left padding (masked), rows leaving are dropped and all-padding columns trimmed. Positions are computed per row
exactly as `transformers.generate` does (mask cumsum; M-RoPE deltas for Qwen2-VL), so greedy outputs equal
`medfoundry.models.generation.generate` for the same prompts, whatever else shares the batch.

Per token the engine runs one forward over the new tokens only (the cache is reused, the prompt is never
re-tokenized), one argmax for the greedy rows, and an incremental detokenizer per row for stop strings and streaming.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from medfoundry.serving import metrics

log = logging.getLogger("medfoundry.serving")


class RequestError(ValueError):
    """A request the model cannot serve as given (answered 400); str() is safe to return to the client."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request"):
        super().__init__(message)
        self.param = param
        self.code = code


def text_only_refusal() -> RequestError:
    """The one answer every engine gives a text-only model's image (400 `unsupported_image`)."""
    return RequestError("this model is text-only: it does not accept images", param="image_url", code="unsupported_image")


@dataclass
class GenerationRequest:
    messages: list[dict[str, Any]]  # HF chat format; image parts are {"type": "image"}
    image: Image.Image | None = None
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    cancelled: bool = False  # set when the client goes away; the engine frees the slot at its next step
    arrived: float = field(default_factory=time.perf_counter)  # for time-to-first-token


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) | "length"


# A request's event sink: ("start", prompt_tokens), ("delta", text)..., then ("done", GenerationResult) or
# ("error", Exception). Called on the engine's thread.
Sink = Callable[[str, Any], None]


class Engine:
    """Continuous batching: `add` prefills newcomers into the running batch, `step` decodes one token for every
    running sequence. Both run on the scheduler's one thread."""

    name: str
    accepts_images: bool
    context_length: int

    @property
    def active(self) -> int:
        raise NotImplementedError

    def add(self, requests: list[GenerationRequest], sinks: list[Sink]) -> None:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    def abort(self, err: Exception) -> None:
        """Fail every running sequence (after an engine error) and start from an empty batch."""
        raise NotImplementedError

    def run_batch(self, requests: list[GenerationRequest], emit: Callable[[int, str, Any], None] | None = None
                  ) -> list[GenerationResult | Exception]:
        """Serve `requests` to completion on the calling thread (tests, offline use): results in order."""
        results: list[Any] = [None] * len(requests)

        def sink_for(row: int) -> Sink:
            def sink(kind: str, value: Any) -> None:
                if kind in ("done", "error"):
                    results[row] = value
                if emit is not None:
                    emit(row, kind, value)

            return sink

        self.add(requests, [sink_for(i) for i in range(len(requests))])
        while self.active:
            self.step()
        return results


# The batch size oneDNN lays the packed weights out for; any batch runs on them (measured here: 1 and 43 as fast as
# with their own layout, within noise).
PACKED_BATCH_HINT = 8


# oneDNN's call costs ~40-50 us more than MKL's; it pays off from about 1 MB of weight (SmolLM2's 576 x 576 and
# larger layers; measured here: 576 x 192 at 8 rows 85 us MKL vs 56 us packed, 1536 x 576 700 us vs 196 us). Smaller
# layers, and every layer of the tests' tiny models, keep torch's own path.
PACKED_MIN_WEIGHTS = 1 << 18


# Below this many weights in its largest matrix, a model's forward is all per-op overhead, and a second intra-op
# thread only adds an OpenMP wake-up per op, with the HTTP event loop and the clients competing for the same cores.
# Measured here (tiny profile VLM, largest matrix 405 x 64, batch-8 decoding step): 1.2 ms on one thread, 2.2-3.9 ms
# on two. SmolLM2 (576 x 576 and up) gains from the threads it is given.
SINGLE_THREAD_MAX_WEIGHTS = 1 << 16


def largest_matrix(model: Any) -> int:
    return max((p.numel() for p in model.parameters() if p.dim() == 2), default=0)


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the block on `threads` torch intra-op threads (None: as configured), then restore the setting."""
    import torch

    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _PackedLinear:
    """`nn.Linear.forward` on a weight prepacked for oneDNN's matmul. On the 2-core reference machine (AMD EPYC,
    AVX-512) torch's default fp32 path (MKL sgemm) costs nearly 8 times a single row's time for 8 rows, while the
    packed oneDNN kernel costs 2-3 times: batched decoding and prefill are where a CPU server earns its throughput.
    Results agree with `F.linear` to float32 rounding (about 4e-6 on SmolLM2's layers)."""

    def __init__(self, linear: Any):
        import torch

        self.weight = linear.weight.detach()
        with torch.no_grad():
            self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, PACKED_BATCH_HINT)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def __call__(self, x: Any) -> Any:
        import torch

        if x.numel() == x.shape[-1]:
            # One row (single-stream decoding): MKL's matrix-vector kernel, as `generate` runs it, is as fast here
            # and gives bit-identical logits.
            return torch.nn.functional.linear(x, self.weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def packed_for_cpu(model: Any) -> Any:
    """A serving view of `model` whose large float32 `nn.Linear` layers run on oneDNN-packed weights (CPU only; the view
    shares every other tensor with `model`, which stays as it was for training, `generate` and evaluation). Returns
    `model` itself where packing does not apply (GPU, other dtypes, a torch without oneDNN)."""
    import copy

    import torch

    def packable(module: Any) -> bool:
        weight = getattr(module, "weight", None)
        return (type(module) is torch.nn.Linear and weight.dtype == torch.float32 and weight.device.type == "cpu"
                and weight.numel() >= PACKED_MIN_WEIGHTS)

    if (not any(packable(m) for m in model.modules()) or not torch.backends.mkldnn.is_available()
            or not hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return model
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    view = copy.deepcopy(model, memo=shared)
    for module in view.modules():
        if packable(module):
            module.forward = _PackedLinear(module)
    return view


class _Detokenizer:
    """Incremental text of one sequence: decodes only a short window of tokens per step (prefix/read offsets, as
    vLLM and TGI do), holds back an incomplete UTF-8 character, finds stop strings in the new tail only."""

    def __init__(self, tokenizer: Any, stop: list[str]):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.longest_stop = max((len(s) for s in self.stop), default=0)
        self.tokens: list[int] = []
        self.text = ""
        self.prefix = 0  # window start
        self.read = 0  # tokens already turned into text
        self.sent = 0  # characters of text handed to the client

    def push(self, token: int) -> bool:
        """Append a token; True when a stop string appeared (text is cut before it)."""
        self.tokens.append(token)
        decode = self.tokenizer.decode
        before = decode(self.tokens[self.prefix : self.read], skip_special_tokens=True)
        after = decode(self.tokens[self.prefix :], skip_special_tokens=True)
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return False  # a partial character (or a skipped special token): wait for more tokens
        searched_from = max(0, len(self.text) - self.longest_stop + 1)
        self.text += after[len(before) :]
        self.prefix, self.read = self.read, len(self.tokens)
        if self.stop:
            hits = [i for i in (self.text.find(s, searched_from) for s in self.stop) if i >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                return True
        return False

    def pending(self, final: bool) -> str:
        """Text not yet sent; while generating, the tail that may still become a stop string is kept back."""
        safe = len(self.text) if final else len(self.text) - max(0, self.longest_stop - 1)
        if safe <= self.sent:
            return ""
        piece = self.text[self.sent : safe]
        self.sent = safe
        return piece

    def final_text(self, stopped: bool) -> str:
        # One full decode at the end: the incremental windows agree with it for byte-level BPE, and this makes the
        # answer identical to `tokenizer.batch_decode` whatever the tokenizer.
        if stopped:
            return self.text
        full = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if full.startswith(self.text[: self.sent]):
            self.text = full
        return self.text


@dataclass
class _Sequence:
    request: GenerationRequest
    sink: Sink
    detok: _Detokenizer
    prompt_tokens: int
    generator: Any = None  # torch.Generator for sampled rows
    last_token_at: float = 0.0
    generated: int = 0


class InProcessEngine(Engine):
    """A `medfoundry.models.loading.LoadedModel` served with continuous batching on this process's device."""

    def __init__(self, loaded: Any, name: str):
        import torch

        self.loaded = loaded
        self.name = name
        self.accepts_images = loaded.is_vision
        model = loaded.model
        model.eval()
        text_config = model.config.get_text_config()
        self.context_length = int(getattr(text_config, "max_position_embeddings", 2048) or 2048)
        eos = model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        if loaded.tokenizer.eos_token_id is not None:
            self.eos_ids.add(loaded.tokenizer.eos_token_id)
        self._eos = torch.tensor(sorted(self.eos_ids), dtype=torch.long)
        # Qwen2-VL style 3D rotary positions (temporal, height, width) with per-row deltas after images.
        self.mrope = hasattr(getattr(model, "model", None), "get_rope_index")
        self.device = loaded.device
        self.model = packed_for_cpu(model)
        self.threads = 1 if largest_matrix(model) < SINGLE_THREAD_MAX_WEIGHTS else None
        self.sdpa = getattr(text_config, "_attn_implementation", None) == "sdpa"
        self._reset()

    def _reset(self) -> None:
        self.seqs: list[_Sequence] = []
        self.cache = None  # DynamicCache of the running batch, left-padded
        self.mask = None  # [B, T] attention mask over the cache
        self.padded = False  # some row of the mask has padding (updated when rows join or leave, not per step)
        self.next_tokens = None  # [B, 1] newest token of each row, not yet in the cache
        self.positions = None  # [B] text position of next_tokens
        self.rope_deltas = None  # [B] M-RoPE offset (0 without images)

    @property
    def active(self) -> int:
        return len(self.seqs)

    # ------------------------------------------------------------------ prefill
    def _encode(self, requests: list[GenerationRequest]) -> Any:
        from medfoundry.models.chat import ChatPrompt, encode, render

        prompts = [ChatPrompt(messages=r.messages, image=r.image) for r in requests]
        texts = [render(self.loaded, p.to_messages(self.loaded.is_vision), add_generation_prompt=True) for p in prompts]
        images = [r.image if self.loaded.is_vision else None for r in requests]
        return encode(self.loaded, texts, images, padding_side="left")

    def _admissible(self, requests: list[GenerationRequest], sinks: list[Sink]) -> tuple[list[int], Any]:
        """Rows that encode and fit the context, with their encoded batch; the others get their error now."""
        live = list(range(len(requests)))
        while live:
            if not self.accepts_images:
                refused = [row for row in live if requests[row].image is not None]
                for row in refused:
                    sinks[row]("error", text_only_refusal())
                live = [row for row in live if row not in refused]
                if not live:
                    break
            try:
                batch = self._encode([requests[i] for i in live])
            except Exception:  # noqa: BLE001 - find the request the processor cannot take; fail it, serve the rest
                failed = []
                for row in live:
                    try:
                        self._encode([requests[row]])
                    except Exception as err:  # noqa: BLE001
                        failed.append(row)
                        sinks[row]("error", RequestError(f"could not encode the prompt: {type(err).__name__}"))
                if not failed:
                    raise
                live = [row for row in live if row not in failed]
                continue
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            too_long = [row for row, n in zip(live, lengths, strict=True) if n + requests[row].max_new_tokens > self.context_length]
            if not too_long:
                return live, batch
            for row, n in zip(live, lengths, strict=True):
                if row in too_long:
                    sinks[row]("error", RequestError(
                        f"prompt ({n} tokens) plus max_tokens ({requests[row].max_new_tokens}) exceeds the model's "
                        f"context length ({self.context_length})", param="messages", code="context_length_exceeded",
                    ))
            live = [row for row in live if row not in too_long]
        return [], None

    def _prefill_positions(self, batch: Any) -> tuple[Any, Any, Any]:
        """(position_ids for the prompt, next text position per row, M-RoPE delta per row), as generate computes."""
        import torch

        mask = batch["attention_mask"]
        text = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        next_pos = mask.long().sum(-1)
        if not self.mrope:
            return text, next_pos, torch.zeros_like(next_pos)
        if batch.get("image_grid_thw") is not None:
            spatial, deltas = self.loaded.model.model.get_rope_index(
                batch["input_ids"], mm_token_type_ids=batch["mm_token_type_ids"],
                image_grid_thw=batch["image_grid_thw"], attention_mask=mask,
            )
            deltas = deltas.view(-1)
        else:
            spatial, deltas = text.unsqueeze(0).expand(3, -1, -1), torch.zeros_like(next_pos)
        return torch.cat([text.unsqueeze(0), spatial], dim=0), next_pos, deltas

    def add(self, requests: list[GenerationRequest], sinks: list[Sink]) -> None:
        import torch
        from transformers import DynamicCache

        live, batch = self._admissible(requests, sinks)
        if not live:
            return
        batch = batch.to(self.device)
        position_ids, next_pos, deltas = self._prefill_positions(batch)
        cache = DynamicCache()
        with torch.inference_mode(), intra_op_threads(self.threads):
            out = self.model(**batch, position_ids=position_ids, past_key_values=cache, use_cache=True,
                                    logits_to_keep=1)
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        newcomers = []
        for pos, row in enumerate(live):
            request = requests[row]
            generator = None
            if request.temperature > 0:
                generator = torch.Generator(device=self.device)
                generator.manual_seed(request.seed if request.seed is not None else torch.seed())
            newcomers.append(_Sequence(request, sinks[row], _Detokenizer(self.loaded.tokenizer, request.stop),
                                       int(lengths[pos]), generator))
            sinks[row]("start", int(lengths[pos]))
        first = self._choose(out.logits[:, -1], newcomers)
        self._merge(newcomers, cache, batch["attention_mask"], next_pos, deltas)
        self._advance(first, newcomers)

    def _merge(self, newcomers: list[_Sequence], cache: Any, mask: Any, next_pos: Any, deltas: Any) -> None:
        """Join the newcomers' cache rows to the running batch, left-padding whichever is shorter."""
        import torch
        import torch.nn.functional as F

        if not self.seqs:
            self.seqs, self.cache, self.mask = newcomers, cache, mask
            self.positions, self.rope_deltas = next_pos, deltas
            self.next_tokens = torch.empty((0, 1), dtype=torch.long, device=self.device)
            self.padded = not bool(mask.all())
            return
        running, new = self.mask.shape[1], mask.shape[1]
        width = max(running, new)
        for old_layer, new_layer in zip(self.cache.layers, cache.layers, strict=True):
            for attr in ("keys", "values"):
                a, b = getattr(old_layer, attr), getattr(new_layer, attr)
                setattr(old_layer, attr, torch.cat(
                    [F.pad(a, (0, 0, width - running, 0)), F.pad(b, (0, 0, width - new, 0))], dim=0
                ))
        self.mask = torch.cat([F.pad(self.mask, (width - running, 0)), F.pad(mask, (width - new, 0))], dim=0)
        self.positions = torch.cat([self.positions, next_pos])
        self.rope_deltas = torch.cat([self.rope_deltas, deltas])
        self.seqs = self.seqs + newcomers
        self.padded = not bool(self.mask.all())

    # ------------------------------------------------------------------ decode
    def step(self) -> None:
        import torch

        self._drop_cancelled()
        if not self.seqs:
            return
        batch = len(self.seqs)
        mask = torch.cat([self.mask, self.mask.new_ones((batch, 1))], dim=1)
        attention_mask = mask
        if self.padded and self.sdpa:
            # One new token per row attends to every real column of its row: its causal mask is the padding mask
            # itself, handed over ready-made in the [B, 1, 1, T] boolean layout transformers builds for SDPA (which
            # it would otherwise rebuild from the 2D mask at every step). Without padding the 2D mask stays, so
            # transformers skips the mask exactly as `generate` does.
            attention_mask = mask.bool()[:, None, None, :]
        if self.mrope:
            position_ids = (self.positions + self.rope_deltas).view(1, batch, 1).expand(3, batch, 1)
        else:
            position_ids = self.positions.view(batch, 1)
        with torch.inference_mode(), intra_op_threads(self.threads):
            out = self.model(input_ids=self.next_tokens, attention_mask=attention_mask, position_ids=position_ids,
                                    past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        self.mask = mask
        self.positions = self.positions + 1
        tokens = self._choose(out.logits[:, -1], self.seqs)
        self._advance(tokens, [])
        metrics.BATCH_SIZE.observe(batch)

    def _choose(self, logits: Any, seqs: list[_Sequence]) -> Any:
        """Next token per row: argmax for greedy rows, temperature/top-p sampling for the others."""
        import torch

        tokens = logits.argmax(dim=-1)
        for row, seq in enumerate(seqs):
            if seq.generator is None:
                continue
            probs = torch.softmax(logits[row].float() / seq.request.temperature, dim=-1)
            if seq.request.top_p < 1.0:
                ordered, index = probs.sort(descending=True)
                keep = ordered.cumsum(0) - ordered < seq.request.top_p
                probs = torch.zeros_like(probs).scatter_(0, index[keep], ordered[keep])
            tokens[row] = torch.multinomial(probs, 1, generator=seq.generator)[0]
        return tokens

    def _advance(self, tokens: Any, newcomers: list[_Sequence]) -> None:
        """Hand each row its new token; rows that finish leave the batch. `tokens` covers the running rows (with
        newcomers, only the newcomers, which were appended last)."""
        import torch

        now = time.perf_counter()
        offset = len(self.seqs) - len(tokens)
        values = tokens.tolist()
        finished: dict[int, str] = {}
        for i, token in enumerate(values):
            row = offset + i
            seq = self.seqs[row]
            if seq.generated == 0:
                metrics.TIME_TO_FIRST_TOKEN.observe(now - seq.request.arrived)
            else:
                metrics.INTER_TOKEN_LATENCY.observe(now - seq.last_token_at)
            seq.last_token_at = now
            if token in self.eos_ids:
                finished[row] = "stop"
                continue
            seq.generated += 1
            if seq.detok.push(token):
                finished[row] = "stop_string"
            elif seq.generated >= seq.request.max_new_tokens:
                finished[row] = "length"
            else:
                piece = seq.detok.pending(final=False)
                if piece:
                    seq.sink("delta", piece)
        if newcomers:
            self.next_tokens = torch.cat([self.next_tokens, tokens.view(-1, 1)])
        else:
            self.next_tokens = tokens.view(-1, 1)
        for row, reason in finished.items():
            self._finish(self.seqs[row], reason)
        if finished:
            self._keep([row for row in range(len(self.seqs)) if row not in finished])

    def _finish(self, seq: _Sequence, reason: str) -> None:
        text = seq.detok.final_text(stopped=reason == "stop_string")
        piece = seq.detok.pending(final=True)
        if piece:
            seq.sink("delta", piece)
        result = GenerationResult(text, seq.prompt_tokens, seq.generated, "length" if reason == "length" else "stop")
        metrics.PROMPT_TOKENS.inc(result.prompt_tokens)
        metrics.COMPLETION_TOKENS.inc(result.completion_tokens)
        seq.sink("done", result)

    def _drop_cancelled(self) -> None:
        cancelled = [row for row, seq in enumerate(self.seqs) if seq.request.cancelled]
        if cancelled:
            metrics.CANCELLED.inc(len(cancelled))
            self._keep([row for row in range(len(self.seqs)) if row not in cancelled])

    def _keep(self, rows: list[int]) -> None:
        """Drop every other row from the batch (its slot is free at once) and trim all-padding cache columns."""
        import torch

        if not rows:
            self._reset()
            return
        index = torch.tensor(rows, device=self.device)
        self.seqs = [self.seqs[row] for row in rows]
        self.mask = self.mask[index]
        self.next_tokens = self.next_tokens[index]
        self.positions = self.positions[index]
        self.rope_deltas = self.rope_deltas[index]
        start = int((self.mask.cumsum(dim=1) == 0).sum(dim=1).min())
        self.mask = self.mask[:, start:]
        self.padded = not bool(self.mask.all())
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]

    def abort(self, err: Exception) -> None:
        for seq in self.seqs:
            seq.sink("error", err)
        self._reset()


def vllm_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def make_engine(
    model_path: str, name: str, backend: str = "auto", model_cfg: Any = None, threads: int | None = None,
    max_queue: int = 64,
) -> Any:
    """`backend`: "auto" (vLLM on a GPU machine where it is installed, else in-process), "vllm" or "transformers".
    Returns an `InProcessEngine` (driven by `serving.batching.Batcher`) or a `VLLMEngine` (its own scheduler)."""
    if backend == "vllm" or (backend == "auto" and vllm_available()):
        from medfoundry.serving.vllm_engine import VLLMEngine

        try:
            return VLLMEngine(model_path, name, max_queue=max_queue)
        except Exception as err:  # noqa: BLE001 - fall back when vLLM cannot take this checkpoint
            if backend == "vllm":
                raise
            log.warning("vLLM could not load the model (%s); using the in-process engine", type(err).__name__)
    import torch

    from medfoundry.models.loading import load_model

    if threads:
        torch.set_num_threads(threads)
    return InProcessEngine(load_model(model_path, model_cfg), name)
