"""Rule checks for verifiable answers, one per answer type (the `answer_type` column of an RL row):

    option   multiple-choice letter (or the option's text)                  gold "B"
    yes_no   yes / no / maybe label                                          gold "yes"
    string   normalized text equality (case, punctuation, articles ignored)  gold "low hemoglobin"
    set      the same set of items, in any order ("," ";" "and" separate)    gold "fever, cough"
    regex    the answer span fully matches the gold pattern (case-insensitive) gold "E11\\.\\d+"
    number   |value - gold| <= tolerance (absolute; `tolerance` column, else 1% of |gold|, at least 0.01);
             units and thousands separators around the number are ignored    gold "87.5"

`infer_answer_type` gives the type a row has when the row does not say (options -> option, yes/no/maybe -> yes_no,
a plain number -> number, otherwise string).
"""

from __future__ import annotations

import re

from medfoundry.tasks.extractors import (
    answer_span,
    extract_free_text,
    extract_label,
    extract_option,
    normalize_text,
)

ANSWER_TYPES = ("option", "yes_no", "string", "set", "regex", "number")
YES_NO_MAYBE = ("yes", "no", "maybe")
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")
_SET_SEPARATORS = re.compile(r"\s*(?:[,;/\n]|\band\b)\s*", re.I)


def infer_answer_type(gold: str, options: dict[str, str] | None) -> str:
    if options:
        return "option"
    if gold.strip().lower() in YES_NO_MAYBE:
        return "yes_no"
    if _NUMBER.fullmatch(gold.strip()):
        return "number"
    return "string"


def parse_number(text: str) -> float | None:
    """The first number in `text` (the answer span: the figure before any units such as "mL/min/1.73 m2"),
    thousands separators dropped."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[0].replace(",", ""))
    except ValueError:
        return None


def default_tolerance(gold: float) -> float:
    return max(0.01, abs(gold) * 0.01)


def _items(text: str) -> frozenset[str]:
    return frozenset(n for n in (normalize_text(part) for part in _SET_SEPARATORS.split(text)) if n)


def rule_match(
    completion: str,
    gold: str,
    answer_type: str,
    options: dict[str, str] | None = None,
    tolerance: float | None = None,
) -> bool:
    """Whether the completion's answer satisfies the gold answer under `answer_type`'s rule."""
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"answer_type {answer_type!r}: expected one of {', '.join(ANSWER_TYPES)}")
    gold = gold.strip()
    if answer_type == "option":
        if not options:
            raise ValueError("answer_type 'option' needs the row's options")
        chosen = extract_option(completion, options).value
        return chosen is not None and chosen.upper() == gold.upper()
    if answer_type == "yes_no":
        label = extract_label(completion, YES_NO_MAYBE).value
        return label is not None and label.lower() == gold.lower()
    span = extract_free_text(completion).value
    if span is None:
        return False
    if answer_type == "string":
        return normalize_text(span) == normalize_text(gold)
    if answer_type == "set":
        return _items(span) == _items(gold)
    if answer_type == "regex":
        return re.fullmatch(gold, span.strip(), re.I) is not None
    value, target = parse_number(span), parse_number(gold)
    if value is None or target is None:
        return False
    return abs(value - target) <= (tolerance if tolerance is not None else default_tolerance(target))


def final_answer_text(completion: str) -> str:
    """The span that carries the answer (evaluation's rule: the last <answer> tag, a \\boxed{}, else the text
    outside <think>)."""
    return answer_span(completion)[0]
