"""A user corpus with every kind of damage the readers must survive (shared by the curation tests)."""

from __future__ import annotations

import json
from pathlib import Path

from pydicom.data import get_testdata_file

GOOD_NOTES = [
    "Patient John Carter was seen on 03/14/2021 for worsening asthma; albuterol was increased and a spacer taught.",
    "Chest pain on exertion relieved by rest, typical of stable angina; started aspirin and a beta blocker.",
    "Type 2 diabetes mellitus with peripheral neuropathy; metformin continued, foot care reviewed in detail.",
]
MAX_CHARS = 2000  # the tests run with curation.max_record_chars=2000


def build(root: Path) -> dict:
    """Write the corpus under `root`; returns the expected outcome counts."""
    root.mkdir(parents=True, exist_ok=True)
    lines: list[bytes] = [
        json.dumps({"id": 1, "text": GOOD_NOTES[0]}).encode(),
        b'{"id": 2, "text": "Patient with fever and a productive co',  # truncated line
        b'{"id": 3, "text": "caf\xe9 au lait spots on the trunk"}',  # latin-1 byte: not UTF-8
        json.dumps({"id": 4, "text": "   "}).encode(),  # empty
        json.dumps({"id": 5, "text": "word " * MAX_CHARS}).encode(),  # oversized
        json.dumps({"id": 6, "text": 12345}).encode(),  # wrong type
        json.dumps({"id": [7], "text": "an id that is a list"}).encode(),  # wrong type
        b"[1, 2, 3]",  # not an object
        b"",  # blank line: not a record
        json.dumps({"id": "8", "source": "user:x", "kind": "poem", "text": "full record, bad kind"}).encode(),
        json.dumps({"id": 9, "note": GOOD_NOTES[1]}).encode(),
        json.dumps({"id": 10, "summary": "no known text field name"}).encode(),
        json.dumps(
            {"id": 11, "question": "Which drug class is metoprolol?", "answer": "beta blocker"}
        ).encode(),
    ]
    (root / "notes.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    images = root / "images"
    images.mkdir(exist_ok=True)
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (images / "ct_small.dcm").write_bytes(ct)
    (images / "ct_small.txt").write_text("Axial computed tomography slice of the abdomen.")
    (images / "truncated.dcm").write_bytes(ct[: len(ct) // 2])
    (images / "truncated.txt").write_text("A study whose file was cut short.")
    (images / "garbage.dcm").write_bytes(b"\x00\x11" * 300)
    (images / "garbage.txt").write_text("Random bytes with a DICOM name.")
    from PIL import Image

    Image.new("L", (40, 30), color=128).save(images / "no_caption.png")
    (images / "standalone_note.txt").write_text(GOOD_NOTES[2])

    (root / "table.csv").write_bytes(
        b"id,section_text\n"
        b"c1,Hypertension controlled on lisinopril; renal function stable on repeat testing.\n"
        b"c2,Bad byte here \xff\xfe in the middle of a row\n"
        b"c3,too,many,cells\n"
        b"c4,\n"
    )
    (root / "blob.bin").write_bytes(b"\x89\x00binary")
    return {
        # records that survive reading: notes 1, 9, 11; ct_small; standalone note; csv c1
        "read_ok": 6,
        # jsonl 2,3,4,5,6,7,[..],8,10 (9) + truncated, garbage, no_caption (3) + csv c2,c3,c4 (3) + blob.bin (1)
        "read_quarantined": 16,
    }
