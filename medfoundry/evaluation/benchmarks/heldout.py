"""The recipe's own held-out QA split of a curated dataset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medfoundry.evaluation.benchmarks.base import (
    Benchmark,
    EvalItem,
    Skipped,
    iter_dataset_records,
    record_rarity,
    register,
)
from medfoundry.tasks.items import YES_NO, YES_NO_MAYBE
from medfoundry.tasks.records import is_qa, is_rl_holdout, task_of


@register
class HeldOut(Benchmark):
    """The recipe's own held-out QA split of a curated dataset (records.jsonl), minus the half reserved for RL
    (`medfoundry.tasks.records.is_rl_holdout`)."""

    name = "heldout"
    public = False
    folder = "."
    patterns = ("records.jsonl",)
    description = "held-out QA records of a medfoundry dataset (split == holdout, not reserved for RL)"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        for entry in iter_dataset_records(path):
            if isinstance(entry, Skipped):
                yield entry
                continue
            record, line = entry
            if record.split != "holdout" or not is_qa(record) or is_rl_holdout(record):
                continue
            task = task_of(record)
            labels = tuple(record.meta.get("labels") or (YES_NO_MAYBE if "pubmedqa" in record.source.lower() else YES_NO))
            image = path.parent / record.image if record.image else None
            if image is not None and not image.is_file():
                yield Skipped(str(path), line, f"record {record.id}: image {record.image} not found")
                continue
            answer = record.answer.strip()
            if task == "multiple_choice":
                answer = answer.upper()
                if answer not in (record.options or {}):
                    yield Skipped(str(path), line, f"record {record.id}: gold answer {answer!r} is not an option")
                    continue
            elif task == "yes_no":
                answer = answer.lower()
            yield EvalItem(
                id=record.id,
                benchmark=self.name,
                task=task,  # type: ignore[arg-type]
                question=record.question or "",
                answer=answer,
                options=record.options,
                context=record.text or None,
                image=image,
                labels=labels,
                meta={"source": record.source, "modality": record.modality, **record_rarity(record)},
                source=f"{path}:{line}",
            )
