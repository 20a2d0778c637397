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


# A letter as a model writes it: "B", "(B)", "**B**", "option B". Lower-case only where it cannot be the article
# "a" (a delimiter or the end follows).
def _letter(letters: str) -> str:
    upper, lower = letters, letters.lower()
    return (
        rf"(?:option|choice|answer)?\s*[(\[*]*(?:([{upper}])(?![\w'-])|([{lower}])(?=\s*[)\].,;:!*]|\s*$|\s+(?:is|would|seems)\b))[)\]*]*"
    )


# Concluding statements, in the forms models write them. Each names the chosen letter in group 1 or 2.
_CONCLUSIONS = (
    # "the answer is B", "final answer: (C)", "correct option is D", "answer would be b."
    r"(?i:answer|option|choice)\s*(?i:is|would\s+be|should\s+be|will\s+be|=|:|-)\s*(?i:most\s+likely\s+)?{L}",
    # "I would choose A", "I'd go with option C", "we select B", "pick D"
    r"(?i:choose|chose|select|selected|pick|picked|go\s+with|going\s+with|opt\s+for)\s+{L}",
    # "The most likely diagnosis is B", "the best next step is (C)", "the drug of choice is D"
    r"(?i:most\s+likely|best|most\s+appropriate|correct|of\s+choice|likeliest)\b[^.?!\n]{{0,60}}?\s(?i:is|would\s+be)\s*:?\s*{L}",
    # "B is the answer", "Option C is correct", "D is the best choice", "(A) is right"
    r"{L}\s+(?i:is|would\s+be|seems|appears)\s+(?i:to\s+be\s+)?(?i:the\s+)?(?i:correct|right|best|most\s+likely|most\s+appropriate|answer|true)\b",
    # A closing connective: "Therefore C.", "So, B."
    r"\b(?i:therefore|thus|hence|so)\s*,?\s*{L}\s*[.!]?\s*$",
    # The closing sentence ends on the letter in brackets: "... it is unchanged (C)."
    r"[(\[]([{U}])[)\]]\s*[.!]?\s*$",
)
# "A is incorrect", "option B is not correct", "not C", "rule out D", "C is wrong", "eliminate A"
_NEGATIONS = (
    r"{L}\s+(?i:is|are|seems|appears)\s+(?i:not\b|incorrect|wrong|false|unlikely|less\s+likely|ruled\s+out|excluded)",
    r"(?i:not|rule\s+out|ruled\s+out|exclude|excluding|eliminate|eliminating|rather\s+than|instead\s+of)\s+{L}",
)


def _letters_at(patterns: tuple[str, ...], span: str, letters: str) -> list[tuple[int, str]]:
    letter = _letter(letters)
    found = []
    for pattern in patterns:
        for match in re.finditer(pattern.format(L=letter, U=letters), span):
            group = next(i for i, g in enumerate(match.groups(), start=1) if g)
            found.append((match.start(group), match.group(group).upper()))
    return sorted(found)


