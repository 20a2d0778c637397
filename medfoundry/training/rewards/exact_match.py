"""Verifiable correctness: 1.0 when the completion's answer satisfies the gold answer under the row's answer-type
rule (`medfoundry.training.rewards.rules`: option, yes_no, string, set, regex, number with tolerance), else 0.0.

Extraction is evaluation's (`medfoundry.tasks.extractors`), so the RL signal is the benchmark's metric. Rows
without an `answer_type` column get the inferred type; an unparseable completion scores 0.0; rows without a gold
answer score None.
"""

from __future__ import annotations

from typing import Any

from medfoundry.training.rewards.base import column, completion_text, parse_options
from medfoundry.training.rewards.rules import infer_answer_type, rule_match


def exact_match(completions: list[Any], answer: list[str] | None = None, **kwargs: Any) -> list[float | None]:
    n = len(completions)
    golds = list(answer) if answer is not None else [None] * n
    options, types, tolerances = column(kwargs, "options", n), column(kwargs, "answer_type", n), column(kwargs, "tolerance", n)
    scores: list[float | None] = []
    for completion, gold, opts, answer_type, tolerance in zip(completions, golds, options, types, tolerances, strict=True):
        if gold is None or not str(gold).strip():
            scores.append(None)
            continue
        opts = parse_options(opts)
        answer_type = answer_type or infer_answer_type(str(gold), opts)
        tol = float(tolerance) if tolerance not in (None, "") else None
        scores.append(float(rule_match(completion_text(completion), str(gold), answer_type, opts, tol)))
    return scores
