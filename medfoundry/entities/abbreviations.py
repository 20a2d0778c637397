"""Context-dependent clinical abbreviations: "MI", "DM", "HF", "AF", "RA" link only where the document defines them
or the context is clinical.

- **Defined in the document** (Schwartz & Hearst 2003, "A simple algorithm for identifying abbreviation definitions
  in biomedical text"): "long form (SF)" where the short form's letters start words of the long form, in order; the
  short form then links wherever it appears in that document to the node the long form links to, listed or not.
- **Listed and supported by context**: `CLINICAL_ABBREVIATIONS` (expansions as in the Wikipedia "List of medical
  abbreviations" and the CASI clinical abbreviation sense inventory, Moon et al. 2014, J Am Med Inform Assoc 21:299)
  link when the same sentence (or the 120 characters around it) holds a clinical cue word or another disease,
  phenotype or drug mention; never as a US state after a place name ("Detroit, MI 48201", "Jackson, MS").
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

# Short form -> expansion (a surface form of the tree). Two-letter forms are the ones the dictionary scan drops.
CLINICAL_ABBREVIATIONS = {
    "MI": "myocardial infarction",
    "DM": "diabetes mellitus",
    "T2DM": "type 2 diabetes mellitus",
    "T1DM": "type 1 diabetes mellitus",
    "HF": "heart failure",
    "CHF": "congestive heart failure",
    "AF": "atrial fibrillation",
    "AFib": "atrial fibrillation",
    "RA": "rheumatoid arthritis",
    "OA": "osteoarthritis",
    "MS": "multiple sclerosis",
    "CF": "cystic fibrosis",
    "PE": "pulmonary embolism",
    "DVT": "deep vein thrombosis",
    "HTN": "hypertension",
    "CAD": "coronary artery disease",
    "CKD": "chronic kidney disease",
    "COPD": "chronic obstructive pulmonary disease",
    "UTI": "urinary tract infection",
    "TB": "tuberculosis",
    "UC": "ulcerative colitis",
    "GERD": "gastroesophageal reflux disease",
    "PD": "Parkinson disease",
    "AD": "Alzheimer disease",
    "SLE": "systemic lupus erythematosus",
    "CVA": "stroke",
}
# Words that make a sentence clinical (lower case, matched as words).
CLINICAL_CUES = frozenset(
    """
    patient patients pt pts history hx pmh diagnosed diagnosis dx presented presents admitted admission
    discharged treated treatment therapy symptoms complains complaint denies exam examination chronic acute
    acute-on-chronic prior status s/p onset clinic hospital ward icu ed er physician doctor medication medications
    mg dose daily bid tid prn insulin metformin aspirin warfarin anticoagulation troponin ecg ekg echo
    echocardiogram ejection fraction bp heart cardiac lung renal kidney joint joints diabetic glucose hba1c
    inhaler steroids methotrexate stent cath angiography infarct infarction nstemi stemi arrhythmia rhythm
    """.split()
)
# US state codes that collide with a listed short form: "<Place>, MI" is Michigan.
_STATE_CODES = frozenset({"MI", "MS", "PA", "AD", "DE", "MD", "ME", "CO", "CA", "AL"})
_PLACE_BEFORE = re.compile(r"[A-Z][a-z]+,\s*$")
_ZIP_AFTER = re.compile(r"^\s*\d{5}\b")
_DEFINITION = re.compile(r"\(([A-Za-z][A-Za-z0-9-]{1,9})\)")
_WORD = re.compile(r"[A-Za-z0-9/]+")
_SENTENCE_END = re.compile(r"[.!?;\n]")


def long_form(text: str, paren_start: int, short: str) -> tuple[int, int] | None:
    """Schwartz-Hearst: the shortest span before "(short)" in which every letter of the short form occurs in order,
    the first one at the start of a word ("Marfan syndrome (MFS)", "congestive heart failure (CHF)")."""
    if sum(c.isalpha() for c in short) < 2 or not any(c.isupper() for c in short):
        return None
    max_words = min(len(short) + 5, 2 * len(short))
    offset = max(0, paren_start - 150)
    words = list(_WORD.finditer(text, offset, paren_start))[-max_words:]
    if not words:
        return None
    begin, stop = words[0].start(), words[-1].end()
    candidate = text[begin:stop].lower()
    s_index, l_index = len(short) - 1, len(candidate) - 1
    while s_index >= 0:
        char = short[s_index].lower()
        if not char.isalnum():
            s_index -= 1
            continue
        while l_index >= 0 and (
            candidate[l_index] != char or (s_index == 0 and l_index > 0 and candidate[l_index - 1].isalnum())
        ):
            l_index -= 1
        if l_index < 0:
            return None
        l_index -= 1
        s_index -= 1
    return begin + l_index + 1, stop


def _occurrences(text: str, short: str) -> list[tuple[int, int]]:
    """Spans of `short` on word boundaries (str.find: much faster than a regex with look-arounds)."""
    spans = []
    start = text.find(short)
    while start >= 0:
        end = start + len(short)
        if not (start and text[start - 1].isalnum()) and not (end < len(text) and text[end].isalnum()):
            spans.append((start, end))
        start = text.find(short, end)
    return spans


class AbbreviationResolver:
    """Finds abbreviation mentions in one document; `lookup` maps a surface form to a node row (or None)."""

    def __init__(self, lookup: Callable[[str], int | None], abbreviations: dict[str, str] | None = None) -> None:
        self.lookup = lookup
        self.listed = {
            short: row
            for short, expansion in (abbreviations or CLINICAL_ABBREVIATIONS).items()
            if (row := lookup(expansion)) is not None
        }
        self._automaton = None
        names = sorted(self.listed, key=len, reverse=True)
        self.pattern = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(map(re.escape, names)) + r")(?![A-Za-z0-9])")

    def candidates(self, text: str) -> tuple[list[tuple[int, int]], list[int]]:
        """In `text` (many documents joined): spans of listed short forms on word boundaries, and offsets of
        parenthesized short forms. One pass each (Aho-Corasick over ASCII text)."""
        definitions = [match.start() for match in _DEFINITION.finditer(text)]
        if not text.isascii():
            return [match.span(1) for match in self.pattern.finditer(text)], definitions
        if self._automaton is None:
            import ahocorasick_rs

            self._automaton = ahocorasick_rs.BytesAhoCorasick([name.encode() for name in self.listed])
        listed = []
        for _, start, end in self._automaton.find_matches_as_indexes(text.encode("ascii"), overlapping=True):
            before = text[start - 1] if start else " "
            after = text[end] if end < len(text) else " "
            if not (before.isalnum() or after.isalnum()):
                listed.append((start, end))
        return listed, definitions

    def definitions(self, text: str) -> dict[str, int]:
        """Short forms the document defines ("myocardial infarction (MI)") -> the long form's node row."""
        out: dict[str, int] = {}
        for match in _DEFINITION.finditer(text):
            short = match.group(1)
            span = long_form(text, match.start(), short)
            if span is None:
                continue
            row = self.lookup(text[span[0] : span[1]])
            if row is not None:
                out.setdefault(short, row)
        return out

    def find(self, text: str, listed: list[tuple[int, int]], starts, ends) -> list[tuple[int, int, int, str]]:
        """(start, end, node row, how) for each abbreviation that links in one document; how: "defined" or
        "context". `listed` holds the spans of listed short forms; `starts`/`ends` (numpy, sorted by start) the
        document's other mentions, which an abbreviation may not overlap."""
        defined = self.definitions(text) if "(" in text else {}
        spans = list(listed)
        extra = sorted(set(defined) - set(self.listed), key=len, reverse=True)
        for short in extra:
            spans += _occurrences(text, short)
        found = []
        for start, end in spans:
            i = int(np.searchsorted(starts, end))
            if i and ends[:i].max() > start:  # inside or across another mention
                continue
            short = text[start:end]
            if short in defined:
                found.append((start, end, defined[short], "defined"))
            elif short in self.listed and self._clinical(text, start, end, starts, ends):
                found.append((start, end, self.listed[short], "context"))
        return found

    @staticmethod
    def _clinical(text: str, start: int, end: int, starts, ends) -> bool:
        """The sentence around the abbreviation (at most 160 characters each side) is clinical."""
        if text[start:end] in _STATE_CODES and (
            _PLACE_BEFORE.search(text[max(0, start - 40) : start]) or _ZIP_AFTER.match(text[end : end + 8])
        ):
            return False
        lo = max(0, start - 160)
        lo = max((m.end() for m in _SENTENCE_END.finditer(text, lo, start)), default=lo)
        stop = _SENTENCE_END.search(text, end, min(len(text), end + 160))
        hi = stop.start() if stop else min(len(text), end + 160)
        i = int(np.searchsorted(starts, lo))
        if i < len(starts) and ends[i] <= hi:  # another disease, phenotype or drug in the same sentence
            return True
        return bool({w.lower() for w in _WORD.findall(text[lo:hi])} & CLINICAL_CUES)
