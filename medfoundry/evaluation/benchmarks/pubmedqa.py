"""PubMedQA (PQA-L), JSON object keyed by PMID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medfoundry.evaluation.benchmarks.base import (
    Benchmark,
    EvalItem,
    Skipped,
    _text,
    iter_json_container,
    register,
)


@register
class PubMedQA(Benchmark):
    name = "pubmedqa"
    folder = "pubmedqa"
    patterns = ("*.json",)
    description = "PubMedQA (PQA-L): yes/no/maybe with the abstract's contexts; JSON object keyed by PMID"
    harness_task_file = "pubmedqa/pubmedqa.yaml"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        for entry in iter_json_container(path):
            if isinstance(entry, Skipped):
                yield entry
                continue
            pmid, row, line = entry
            where = f"{path}:{line}"
            if not isinstance(row, dict):
                yield Skipped(str(path), line, f"PMID {pmid}: expected an object")
                continue
            question = _text(row.get("QUESTION"))
            decision = _text(row.get("final_decision"))
            contexts = row.get("CONTEXTS")
            if question is None:
                yield Skipped(str(path), line, f"PMID {pmid}: missing QUESTION")
            elif decision is None or decision.lower() not in ("yes", "no", "maybe"):
                yield Skipped(str(path), line, f"PMID {pmid}: final_decision must be yes/no/maybe, got {decision!r}")
            elif not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
                yield Skipped(str(path), line, f"PMID {pmid}: CONTEXTS must be a list of strings")
            else:
                yield EvalItem(
                    id=str(pmid),
                    benchmark=self.name,
                    task="yes_no",
                    question=question,
                    answer=decision.lower(),
                    context="\n".join(contexts),
                    labels=("yes", "no", "maybe"),
                    meta={"meshes": row.get("MESHES") or []},
                    source=where,
                )
