"""Score one model output against one item: extraction by task type, then per-item metrics in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from medfoundry.evaluation.benchmarks import EvalItem
from medfoundry.evaluation.metrics import entity_scores, exact_match, rouge_l, token_f1
from medfoundry.tasks.extractors import Extraction, extract_free_text, extract_label, extract_option


class EntityLinker(Protocol):
    def entity_ids(self, text: str) -> set[str]: ...


@dataclass
class ItemScore:
    extraction: Extraction
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def unparseable(self) -> bool:
        return self.extraction.unparseable


def extract(item: EvalItem, output: str | None) -> Extraction:
    if item.task == "multiple_choice":
        return extract_option(output, item.options or {})
    if item.task == "yes_no":
        return extract_label(output, item.labels)
    return extract_free_text(output)


def score_item(item: EvalItem, output: str | None, linker: EntityLinker | None = None) -> ItemScore:
    """Unparseable outputs score 0 on every metric (hallucination rate: not counted)."""
    extraction = extract(item, output)
    value = extraction.value
    metrics: dict[str, float] = {}
    if item.task in ("multiple_choice", "yes_no"):
        metrics["accuracy"] = float(value == item.answer)
    elif item.task == "short_answer":
        em = exact_match(value, item.answer)
        metrics.update(accuracy=em, exact_match=em, token_f1=token_f1(value, item.answer) if value else 0.0)
    elif item.task in ("long_answer", "report"):
        metrics.update(rouge_l=rouge_l(value, item.answer), token_f1=token_f1(value, item.answer) if value else 0.0)
        if item.task == "report" and linker is not None:
            if value is None:
                metrics.update(entity_precision=0.0, entity_recall=0.0, entity_f1=0.0)
            else:
                metrics.update(entity_scores(linker.entity_ids(value), linker.entity_ids(item.answer)))
    # VQA-style split by answer type (closed: yes/no or short choice; open: free text).
    answer_type = item.meta.get("answer_type")
    if answer_type == "closed":
        metrics["closed_accuracy"] = metrics["accuracy"]
    elif answer_type == "open":
        metrics["open_exact_match"] = metrics.get("exact_match", metrics.get("accuracy", 0.0))
        metrics["open_token_f1"] = metrics.get("token_f1", metrics.get("accuracy", 0.0))
    return ItemScore(extraction, metrics)

