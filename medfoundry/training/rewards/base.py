"""Helpers every reward shares. A reward follows TRL's signature: `fn(completions, **columns) -> list[float | None]`,
one score per completion; dataset columns arrive as lists aligned with `completions`; None means "not applicable"
(TRL leaves it out of the weighted sum)."""

from __future__ import annotations

import json
import re
from typing import Any

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)
_WORD = re.compile(r"[a-z][a-z0-9\-]+")


def completion_text(completion: Any) -> str:
    """Plain text of a completion given as a string or as TRL conversational messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(completion_text(m) for m in completion)
    if isinstance(completion, dict):
        content = completion.get("content") or ""
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
        # TRL's response parsers (used with tools) split "<think>...</think>" out into reasoning_content
        reasoning = completion.get("reasoning_content")
        return f"<think>{reasoning}</think>{text}" if reasoning else text
    return str(completion)


def column(kwargs: dict[str, Any], name: str, n: int) -> list[Any]:
    values = kwargs.get(name)
    return list(values) if values is not None else [None] * n


def parse_options(value: Any) -> dict[str, str] | None:
    """Options as a dict: datasets columns hold them as JSON strings (rows have different letters)."""
    if not value:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    return {k: v for k, v in dict(value).items() if v is not None} or None


def without_think(text: str) -> str:
    return _THINK.sub(" ", text)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())