def extract_option(text: str | None, options: dict[str, str], fallback: bool = True) -> Extraction:
    """The chosen option letter, by evidence in this order:

    1. the whole answer span is one letter ("B", "(b)", "**C**");
    2. the last concluding statement ("the answer is B", "I would choose A", "B is correct", "the most likely
       diagnosis is C"), skipping options the output rejects after naming them ("A is incorrect", "not A");
    3. a leading letter ("B) ...", "C: ...");
    4. a concluding statement naming an option's text ("the answer is beta blocker");
    5. exactly one option text (or one "option X" mention) that is not rejected;
    6. with `fallback`, MedEvalKit's rule: the option most similar to the answer (difflib ratio), when the answer
       resembles one at all (ratio >= 0.6) and no other option is as close.
    """
    if not text or not text.strip():
        return _unparseable()
    span, source = answer_span(text)
    tag = "" if source == "text" else f"{source}:"
    letters = "".join(options)
    any_case = f"[{letters}{letters.lower()}]"
    bare = re.fullmatch(rf"\W*(?:option\s*)?({any_case})\W*", span, flags=re.I)
    if bare and bare.group(1).upper() in options:
        return Extraction(bare.group(1).upper(), f"{tag}letter")

    negated = _letters_at(_NEGATIONS, span, letters)
    for at, letter in reversed(_letters_at(_CONCLUSIONS, span, letters)):
        # Rejected where it is named, or later in the output: "(B) rather than (A)", "The answer is B. B is wrong".
        if letter in options and not any(pos >= at and neg == letter for pos, neg in negated):
            return Extraction(letter, f"{tag}stated")

    leading = re.match(rf"^\W*\(?({any_case})(?:\)|\.(?!\w)|:|\s+-)", span)
    if leading and leading.group(1).upper() in options and leading.group(1).upper() not in {n for _, n in negated}:
        return Extraction(leading.group(1).upper(), f"{tag}leading_letter")

    stated_text = re.findall(r"(?i:answer|choice)\s*(?i:is|would\s+be|:)\s*([^.\n]+)", span)
    if stated_text:
        by_text = _match_option_text(stated_text[-1], options)
        if by_text:
            return Extraction(by_text, f"{tag}stated_text")

    rejected = {n for _, n in negated}
    mentioned = {m.upper() for m in re.findall(rf"(?i:option|choice)\s*\(?([{letters}])\b", span)} - rejected
    if len(mentioned) == 1:
        return Extraction(mentioned.pop(), f"{tag}only_option")
    by_text = _match_option_text(_drop_negated_text(span), options)
    if by_text:
        return Extraction(by_text, "option_text")
    if fallback:
        similar = _most_similar_option(span, options)
        if similar:
            return Extraction(similar, "most_similar")
    return _unparseable()


_NEGATED_PHRASE = re.compile(
    r"\b(?:not|rule\s+out|ruled\s+out|exclude|excluding|rather\s+than|instead\s+of|unlike)\s+[^.,;\n]+", re.I
)


def _drop_negated_text(span: str) -> str:
    """The span without the phrases it rejects ("not aspirin", "rather than a diuretic")."""
    return _NEGATED_PHRASE.sub(" ", span)


def _most_similar_option(span: str, options: dict[str, str], floor: float = 0.6) -> str | None:
    """MedEvalKit's fallback (find_most_similar_index: difflib ratio against each option), with a floor so that an
    answer unlike every option stays unparseable instead of being guessed."""
    from difflib import SequenceMatcher

    said = normalize_text(span)
    if not said:
        return None
    ratios = {k: SequenceMatcher(None, said, normalize_text(v)).ratio() for k, v in options.items()}
    best = max(ratios.values())
    winners = [k for k, r in ratios.items() if r == best]
    return winners[0] if best >= floor and len(winners) == 1 else None


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


_LABEL_CONCLUSION = r"(?:answer|conclusion|verdict)\s*(?:is|would\s+be|should\s+be|:|=|-)\s*\W*({labels})\b"


def extract_label(text: str | None, labels: tuple[str, ...] = ("yes", "no", "maybe")) -> Extraction:
    """yes / no (/ maybe), by evidence in this order: the span is one label; the last concluding statement ("so the
    answer is yes" beats an earlier "No significant difference"); the leading word ("Yes." and "yes, but ..."); the
    only label present. Anything else is unparseable."""
    if not text or not text.strip():
        return _unparseable()
    span, source = answer_span(text)
    words = re.findall(r"[a-z]+", span.lower())
    if not words:
        return _unparseable()
    tag = "" if source == "text" else f"{source}:"
    if len(words) == 1 and words[0] in labels:
        return Extraction(words[0], f"{tag}label")
    stated = re.findall(_LABEL_CONCLUSION.format(labels="|".join(labels)), span, flags=re.I)
    if stated:
        return Extraction(stated[-1].lower(), f"{tag}stated")
    hedged = re.search(rf"\b({'|'.join(labels)})\s+or\s+({'|'.join(labels)})\b", span, flags=re.I)
    if hedged:
        return _unparseable()
    if words[0] in labels:
        return Extraction(words[0], f"{tag}leading_word")
    present = {w for w in words if w in labels}
    if len(present) == 1:
        return Extraction(present.pop(), f"{tag}only_label")
    return _unparseable()
