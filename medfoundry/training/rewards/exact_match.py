"""Verifiable correctness: 1.0 when the extracted answer equals the gold answer, else 0.0.

Extraction is evaluation's (`medfoundry.tasks.extractors`), so the RL signal is the benchmark's metric:
an option letter for multiple choice (`options` column), yes/no/maybe for those golds, normalized free text
otherwise. An unparseable completion scores 0.0.
"""

from __future__ import annotations

from typing import Any

from medfoundry.training.rewards.base import column, completion_text, parse_options

YES_NO_MAYBE = ("yes", "no", "maybe")


def exact_match(completions: list[Any], answer: list[str] | None = None, **kwargs: Any) -> list[float | None]:
    from medfoundry.tasks.extractors import (
        extract_free_text,
        extract_label,
        extract_option,
        normalize_text,
    )

    golds = list(answer) if answer is not None else [None] * len(completions)
    options = column(kwargs, "options", len(completions))
    scores: list[float | None] = []
    for completion, gold, opts in zip(completions, golds, options, strict=True):
        if gold is None or not str(gold).strip():
            scores.append(None)
            continue
        text, gold = completion_text(completion), str(gold).strip()
        opts = parse_options(opts)
        if opts:
            extracted = extract_option(text, opts).value
            scores.append(float(extracted is not None and extracted.upper() == gold.upper()))
        elif gold.lower() in YES_NO_MAYBE:
            extracted = extract_label(text, YES_NO_MAYBE).value
            scores.append(float(extracted is not None and extracted.lower() == gold.lower()))
        else:
            extracted = extract_free_text(text).value
            scores.append(float(extracted is not None and normalize_text(extracted) == normalize_text(gold)))
    return scores
