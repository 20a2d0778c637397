"""Chat with a served model (ours or any OpenAI-compatible endpoint): streaming, images, sampling parameters, and the
same request as a copyable curl / openai-SDK snippet (the API key is never part of a snippet)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from medfoundry.serving.client import MedFoundryClient, image_data_uri, openai_base_url


class PlaygroundError(RuntimeError):
    """The endpoint could not answer; the message is safe to show (no key, no body echo)."""


@dataclass
class ChatRequest:
    endpoint: str
    question: str
    model: str = ""
    image: bytes | None = None
    image_name: str = ""
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    system: str = ""

    def sampling(self) -> dict[str, Any]:
        values = {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}
        return {k: v for k, v in values.items() if v is not None}


def _client(request: ChatRequest, api_key: str | None) -> MedFoundryClient:
    return MedFoundryClient(request.endpoint, api_key=api_key, model=request.model or None, timeout=120, max_retries=0)


def messages(request: ChatRequest) -> list[dict[str, Any]]:
    image = None
    if request.image:
        image = image_data_uri(request.image, request.image_name)  # ValueError for an unknown type
    content: Any = request.question
    if image:
        content = [{"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": request.question}]
    system = [{"role": "system", "content": request.system}] if request.system else []
    return system + [{"role": "user", "content": content}]


def stream_chat(request: ChatRequest, api_key: str | None = None) -> Iterator[str]:
    """Tokens as the endpoint streams them. Raises PlaygroundError before the first token when the endpoint is down
    or refuses the request, ValueError for an image of unknown type."""
    import openai

    body = messages(request)
    client = _client(request, api_key)
    try:
        stream = client.openai.chat.completions.create(
            model=client.model, messages=body, stream=True, **request.sampling()
        )
    except openai.APIConnectionError:
        raise PlaygroundError(f"cannot reach {request.endpoint}: is the model server running?") from None
    except openai.APIStatusError as err:
        detail = err.body.get("message") if isinstance(err.body, dict) else None
        raise PlaygroundError(f"the endpoint answered {err.status_code}: {detail or err.message}") from None
    except RuntimeError as err:  # no model served
        raise PlaygroundError(str(err)) from None

    def pieces() -> Iterator[str]:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    return pieces()


def snippets(request: ChatRequest) -> dict[str, str]:
    """The request as curl and as openai-SDK Python; the image is a placeholder path and the key an env var."""
    base = openai_base_url(request.endpoint)
    model = request.model or "MODEL"
    content: Any = request.question
    if request.image:
        mime = image_data_uri(request.image, request.image_name).split(";", 1)[0].removeprefix("data:")
        content = [
            {"type": "image_url", "image_url": {"url": f"data:{mime};base64,$(base64 -w0 IMAGE)"}},
            {"type": "text", "text": request.question},
        ]
    body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": True, **request.sampling()}
    head = (
        f"curl -N {shlex.quote(base + '/chat/completions')} \\\n"
        '  -H "Authorization: Bearer $MEDFOUNDRY_API_KEY" -H "Content-Type: application/json" \\\n'
    )
    # With an image the body goes through a here-document, so the shell fills in the file's base64.
    payload = json.dumps(body).replace("$", "\\$").replace("\\$(base64", "$(base64")
    curl = head + (f"  -d @- <<EOF\n{payload}\nEOF" if request.image else f"  -d {shlex.quote(json.dumps(body))}")
    image_line = ""
    user: str = f"{request.question!r}"
    if request.image:
        image_line = "\nfrom medfoundry.serving.client import image_data_uri\nimage = image_data_uri('IMAGE')\n"
        user = (
            '[{"type": "image_url", "image_url": {"url": image}}, '
            f'{{"type": "text", "text": {request.question!r}}}]'
        )
    params = "".join(f", {k}={v!r}" for k, v in request.sampling().items())
    python = (
        "import os\nfrom openai import OpenAI\n"
        f"{image_line}"
        f"client = OpenAI(base_url={base!r}, api_key=os.environ['MEDFOUNDRY_API_KEY'])\n"
        f"stream = client.chat.completions.create(model={model!r}, stream=True{params},\n"
        f"    messages=[{{'role': 'user', 'content': {user}}}])\n"
        "for chunk in stream:\n"
        "    print(chunk.choices[0].delta.content or '', end='', flush=True)\n"
    )
    return {"curl": curl, "python": python}
