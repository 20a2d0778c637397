"""Chat prompts (text, optional image) rendered and encoded the same way for generation and training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image


@dataclass
class ChatPrompt:
    """One prompt: either `messages` (HF chat format) or `text`; `image` goes into the first user turn."""

    text: str | None = None
    image: Image.Image | None = None
    messages: list[dict[str, Any]] | None = None
    system: str | None = None

    def to_messages(self, vision: bool = True) -> list[dict[str, Any]]:
        if (self.text is None) == (self.messages is None):
            raise ValueError("ChatPrompt needs exactly one of text= or messages=")
        messages = [dict(m) for m in self.messages] if self.messages is not None else [{"role": "user", "content": self.text}]
        if self.system is not None and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": self.system})
        if vision and self.image is not None:
            messages = attach_image(messages)
        if not vision:
            messages = [{**m, "content": _as_text(m["content"])} for m in messages]
        return messages


def attach_image(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Put an image placeholder before the text of the first user turn (unless a turn already has one)."""
    if any(_has_image(m) for m in messages):
        return messages
    messages = list(messages)
    first_user = next(i for i, m in enumerate(messages) if m["role"] == "user")
    messages[first_user] = {"role": "user", "content": [{"type": "image"}, *_parts(messages[first_user])]}
    return messages


def _parts(message: dict) -> list[dict]:
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _has_image(message: dict) -> bool:
    return not isinstance(message["content"], str) and any(part.get("type") == "image" for part in message["content"])


def _as_text(content: str | list[dict]) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type", "text") == "text")


def render(loaded, messages: list[dict], add_generation_prompt: bool) -> str:
    """The chat template applied without tokenizing (the processor's template for VLMs)."""
    return loaded.processing_class.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def encode(loaded, texts: list[str], images: list[Image.Image | None], padding_side: str = "right"):
    """Tokenize rendered texts with their images (one image token span per image); returns a BatchFeature of
    tensors (input_ids, attention_mask, and for images pixel_values, image_grid_thw)."""
    present = [img.convert("RGB") for img in images if img is not None]
    if loaded.processor is None:
        if present:
            raise ValueError(f"{loaded.family} is a text-only model: drop the images or use a vision model")
        return loaded.tokenizer(texts, padding=True, padding_side=padding_side, return_tensors="pt", add_special_tokens=False)
    return loaded.processor(
        text=texts,
        images=present or None,
        padding=True,
        padding_side=padding_side,
        return_tensors="pt",
        add_special_tokens=False,
    )
