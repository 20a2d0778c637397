"""QA records as chat: the prompt (shared with evaluation's reasoning template), the SFT target, and which held-back
items belong to RL."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from medfoundry.data.records import Record

log = logging.getLogger("medfoundry.training")
YES_NO = ("yes", "no")
YES_NO_MAYBE = ("yes", "no", "maybe")


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


def record_image(record: Record, dataset_dir: Path) -> Path | None:
    """The record's image path inside the dataset, or None (missing files are logged, the text is still used)."""
    if not record.image:
        return None
    path = Path(dataset_dir) / record.image
    if not path.is_file():
        log.warning("record %s: image %s not found; training on its text only", record.id, path)
        return None
    return path


def task_of(record: Record) -> str:
    if record.options:
        return "multiple_choice"
    if record.answer and record.answer.strip().lower() in YES_NO_MAYBE:
        return "yes_no"
    return "short_answer"


def qa_messages(record: Record, reasoning: bool = True) -> list[dict[str, Any]]:
    """System + user turns for a QA record, built by evaluation's prompt templates so training and evaluation
    prompts are the same text. The record's `text` is the question's context (e.g. PubMedQA abstracts)."""
    from medfoundry.evaluation.benchmarks import EvalItem
    from medfoundry.evaluation.prompts import build_prompt

    labels = record.meta.get("labels") or (YES_NO_MAYBE if "pubmedqa" in record.source.lower() else YES_NO)
    item = EvalItem(
        id=record.id,
        benchmark="train",
        task=task_of(record),
        question=record.question or "",
        answer=record.answer or "",
        options=record.options,
        context=record.text or None,
        labels=tuple(labels),
    )
    prompt = build_prompt(item, "reasoning" if reasoning else "plain")
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}]


def sft_target(record: Record, reasoning_format: str) -> str:
    """`<think>{reasoning}</think><answer>{answer}</answer>` (think_answer) or the bare answer (plain)."""
    answer = (record.answer or "").strip()
    if reasoning_format == "plain":
        return answer
    reasoning = (record.reasoning or "").strip()
    if not reasoning:
        option = (record.options or {}).get(answer)
        reasoning = f"Option {answer} ({option}) is correct." if option else f"The answer is {answer}."
    return f"<think>{reasoning}</think><answer>{answer}</answer>"
