"""MedMCQA, JSONL (original 1-based or HF-export 0-based `cop`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medfoundry.evaluation.benchmarks.base import (
    Benchmark,
    BenchmarkDataError,
    EvalItem,
    Skipped,
    _multiple_choice,
    iter_jsonl,
    register,
)


@register
class MedMCQA(Benchmark):
    """MedMCQA's `cop` is 1-based in the original release (1-4) and 0-based in the widely used Hugging Face export
    (0-3). The convention is read from the file: a 0 means 0-based, a 4 means 1-based; a file with only 1-3 cannot
    be told apart and is refused unless `cop_base` (0 or 1) is given."""

    name = "medmcqa"
    folder = "medmcqa"
    patterns = ("*.jsonl", "*.json")
    description = "MedMCQA; JSONL with question, opa..opd and cop (1-4 original, 0-3 HF export; detected per file)"
    harness_task_file = "medmcqa/medmcqa.yaml"

    @classmethod
    def harness_prompt(cls, item: EvalItem) -> tuple[str, str]:
        """tasks/medmcqa/utils_medmcqa.py doc_to_text."""
        options = "".join(f"{letter}. {text}\n" for letter, text in (item.options or {}).items())
        return f"Question: {item.question}\nChoices:\n{options}Answer:", "lm-eval:medmcqa"

    def cop_base(self, path: Path) -> int:
        given = self.options.get("cop_base")
        if given is not None:
            if given not in (0, 1):
                raise BenchmarkDataError(f"cop_base must be 0 or 1, got {given!r}")
            return int(given)
        seen = {
            row.get("cop")
            for entry in iter_jsonl(path)
            if not isinstance(entry, Skipped)
            for row in [entry[0]]
            if isinstance(row.get("cop"), int) and not isinstance(row.get("cop"), bool)
        }
        if 0 in seen and 4 in seen:
            raise BenchmarkDataError(f"{path}: cop holds both 0 and 4: neither 0-based nor 1-based")
        if 0 in seen:
            return 0
        if 4 in seen:
            return 1
        raise BenchmarkDataError(
            f"{path}: cannot tell whether cop is 0-based (HF export) or 1-based (original): only values "
            f"{sorted(seen)} occur; pass --cop-base 0 or 1"
        )

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        base = self.cop_base(path)
        for entry in iter_jsonl(path):
            if isinstance(entry, Skipped):
                yield entry
                continue
            row, line = entry
            cop = row.get("cop")
            if isinstance(cop, bool) or not isinstance(cop, int) or not base <= cop <= base + 3:
                yield Skipped(str(path), line, f"cop must be an integer {base}-{base + 3} ({base}-based file), got {cop!r}")
                continue
            options = {letter: row.get(f"op{letter.lower()}") for letter in "ABCD"}
            yield _multiple_choice(
                self.name, path, line, str(row.get("id") or f"{path.stem}-{line}"), row.get("question"), options,
                "ABCD"[cop - base], {"subject": row.get("subject_name"), "topic": row.get("topic_name"), "cop_base": base},
            )
