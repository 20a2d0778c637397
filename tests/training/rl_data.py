"""The tiny training dataset plus four held-back RL items with images, for the GRPO tests."""

from __future__ import annotations

from training_data import make_dataset

from medfoundry.data.records import IMAGES, RECORDS, Record, read_records, write_jsonl

IMAGE_ITEMS = [
    ("chest.png", "Is there consolidation?", "yes"),
    ("chest.png", "Is the lung clear?", "no"),
    ("head.png", "Is there hemorrhage?", "no"),
    ("head.png", "Is this a head CT?", "yes"),
]


def make_rl_dataset(folder, text_items: bool = True):
    """`make_dataset` plus the image items; `text_items=False` leaves out the text-only RL items."""
    make_dataset(folder)
    rows = [r for r in read_records(folder) if text_items or not r.id.startswith("hold-")]
    for i, (image, question, answer) in enumerate(IMAGE_ITEMS):
        rows.append(Record(id=f"img-{i}", source="test", kind="qa", question=question, answer=answer,
                           image=f"{IMAGES}/{image}", split="holdout", meta={"holdout_use": "rl"}))
    write_jsonl(folder / RECORDS, rows)
    return folder
