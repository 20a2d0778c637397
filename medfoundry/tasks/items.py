"""An evaluation/training item and its answer type."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Task = Literal["multiple_choice", "yes_no", "short_answer", "long_answer", "report"]
LETTERS = "ABCDEFGHIJ"


@dataclass
class EvalItem:
    id: str
    benchmark: str
    task: Task
    question: str
    answer: str
    options: dict[str, str] | None = None
    context: str | None = None
    image: Path | None = None
    # Labels the yes/no extractor accepts (PubMedQA adds "maybe").
    labels: tuple[str, ...] = ("yes", "no")
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # "file:line" of the row the item came from

YES_NO = ("yes", "no")
YES_NO_MAYBE = ("yes", "no", "maybe")
