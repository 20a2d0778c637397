"""Tool-use decision traces, scored from the conversational completion TRL builds with tools (assistant turns with
`tool_calls`, then `tool` turns with the results; failures are "{'error': ...}" tool messages):

  0.0   the row's `expected_tool` was never called, or every call failed
  0.5 x share of successful calls   the final answer does not use the tool's result
  1.0 x share of successful calls   the final answer uses it: the answer's first number equals a number in a
        successful result (within 0.5), or the answer text appears in it (codes, names)
  None  no tool was called and none was expected
"""

from __future__ import annotations

import re
from typing import Any

from medfoundry.tasks.extractors import normalize_text
from medfoundry.training.rewards.base import column, completion_text
from medfoundry.training.rewards.rules import final_answer_text, parse_number

_NUMBERS = re.compile(r"[-+]?\d+(?:\.\d+)?")


def trace(completion: Any) -> tuple[list[str], list[str], str]:
    """(names of the tools called, contents of the successful tool results, the final assistant text)."""
    if not isinstance(completion, list):
        return [], [], completion_text(completion)
    called, results, final = [], [], ""
    for message in completion:
        for call in message.get("tool_calls") or []:
            called.append((call.get("function") or call).get("name", ""))
        if message.get("role") == "tool":
            content = message.get("content")
            content = content if isinstance(content, str) else completion_text(message)
            if not content.startswith("{'error'"):
                results.append(content)
        elif message.get("role") == "assistant" and not message.get("tool_calls"):
            final = completion_text(message)
    return called, results, final


def uses_result(answer: str, results: list[str]) -> bool:
    span = final_answer_text(answer)
    value = parse_number(span)
    for result in results:
        if value is not None and any(abs(value - float(n)) <= 0.5 for n in _NUMBERS.findall(result)):
            return True
        if normalize_text(span) and normalize_text(span) in normalize_text(result):
            return True
    return False


def tool_use(completions: list[Any], **kwargs: Any) -> list[float | None]:
    expected = column(kwargs, "expected_tool", len(completions))
    scores: list[float | None] = []
    for completion, want in zip(completions, expected, strict=True):
        called, results, final = trace(completion)
        if want and want not in called:
            scores.append(0.0)
        elif not called:
            scores.append(None)
        else:
            success = len(results) / len(called)
            scores.append(success * (1.0 if results and uses_result(final, results) else 0.5))
    return scores
