"""Generation backends: an in-process Hugging Face model and any OpenAI-compatible chat endpoint.

Both take the same `GenerationRequest`s (system text, user text, optional image) and return one `Generation` per
request, in order. A failed request never raises: it comes back with `text=None` and the error, and is scored as
unparseable.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

Progress = Callable[[int], None]


@dataclass(frozen=True)
class GenerationRequest:
    system: str | None
    user: str
    image: Path | None = None


@dataclass
class Generation:
    text: str | None
    error: str | None = None


class Backend(Protocol):
    description: str

    def generate(self, requests: Sequence[GenerationRequest], progress: Progress | None = None) -> list[Generation]:
        ...


class HFBackend:
    """A model loaded in process (`medfoundry.models.loading.load_model`), greedy batched generation."""

    def __init__(self, loaded: Any, max_new_tokens: int = 16, batch_size: int = 8, seed: int = 0):
        self.loaded = loaded
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.seed = seed
        self.description = f"hf:{loaded.source or loaded.family}"

    @classmethod
    def from_uri(cls, uri: str | Path, model_cfg: Any = None, **kwargs: Any) -> HFBackend:
        from medfoundry.models.loading import load_model

        return cls(load_model(uri, model_cfg), **kwargs)

    def loglikelihood_scorer(self) -> Any:
        """The scorer of the loglikelihood protocol, on this model's language model and tokenizer."""
        from medfoundry.evaluation.loglikelihood import LoglikelihoodScorer

        return LoglikelihoodScorer(self.loaded.model, self.loaded.tokenizer, self.batch_size)

    def generate(self, requests: Sequence[GenerationRequest], progress: Progress | None = None) -> list[Generation]:
        from PIL import Image

        from medfoundry.models.generation import ChatPrompt, generate

        # Longest prompts first, so each batch holds prompts of similar length (less padding, and an out-of-memory
        # error shows up in the first batch); outputs are put back in request order. Greedy outputs do not depend
        # on the batch a prompt lands in.
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].user))
        results: list[Generation | None] = [None] * len(requests)
        # Chunks of whole batches so progress moves while `generate` batches inside each chunk.
        chunk = self.batch_size * 4
        for start in range(0, len(order), chunk):
            indices = order[start : start + chunk]
            part = [requests[i] for i in indices]
            prompts = []
            for req in part:
                image = None
                if req.image is not None and self.loaded.is_vision:
                    with Image.open(req.image) as img:
                        image = img.convert("RGB")
                prompts.append(ChatPrompt(text=req.user, system=req.system, image=image))
            try:
                texts = generate(self.loaded, prompts, self.max_new_tokens, self.batch_size, self.seed)
                generated = [Generation(t) for t in texts]
            except Exception as err:  # noqa: BLE001 - one bad chunk must not end the run; reported per item
                generated = [Generation(None, f"{type(err).__name__}: {err}") for _ in part]
            for i, gen in zip(indices, generated, strict=True):
                results[i] = gen
            if progress:
                progress(len(part))
        return results  # type: ignore[return-value]


def image_data_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode()}"


def chat_messages(request: GenerationRequest) -> list[dict[str, Any]]:
    """OpenAI chat messages: the image (if any) as a data-URI content part before the text."""
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    if request.image is not None:
        content: Any = [
            {"type": "image_url", "image_url": {"url": image_data_uri(request.image)}},
            {"type": "text", "text": request.user},
        ]
    else:
        content = request.user
    messages.append({"role": "user", "content": content})
    return messages


RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIBackend:
    """POST {base}/chat/completions with a concurrency limit, per-request timeout and retries with backoff.

    `endpoint` is the API base (".../v1"); a URL already ending in /chat/completions is used as it is.
    """

    def __init__(
        self,
        endpoint: str,
        model_name: str,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 60.0,
        retries: int = 3,
        max_tokens: int = 16,
        seed: int = 0,
        backoff_s: float = 0.5,
    ):
        endpoint = endpoint.rstrip("/")
        self.url = endpoint if endpoint.endswith("/chat/completions") else f"{endpoint}/chat/completions"
        self.model_name = model_name
        self.api_key = api_key
        self.concurrency = max(1, concurrency)
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.max_tokens = max_tokens
        self.seed = seed
        self.backoff_s = backoff_s
        self.description = f"openai:{model_name}@{endpoint}"

    def payload(self, request: GenerationRequest) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "messages": chat_messages(request),
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
            "seed": self.seed,
        }

    def generate(self, requests: Sequence[GenerationRequest], progress: Progress | None = None) -> list[Generation]:
        return asyncio.run(self._generate_all(requests, progress))

    async def _generate_all(self, requests: Sequence[GenerationRequest], progress: Progress | None) -> list[Generation]:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        semaphore = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(headers=headers, timeout=self.timeout_s, limits=limits) as client:

            async def one(req: GenerationRequest) -> Generation:
                async with semaphore:
                    result = await self._request(client, req)
                if progress:
                    progress(1)
                return result

            return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _request(self, client: Any, request: GenerationRequest) -> Generation:
        import httpx

        try:
            body = self.payload(request)
        except OSError as err:
            return Generation(None, f"cannot read image: {err}")
        error = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1) * (1 + random.random() / 2))
            try:
                response = await client.post(self.url, json=body)
            except httpx.HTTPError as err:
                error = f"{type(err).__name__}: {err}"
                continue
            if response.status_code in RETRY_STATUS:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code >= 400:
                return Generation(None, f"HTTP {response.status_code}: {response.text[:200]}")
            return parse_chat_response(response)
        return Generation(None, f"gave up after {self.retries + 1} attempts: {error}")


def parse_chat_response(response: Any) -> Generation:
    """The first choice's message content; anything else is reported as a malformed reply."""
    try:
        data = response.json()
    except ValueError:
        return Generation(None, f"malformed reply (not JSON): {response.text[:200]!r}")
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return Generation(None, f"malformed reply (no choices[0].message.content): {str(data)[:200]}")
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        return Generation(None, f"malformed reply (content is {type(content).__name__})")
    return Generation(content)
