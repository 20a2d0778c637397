"""MTS-Dialog: clinical note sections from doctor-patient dialogues."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from medfoundry.evaluation.benchmarks.base import Benchmark, EvalItem, Skipped, _text, register

MTS_SECTIONS = {
    "GENHX": "history of present illness", "FAM/SOCHX": "family and social history", "ROS": "review of systems",
    "PASTSURGICAL": "past surgical history", "PASTMEDICALHX": "past medical history", "CC": "chief complaint",
    "MEDICATIONS": "medications", "ALLERGY": "allergies", "ASSESSMENT": "assessment", "EDCOURSE": "emergency course",
    "DIAGNOSIS": "diagnosis", "DISPOSITION": "disposition", "EXAM": "examination", "PLAN": "plan",
    "PROCEDURES": "procedures", "IMAGING": "imaging", "LABS": "laboratory results", "IMMUNIZATIONS": "immunizations",
    "GYNHX": "gynecologic history", "OTHER_HISTORY": "other history",
}


@register
class MTSDialog(Benchmark):
    """Clinical note generation from a doctor-patient dialogue, scored like report generation: entity-level
    precision/recall/F1 and hallucination rate against the reference section (via the entity linker)."""

    name = "mts_dialog"
    folder = "mts_dialog"
    patterns = ("*.csv",)
    main_metric = "entity_f1"
    fallback_metric = "rouge_l"
    public = False  # not one of the six headline benchmarks; run it by name
    description = "MTS-Dialog; CSV with ID, section_header, section_text, dialogue (note section from dialogue)"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"section_header", "section_text", "dialogue"} - set(reader.fieldnames or [])
            if missing:
                yield Skipped(str(path), 1, f"missing columns {', '.join(sorted(missing))}")
                return
            for row in reader:
                line = reader.line_num
                header, text, dialogue = (_text(row.get(k)) for k in ("section_header", "section_text", "dialogue"))
                if header is None or text is None or dialogue is None:
                    yield Skipped(str(path), line, "empty section_header, section_text or dialogue")
                    continue
                section = MTS_SECTIONS.get(header.upper(), header.lower())
                yield EvalItem(
                    id=f"{path.stem}-{row.get('ID') or line}",
                    benchmark=self.name,
                    task="report",
                    question=f"Write the {section} section of the clinical note for this dialogue.",
                    answer=text,
                    context=dialogue,
                    meta={"section": header},
                    source=f"{path}:{line}",
                )
