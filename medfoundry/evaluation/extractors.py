"""Answer extraction from model outputs, with an explicit "unparseable" outcome (scored as wrong and reported).

Order of evidence for every extractor: an `<answer>...</answer>` span (the recipe's reasoning format), then the
last `\\boxed{...}`, then the output itself. Lower-case letters are only accepted where they cannot be the article
"a" (a bare letter, "answer is b", "(b)", "b)").
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

UNPARSEABLE = "unparseable"


@dataclass(frozen=True)
class Extraction:
    value: str | None
    method: str  # which rule matched, or "unparseable"

    @property
    def unparseable(self) -> bool:
        return self.value is None


def _unparseable() -> Extraction:
    return Extraction(None, UNPARSEABLE)


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (nested braces allowed), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for pos in range(begin, len(text)):
        char = text[pos]
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return text[begin:pos].strip()
            depth -= 1
    return None


_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S | re.I)
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)


def answer_span(text: str) -> tuple[str, str]:
    """The part of the output that carries the answer, and where it came from."""
    tagged = _ANSWER_TAG.findall(text)
    if tagged and tagged[-1].strip():
        inner = tagged[-1].strip()
        boxed = extract_boxed(inner)
        return (boxed, "boxed") if boxed else (inner, "answer_tag")
    boxed = extract_boxed(text)
    if boxed:
        return boxed, "boxed"
    return _THINK.sub(" ", text).strip(), "text"


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize_text(text: str) -> str:
    """SQuAD-style normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def extract_free_text(text: str | None) -> Extraction:
    """The answer span as free text; an empty output is unparseable."""
    if not text or not text.strip():
        return _unparseable()
    span, method = answer_span(text)
    span = re.sub(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is\s*:?|:)\s*", "", span.strip(), flags=re.I).strip()
    return Extraction(span, method) if normalize_text(span) else _unparseable()


_STATED = r"(?i:answer|option|choice)\s*(?i:is|:|=)?\s*(?i:option\s*)?\(?\**"


def extract_option(text: str | None, options: dict[str, str]) -> Extraction:
    """The chosen option letter: by letter ("(B)", "B) ...", "The answer is B", "\\boxed{C}") or by option text."""
    if not text or not text.strip():
        return _unparseable()
    span, source = answer_span(text)
    letters = "".join(options)
    upper = f"[{letters}]"
    any_case = f"[{letters}{letters.lower()}]"
    patterns = [
        # The whole span is one letter, possibly wrapped: "B", "(b)", "B.", "**C**".
        (rf"^\W*({any_case})\W*$", "letter"),
        # An explicit statement: "The answer is (B)", "answer: b.", "Correct option: C"; a lower-case letter must
        # end the phrase so "the answer is a difficult one" is not A.
        (rf"{_STATED}({upper})\b(?![\w'-])", "stated"),
        (rf"{_STATED}({any_case})\**\)?\s*(?:$|[.,;:!])", "stated"),
        # Leading letter then a delimiter: "B) ...", "(B) ...", "B. ...", "b) ...", "C: ...".
        (rf"^\W*\(?({any_case})(?:\)|\.(?!\w)|:|\s+-)", "leading_letter"),
    ]
    for pattern, method in patterns:
        found = re.findall(pattern, span)
        if found:
            letter = found[-1].upper() if method == "stated" else found[0].upper()
            if letter in options:
                return Extraction(letter, f"{source}:{method}" if source != "text" else method)
    by_text = _match_option_text(span, options)
    if by_text:
        return Extraction(by_text, "option_text")
    return _unparseable()


def _match_option_text(span: str, options: dict[str, str]) -> str | None:
    said = normalize_text(span)
    if not said:
        return None
    exact = [k for k, v in options.items() if normalize_text(v) == said]
    if len(exact) == 1:
        return exact[0]
    contained = [k for k, v in options.items() if normalize_text(v) and f" {normalize_text(v)} " in f" {said} "]
    # Only one option's text must appear; a longer option containing a shorter one wins over it.
    if len(contained) > 1:
        norm = {k: normalize_text(options[k]) for k in contained}
        contained = [k for k in contained if not any(k != o and norm[k] in norm[o] for o in contained)]
    return contained[0] if len(contained) == 1 else None


def extract_label(text: str | None, labels: tuple[str, ...] = ("yes", "no", "maybe")) -> Extraction:
    """yes / no (/ maybe): the leading word decides ("Yes." and "yes, but ..." are yes); otherwise exactly one label
    must appear in the answer span, anything else is unparseable."""
    if not text or not text.strip():
        return _unparseable()
    span, source = answer_span(text)
    words = re.findall(r"[a-z]+", span.lower())
    if not words:
        return _unparseable()
    tag = "" if source == "text" else f"{source}:"
    if words[0] in labels:
        return Extraction(words[0], f"{tag}leading_word")
    stated = re.findall(rf"answer\s*(?:is|:)\s*\W*({'|'.join(labels)})\b", span, flags=re.I)
    if stated:
        return Extraction(stated[-1].lower(), f"{tag}stated")
    present = {w for w in words if w in labels}
    if len(present) == 1:
        return Extraction(present.pop(), f"{tag}only_label")
    return _unparseable()
