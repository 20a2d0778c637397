"""VQA-RAD radiology VQA, JSON list plus images/."""

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
class VQARAD(Benchmark):
    name = "vqa_rad"
    folder = "vqa_rad"
    patterns = ("*.json",)
    description = "VQA-RAD radiology VQA; JSON list with image_name, question, answer, answer_type; images/"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        images = path.parent / "images"
        for entry in iter_json_container(path):
            if isinstance(entry, Skipped):
                yield entry
                continue
            _, row, line = entry
            if not isinstance(row, dict):
                yield Skipped(str(path), line, "expected an object")
                continue
            qid = row.get("qid", f"{path.stem}-{line}")
            question, answer = _text(row.get("question")), _text(str(row.get("answer", "")))
            answer_type = str(row.get("answer_type", "")).strip().upper()
            image = images / str(row.get("image_name", ""))
            if question is None or answer is None:
                yield Skipped(str(path), line, f"qid {qid}: missing question or answer")
            elif answer_type not in ("OPEN", "CLOSED"):
                yield Skipped(str(path), line, f"qid {qid}: answer_type must be OPEN or CLOSED, got {answer_type!r}")
            elif not row.get("image_name") or not image.is_file():
                yield Skipped(str(path), line, f"qid {qid}: image {row.get('image_name')!r} not found in {images}")
            else:
                # Closed as the field counts it (LLaVA-Med, MedEvalKit): yes/no answers. An upstream CLOSED item with
                # another answer ("left", "CT") is scored as open; its upstream label is kept.
                closed_yes_no = answer_type == "CLOSED" and answer.lower() in ("yes", "no")
                yield EvalItem(
                    id=str(qid),
                    benchmark=self.name,
                    task="yes_no" if closed_yes_no else "short_answer",
                    question=question,
                    answer=answer.lower() if closed_yes_no else answer,
                    image=image,
                    meta={
                        "answer_type": "closed" if closed_yes_no else "open",
                        "upstream_answer_type": answer_type.lower(),
                        "organ": row.get("image_organ"),
                        "question_type": row.get("question_type"),
                    },
                    source=f"{path}:{line}",
                )
