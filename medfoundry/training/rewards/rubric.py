"""Rubric coverage: the weighted share of rubric items the completion satisfies (reasoning included).

`rubric` column: per row a list of items, each a string (a phrase that must appear) or a dict
{"keywords": [...], "weight": 1.0, "match": "all" | "any"}; matching is case-insensitive on word boundaries.
Rows without a rubric score None (not applicable)."""

from __future__ import annotations

import json
import re
from typing import Any

from medfoundry.training.rewards.base import column, completion_text


def _items(rubric: Any) -> list[dict[str, Any]]:
    if isinstance(rubric, str):
        rubric = json.loads(rubric) if rubric.strip().startswith("[") else [rubric]
    items = []
    for item in rubric or []:
        if isinstance(item, str):
            item = {"keywords": [item]}
        keywords = [k for k in item.get("keywords", []) if k and k.strip()]
        if keywords:
            items.append({"keywords": keywords, "weight": float(item.get("weight", 1.0)), "match": item.get("match", "all")})
    return items


def _present(phrase: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase.lower().strip())}(?!\w)", text) is not None


def rubric(completions: list[Any], **kwargs: Any) -> list[float | None]:
    rubrics = column(kwargs, "rubric", len(completions))
    scores: list[float | None] = []
    for completion, row_rubric in zip(completions, rubrics, strict=True):
        items = _items(row_rubric)
        total = sum(item["weight"] for item in items)
        if not items or total <= 0:
            scores.append(None)
            continue
        text = completion_text(completion).lower()
        hit = 0.0
        for item in items:
            found = [_present(k, text) for k in item["keywords"]]
            if all(found) if item["match"] == "all" else any(found):
                hit += item["weight"]
        scores.append(hit / total)
    return scores
