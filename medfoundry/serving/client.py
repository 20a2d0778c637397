"""A small Python client for `medfoundry serve` (any OpenAI-compatible endpoint works), built on the `openai` SDK.

    from medfoundry.serving.client import MedFoundryClient
    client = MedFoundryClient("http://127.0.0.1:8080", api_key="...")
    print(client.ask("Which lobe is affected?", image="scan.dcm"))
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_SUFFIX_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".dcm": "application/dicom",
    ".dicom": "application/dicom",
}


def image_data_uri(image: str | Path | bytes, filename: str | None = None) -> str:
    """A base64 data URI for an image file or its bytes; the type comes from the content (DICOM, PNG, JPEG) or the
    file name."""
    if isinstance(image, bytes | bytearray):
        data, name = bytes(image), filename or ""
    else:
        path = Path(image)
        data, name = path.read_bytes(), filename or path.name
    if len(data) >= 132 and data[128:132] == b"DICM":
        mime = "application/dicom"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        mime = "image/png"
    elif data[:3] == b"\xff\xd8\xff":
        mime = "image/jpeg"
    else:
        mime = _SUFFIX_TYPES.get(Path(name).suffix.lower())
        if mime is None:
            raise ValueError(f"{name or 'image'}: unknown image type (use PNG, JPEG, WebP, BMP, TIFF or DICOM)")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def openai_base_url(endpoint: str) -> str:
    """`http://host:port` (the server root) or a URL already ending in /openai/v1."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1") else endpoint + "/openai/v1"


class MedFoundryClient:
    def __init__(
        self, endpoint: str, api_key: str | None = None, model: str | None = None, timeout: float = 120.0,
        max_retries: int = 2,
    ):
        from openai import OpenAI

        self.openai = OpenAI(
            base_url=openai_base_url(endpoint), api_key=api_key or "unused", timeout=timeout, max_retries=max_retries
        )
        self._model = model

    @property
    def model(self) -> str:
        if self._model is None:
            served = self.models()
            if not served:
                raise RuntimeError("the endpoint serves no model")
            self._model = served[0]
        return self._model

    def models(self) -> list[str]:
        return [m.id for m in self.openai.models.list().data]

    def messages(self, question: str, image: str | Path | bytes | None = None, system: str | None = None) -> list[dict[str, Any]]:
        content: Any = question
        if image is not None:
            content = [{"type": "image_url", "image_url": {"url": image_data_uri(image)}}, {"type": "text", "text": question}]
        messages = [{"role": "system", "content": system}] if system else []
        return messages + [{"role": "user", "content": content}]

    def ask(
        self, question: str, image: str | Path | bytes | None = None, max_tokens: int | None = None,
        system: str | None = None, temperature: float | None = None,
    ) -> str:
        kwargs = {k: v for k, v in {"max_tokens": max_tokens, "temperature": temperature}.items() if v is not None}
        response = self.openai.chat.completions.create(
            model=self.model, messages=self.messages(question, image, system), **kwargs
        )
        return response.choices[0].message.content or ""

    def ask_stream(
        self, question: str, image: str | Path | bytes | None = None, max_tokens: int | None = None,
        system: str | None = None,
    ) -> Iterator[str]:
        kwargs = {"max_tokens": max_tokens} if max_tokens is not None else {}
        stream = self.openai.chat.completions.create(
            model=self.model, messages=self.messages(question, image, system), stream=True, **kwargs
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content
