"""MMLU medical subsets, header-less CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from medfoundry.evaluation.benchmarks.base import Benchmark, EvalItem, Skipped, _multiple_choice, register


@register
class MMLUMedical(Benchmark):
    name = "mmlu_medical"
    folder = "mmlu_medical"
    patterns = ("*.csv",)
    description = "MMLU medical subsets; CSV without header: question, A, B, C, D, answer letter"
    harness_task_file = "mmlu/default/mmlu_{subject}.yaml"

    @classmethod
    def harness_prompt(cls, item: EvalItem) -> tuple[str, str]:
        """tasks/mmlu/default: the subject's description, then the stripped question and lettered choices."""
        subject = str(item.meta.get("subject", ""))
        description = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        options = "\n".join(f"{letter}. {text}" for letter, text in (item.options or {}).items())
        return f"{description}{item.question.strip()}\n{options}\nAnswer:", f"lm-eval:mmlu_{subject}"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        subject = path.stem.removesuffix("_test").removesuffix("_dev").removesuffix("_val")
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as err:
                    yield Skipped(str(path), reader.line_num, f"invalid CSV: {err}")
                    continue
                line = reader.line_num
                if not row or not any(cell.strip() for cell in row):
                    continue
                if len(row) != 6:
                    yield Skipped(str(path), line, f"expected 6 columns (question, A-D, answer), got {len(row)}")
                    continue
                yield _multiple_choice(
                    self.name, path, line, f"{subject}-{line}", row[0], dict(zip("ABCD", row[1:5], strict=True)),
                    row[5], {"subject": subject},
                )
