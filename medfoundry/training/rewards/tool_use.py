"""Tool-use decision traces: the share of the completion's tool calls that named a known tool with valid arguments
and returned without error (TRL writes failures as "{'error': ...}" tool messages). A row with an `expected_tool`
column scores 0 when that tool was never called. Completions without tool calls (and nothing expected) score None.
"""

from __future__ import annotations

from typing import Any

from medfoundry.training.rewards.base import column


def _trace(completion: Any) -> tuple[list[str], list[bool]]:
    """(names of the tools called, success of each tool response) from a conversational completion."""
    if not isinstance(completion, list):
        return [], []
    called, ok = [], []
    for message in completion:
        for call in message.get("tool_calls") or []:
            called.append((call.get("function") or call).get("name", ""))
        if message.get("role") == "tool":
            content = message.get("content")
            ok.append(not (isinstance(content, str) and content.startswith("{'error'")))
    return called, ok


def tool_use(completions: list[Any], **kwargs: Any) -> list[float | None]:
    expected = column(kwargs, "expected_tool", len(completions))
    scores: list[float | None] = []
    for completion, want in zip(completions, expected, strict=True):
        called, ok = _trace(completion)
        if want and want not in called:
            scores.append(0.0)
        elif not called:
            scores.append(None)
        else:
            scores.append(sum(ok) / len(called) if ok else 0.0)
    return scores
