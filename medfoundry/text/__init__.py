"""Shared text utilities: normalization and the n-gram index used for decontamination (curation and evaluation)."""

from medfoundry.text.ngrams import NgramIndex, NgramMatch
from medfoundry.text.normalize import normalize_text, text_hash, word_tokens

__all__ = ["NgramIndex", "NgramMatch", "normalize_text", "text_hash", "word_tokens"]
