"""Surface-form normalization shared by the tree (synonym keys) and the linker (text).

`fold(text)` maps every character to exactly one character (so offsets in the folded text are offsets in the original):
lower case, and every non-alphanumeric character (punctuation, hyphens, whitespace) becomes a space. `normalize_form`
is the key of a synonym: `fold` plus whitespace collapsed.
"""

from __future__ import annotations

import numpy as np

# Characters kept as-is by fold(): the NUL separator the batch linker puts between documents.
DOCUMENT_SEPARATOR = "\x00"

_ASCII_TABLE = bytes(c if chr(c).isalnum() or c == 0 else 32 for c in range(256)).lower()
# Code points below 0x3000 that fold to a space (punctuation, symbols, separators, controls); CJK and above are kept.
_LUT_SIZE = 0x3000
_SEPARATOR_LUT = np.array([not chr(c).isalnum() and c != 0 for c in range(_LUT_SIZE)] + [False], dtype=bool)


def fold(text: str) -> str:
    """Lower-case `text` and turn every non-alphanumeric character into a space, keeping its length."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_TABLE).decode("ascii")
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters lower to two (U+0130): keep one-to-one offsets
        lowered = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    chars = np.frombuffer(lowered.encode("utf-32-le"), dtype=np.uint32).copy()
    chars[_SEPARATOR_LUT[np.minimum(chars, _LUT_SIZE)]] = 32
    return chars.tobytes().decode("utf-32-le")


def code_points(text: str) -> np.ndarray:
    """The text as an array of code points (uint8 for ASCII text, uint32 otherwise)."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def normalize_form(text: str) -> str:
    """The key of a surface form: folded, whitespace collapsed and stripped."""
    return " ".join(fold(text).split())


def is_acronym(text: str) -> bool:
    """Spelled as an abbreviation in its source: >= 2 upper-case letters and no lower-case letter (ALL, CF, DIL,
    ALG8-CDG). A name of several words written in capitals with a word of 5 letters or more is a title in upper case
    (OMIM's "BENIGN CHRONIC PEMPHIGUS"), not an abbreviation."""
    if text != text.upper():  # has a lower-case letter (cheap test first: most forms are words)
        return False
    if sum(1 for c in text if c.isupper()) < 2:
        return False
    words = fold(text).split()
    return len(words) == 1 or not any(len(word) >= 5 and word.isalpha() for word in words)
