"""Which curated records are questions, their answer type, and which held-back ones are for RL (the rest of the
holdout is for evaluation): the rules training's RL rows and evaluation's held-out benchmark both apply."""

from __future__ import annotations

import hashlib

from medfoundry.data.records import Record
from medfoundry.tasks.items import YES_NO_MAYBE


def is_qa(record: Record) -> bool:
    return record.kind == "qa" and bool(record.question) and bool(record.answer)


def is_rl_holdout(record: Record) -> bool:
    """Held-back QA items reserved for RL; the rest of the holdout is for evaluation.

    Rule: `split == "holdout"`, and `meta["holdout_use"] == "rl"` when the record says; otherwise the sha256 of
    "rl:<record id>" decides (first byte even -> RL), so about half of the holdout goes to RL, the same half on every
    run and machine. Evaluation uses `record.split == "holdout" and not is_rl_holdout(record)`.
    """
    if record.split != "holdout":
        return False
    use = record.meta.get("holdout_use")
    if use is not None:
        return use == "rl"
    return hashlib.sha256(f"rl:{record.id}".encode()).digest()[0] % 2 == 0


def task_of(record: Record) -> str:
    if record.options:
        return "multiple_choice"
    if record.answer and record.answer.strip().lower() in YES_NO_MAYBE:
        return "yes_no"
    return "short_answer"
