"""Text normalization shared by deduplication, decontamination and evaluation."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_WORD = re.compile(r"\w+", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC, case-folded, punctuation dropped, whitespace collapsed: the form two copies of one text share."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_WORD.findall(text))


def word_tokens(text: str) -> list[str]:
    """Case-folded word tokens (letters, digits, underscore) of NFKC-normalized text."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def text_hash(text: str) -> str:
    """Stable hash of the normalized text (exact-duplicate key)."""
    return hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=16).hexdigest()


def collapse_whitespace(text: str) -> str:
    return _SPACE.sub(" ", text).strip()
