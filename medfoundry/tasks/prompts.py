"""Versioned prompt templates per task type, in a plain and a reasoning mode.

A template's id ("multiple_choice/plain@v1") is stored with every prediction; change a template's text only together
with its version so scores from different template versions are never compared silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medfoundry.tasks.items import EvalItem, Task

PromptMode = Literal["plain", "reasoning"]


@dataclass(frozen=True)
class Template:
    version: str
    system: str
    instruction: str


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str
    template_id: str


_REASONING = (
    " Think step by step inside <think></think>, then give only the final answer inside <answer></answer>."
)

TEMPLATES: dict[tuple[Task, PromptMode], Template] = {
    ("multiple_choice", "plain"): Template(
        "v1", "You are a medical expert.", "Answer with the letter of the correct option only."
    ),
    ("multiple_choice", "reasoning"): Template(
        "v1", "You are a medical expert.", "Choose the correct option." + _REASONING + " The answer is one letter."
    ),
    ("yes_no", "plain"): Template("v1", "You are a medical expert.", "Answer with {labels} only."),
    ("yes_no", "reasoning"): Template(
        "v1", "You are a medical expert.", "Answer the question." + _REASONING + " The answer is {labels}."
    ),
    ("short_answer", "plain"): Template("v1", "You are a medical expert.", "Answer in a few words."),
    ("short_answer", "reasoning"): Template(
        "v1", "You are a medical expert.", "Answer the question." + _REASONING + " The answer is a few words."
    ),
    ("long_answer", "plain"): Template("v1", "You are a medical expert.", "Answer the question accurately."),
    ("long_answer", "reasoning"): Template("v1", "You are a medical expert.", "Answer the question." + _REASONING),
    ("report", "plain"): Template("v1", "You are a medical expert.", "Write the requested clinical text."),
    ("report", "reasoning"): Template("v1", "You are a medical expert.", "Write the requested clinical text." + _REASONING),
}


def _labels(item: EvalItem) -> str:
    return " or ".join(item.labels) if len(item.labels) < 3 else ", ".join(item.labels[:-1]) + " or " + item.labels[-1]


def build_prompt(item: EvalItem, mode: PromptMode = "plain") -> Prompt:
    template = TEMPLATES[(item.task, mode)]
    parts: list[str] = []
    if item.context:
        parts.append(f"Context:\n{item.context}")
    parts.append(f"Question: {item.question}")
    if item.options:
        parts.append("Options:\n" + "\n".join(f"{k}. {v}" for k, v in item.options.items()))
    parts.append(template.instruction.format(labels=_labels(item)))
    return Prompt(template.system, "\n\n".join(parts), f"{item.task}/{mode}@{template.version}")
