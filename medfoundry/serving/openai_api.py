"""OpenAI-compatible chat completions: request validation, image content parts, responses and SSE chunks.

Images arrive as `image_url` content parts holding data URIs (PNG, JPEG, WebP, BMP, TIFF, DICOM as
`application/dicom`); the server never fetches remote URLs. Responses are built with the `openai` package's own
types, so what the official SDK parses is what the server sends.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medfoundry.serving.engine import GenerationRequest, GenerationResult, RequestError, text_only_refusal

IMAGE_TYPES = {
    "image/png": "image.png",
    "image/jpeg": "image.jpg",
    "image/jpg": "image.jpg",
    "image/webp": "image.webp",
    "image/bmp": "image.bmp",
    "image/tiff": "image.tiff",
    "application/dicom": "image.dcm",
    "image/dicom": "image.dcm",
}
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,(?P<data>.*)$", re.S)


class _Loose(BaseModel):
    # Unknown fields are ignored: SDKs add fields over time and a server should not break on them.
    model_config = ConfigDict(extra="ignore")


class ImageURL(_Loose):
    url: str
    detail: str | None = None


class ContentPart(_Loose):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None


class Message(_Loose):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class StreamOptions(_Loose):
    include_usage: bool = False


class ChatCompletionRequest(_Loose):
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool | None = None
    tools: list[dict[str, Any]] | None = None


def parse_request(body: dict[str, Any]) -> ChatCompletionRequest:
    try:
        request = ChatCompletionRequest.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise RequestError(f"{where}: {first['msg']}", param=where) from None
    if request.n != 1:
        raise RequestError("only n=1 is supported", param="n")
    if request.logprobs:
        raise RequestError("logprobs are not supported", param="logprobs")
    if request.tools:
        raise RequestError("tool calls are not supported by this server", param="tools")
    stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    if len(stops) > 4:
        raise RequestError("at most 4 stop sequences", param="stop")
    return request


def decode_data_uri(url: str) -> tuple[bytes, str]:
    """(bytes, filename hint) of a base64 data URI; RequestError for anything else."""
    if not url.startswith("data:"):
        raise RequestError(
            "image_url must be a data: URI (base64); the server does not fetch remote images",
            param="image_url", code="unsupported_image",
        )
    match = _DATA_URI.match(url)
    if not match or not match["b64"]:
        raise RequestError("image_url is not a base64 data URI (data:<type>;base64,<data>)", param="image_url", code="bad_base64")
    mime = match["mime"].lower()
    if mime not in IMAGE_TYPES:
        raise RequestError(
            f"unsupported image type {mime!r}: use one of {', '.join(sorted(set(IMAGE_TYPES)))}",
            param="image_url", code="unsupported_image",
        )
    try:
        data = base64.b64decode(match["data"].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("image_url data is not valid base64", param="image_url", code="bad_base64") from None
    if not data:
        raise RequestError("image_url holds no data", param="image_url", code="bad_base64")
    return data, IMAGE_TYPES[mime]


def decode_image(data: bytes, filename: str, max_size: int):
    """Decoded, RGB, at most `max_size` px on the long side (DICOM windowing by medfoundry.data.images)."""
    from PIL import Image

    from medfoundry.data.images import ImageDecodeError, load_image

    try:
        image = load_image(data, filename=filename).image
    except ImageDecodeError as err:
        raise RequestError(f"image could not be decoded: {err}", param="image_url", code="invalid_image") from None
    image = image.convert("RGB")
    if max(image.size) > max_size:
        image.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    return image


def to_generation(
    request: ChatCompletionRequest, default_max_tokens: int, max_tokens_limit: int, accepts_images: bool
) -> tuple[GenerationRequest, tuple[bytes, str] | None]:
    """The engine request (image still encoded: decoding happens off the event loop) for a chat request."""
    messages: list[dict[str, Any]] = []
    image: tuple[bytes, str] | None = None
    for message in request.messages:
        role = "system" if message.role == "developer" else message.role
        if message.content is None or isinstance(message.content, str):
            messages.append({"role": role, "content": message.content or ""})
            continue
        parts: list[dict[str, Any]] = []
        for part in message.content:
            if part.type == "text":
                parts.append({"type": "text", "text": part.text or ""})
                continue
            if part.image_url is None:
                raise RequestError("an image_url part needs an image_url object", param="image_url")
            if not accepts_images:
                raise text_only_refusal()
            if image is not None:
                raise RequestError("at most one image per request", param="image_url")
            if role != "user":
                raise RequestError("images are accepted in user messages only", param="image_url")
            image = decode_data_uri(part.image_url.url)
            parts.append({"type": "image"})
        messages.append({"role": role, "content": parts})
    if messages[-1]["role"] == "assistant":
        raise RequestError("the last message must not be from the assistant", param="messages")
    if not any(m["role"] == "user" for m in messages):
        raise RequestError("at least one user message is required", param="messages")
    max_tokens = request.max_completion_tokens or request.max_tokens or default_max_tokens
    if max_tokens > max_tokens_limit:
        raise RequestError(
            f"max_tokens {max_tokens} exceeds this server's limit of {max_tokens_limit}",
            param="max_tokens", code="max_tokens_exceeded",
        )
    stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    generation = GenerationRequest(
        messages=messages,
        max_new_tokens=max_tokens,
        temperature=request.temperature or 0.0,
        top_p=request.top_p if request.top_p is not None else 1.0,
        seed=request.seed,
        stop=[s for s in stops if s],
    )
    return generation, image


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def chat_completion(cid: str, model: str, result: GenerationResult) -> dict[str, Any]:
    from openai.types.chat import ChatCompletion

    return ChatCompletion.model_validate(
        {
            "id": cid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage(result.prompt_tokens, result.completion_tokens),
        }
    ).model_dump(mode="json", exclude_none=True)


def chunk(cid: str, model: str, created: int, delta: dict[str, Any], finish_reason: str | None = None,
          usage: dict[str, int] | None = None) -> str:
    """One SSE `data:` line for a ChatCompletionChunk."""
    from openai.types.chat import ChatCompletionChunk

    payload = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    if usage is not None:
        payload["usage"] = usage
    return "data: " + ChatCompletionChunk.model_validate(payload).model_dump_json(exclude_none=True) + "\n\n"


def content_chunks(cid: str, model: str, created: int) -> Callable[[str], str]:
    """`chunk(...)` for content deltas, built once through the SDK's type and then filled per token by string
    formatting: the per-token cost of a stream is one json.dumps of the new text."""
    marker = "\x00"
    head, tail = chunk(cid, model, created, {"content": marker}).split(json.dumps(marker), 1)
    return lambda text: head + json.dumps(text, ensure_ascii=False) + tail


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def usage(result: GenerationResult) -> dict[str, int]:
    return _usage(result.prompt_tokens, result.completion_tokens)


def model_list(name: str, created: int) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "medfoundry"}]}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
