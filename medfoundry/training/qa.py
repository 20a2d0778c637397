"""QA records as chat: the prompt (shared with evaluation's reasoning template), the SFT target, and which held-back
items belong to RL."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medfoundry.data.records import Record
from medfoundry.tasks.items import YES_NO, YES_NO_MAYBE, EvalItem
from medfoundry.tasks.prompts import build_prompt
from medfoundry.tasks.records import is_qa, is_rl_holdout, task_of

log = logging.getLogger("medfoundry.training")
__all__ = ["YES_NO", "YES_NO_MAYBE", "is_qa", "is_rl_holdout", "task_of", "record_image", "qa_messages", "sft_target"]


def record_image(record: Record, dataset_dir: Path) -> Path | None:
    """The record's image path inside the dataset, or None (missing files are logged, the text is still used)."""
    if not record.image:
        return None
    path = Path(dataset_dir) / record.image
    if not path.is_file():
        log.warning("record %s: image %s not found; training on its text only", record.id, path)
        return None
    return path


def qa_messages(record: Record, reasoning: bool = True) -> list[dict[str, Any]]:
    """System + user turns for a QA record, built by evaluation's prompt templates so training and evaluation
    prompts are the same text. The record's `text` is the question's context (e.g. PubMedQA abstracts)."""
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
