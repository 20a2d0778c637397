"""Structured-reasoning format: 1.0 for exactly "<think>...</think><answer>...</answer>" (both non-empty, nothing
else around them but whitespace), 0.5 for a non-empty <answer>...</answer> without that full structure, else 0.0."""

from __future__ import annotations

import re
from typing import Any

from medfoundry.training.rewards.base import completion_text

_FULL = re.compile(r"\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*", re.S)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)


def format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    scores = []
    for completion in completions:
        text = completion_text(completion)
        full = _FULL.fullmatch(text)
        if full and full["think"].strip() and full["answer"].strip():
            scores.append(1.0)
        elif any(span.strip() for span in _ANSWER.findall(text)):
            scores.append(0.5)
        else:
            scores.append(0.0)
    return scores


format_reward.__name__ = "format"  # the name TRL logs: rewards/format/mean
