"""Radiology report generation over a medfoundry dataset's held-out report records."""

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


@register
class ReportFindings(Benchmark):
    """Radiology report generation over a medfoundry dataset: held-out `report` records (image -> findings text)."""

    name = "report_findings"
    folder = "."
    patterns = ("records.jsonl",)
    main_metric = "entity_f1"
    fallback_metric = "rouge_l"
    public = False
    description = "held-out report records of a medfoundry dataset (image + findings text)"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        for entry in iter_dataset_records(path):
            if isinstance(entry, Skipped):
                yield entry
                continue
            record, line = entry
            if record.kind != "report" or record.split != "holdout" or not record.text.strip():
                continue
            image = path.parent / record.image if record.image else None
            if image is not None and not image.is_file():
                yield Skipped(str(path), line, f"record {record.id}: image {record.image} not found")
                continue
            what = f"{record.modality} " if record.modality else ""
            yield EvalItem(
                id=record.id,
                benchmark=self.name,
                task="report",
                question=f"Write the findings section of the radiology report for this {what}image.",
                answer=record.text.strip(),
                image=image,
                meta={"modality": record.modality, **record_rarity(record)},
                source=f"{path}:{line}",
            )
