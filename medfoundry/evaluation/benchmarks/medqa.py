"""MedQA-USMLE, 4 options, JSONL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medfoundry.evaluation.benchmarks.base import (
    Benchmark,
    EvalItem,
    Skipped,
    _multiple_choice,
    iter_jsonl,
    register,
)


@register
class MedQA(Benchmark):
    name = "medqa"
    folder = "medqa"
    patterns = ("*.jsonl",)
    description = "MedQA-USMLE, 4 options; JSONL with question, options {A..D}, answer_idx"
    harness_task_file = "medqa/medqa.yaml"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        for entry in iter_jsonl(path):
            if isinstance(entry, Skipped):
                yield entry
                continue
            row, line = entry
            yield _multiple_choice(
                self.name, path, line, f"{path.stem}-{line}", row.get("question"), row.get("options"),
                row.get("answer_idx"), {"meta_info": row.get("meta_info")},
            )
