"""Rubric coverage: the weighted share of rubric items the completion satisfies (reasoning included).

`rubric` column: per row a list of items, each a string (a phrase that must appear) or a dict
{"keywords": [...], "weight": 1.0, "match": "all" | "any"} (`medfoundry.training.rubrics` builds them from the entity
tree). By rule, matching is case-insensitive on word boundaries. With a judge (`rl.judge` in the profile: an
OpenAI-compatible chat endpoint and model), the judge decides which items the answer satisfies instead. Rows without
a rubric score None (not applicable)."""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

from medfoundry.training.rewards.base import column, completion_text


def rubric_items(rubric: Any) -> list[dict[str, Any]]:
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


def satisfied_by_rules(items: list[dict[str, Any]], answer: str) -> list[bool]:
    text = answer.lower()
    out = []
    for item in items:
        found = [_present(k, text) for k in item["keywords"]]
        out.append(all(found) if item["match"] == "all" else any(found))
    return out


class RubricJudge:
    """Asks an OpenAI-compatible chat endpoint which rubric items an answer satisfies; the reply must be a JSON list
    of the satisfied item numbers (1-based). A reply that is not such a list is an error, not a silent 0."""

    def __init__(self, endpoint: str, model: str, timeout_s: float = 60.0) -> None:
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model, self.timeout_s = model, timeout_s

    def __call__(self, items: list[dict[str, Any]], answer: str) -> list[bool]:
        listing = "\n".join(
            f"{i}. mentions {' and '.join(it['keywords']) if it['match'] == 'all' else ' or '.join(it['keywords'])}"
            for i, it in enumerate(items, 1)
        )
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": "You grade medical answers against a rubric. Reply with a JSON list of "
                 "the numbers of the rubric items the answer satisfies, e.g. [1, 3], and nothing else."},
                {"role": "user", "content": f"Rubric:\n{listing}\n\nAnswer:\n{answer}"},
            ],
        }
        request = urllib.request.Request(self.url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - configured endpoint
            reply = json.loads(response.read())["choices"][0]["message"]["content"]
        match = re.search(r"\[[\d,\s]*\]", reply)
        if match is None:
            raise ValueError(f"rubric judge {self.url}: expected a JSON list of item numbers, got {reply[:200]!r}")
        chosen = set(json.loads(match.group(0)))
        return [i in chosen for i in range(1, len(items) + 1)]


class Rubric:
    __name__ = "rubric"  # the name TRL logs: rewards/rubric/mean

    def __init__(self, judge: RubricJudge | None = None) -> None:
        self.judge = judge

    def __call__(self, completions: list[Any], **kwargs: Any) -> list[float | None]:
        rubrics = column(kwargs, "rubric", len(completions))
        scores: list[float | None] = []
        for completion, row_rubric in zip(completions, rubrics, strict=True):
            items = rubric_items(row_rubric)
            total = sum(item["weight"] for item in items)
            if not items or total <= 0:
                scores.append(None)
                continue
            text = completion_text(completion)
            hits = self.judge(items, text) if self.judge else satisfied_by_rules(items, text)
            scores.append(sum(item["weight"] for item, hit in zip(items, hits, strict=True) if hit) / total)
        return scores


rubric = Rubric()
