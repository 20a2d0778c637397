"""Cleaning: exact and near-duplicate removal (MinHash LSH) and heuristic quality scoring."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from medfoundry.data.records import Record
from medfoundry.text.normalize import text_hash, word_tokens

# --------------------------------------------------------------------------------------------------- text of a record


def record_text(record: Record) -> str:
    """All the text a record carries (body, question, options, answer, rationale), for dedup, quality and overlap."""
    parts = [record.text, record.question or ""]
    if record.options:
        parts.extend(f"{key}. {value}" for key, value in sorted(record.options.items()))
    parts.extend([record.answer or "", record.reasoning or ""])
    return "\n".join(p for p in parts if p)


# --------------------------------------------------------------------------------------------------- exact dedup


@dataclass
class Removal:
    record: Record
    reason: str
    detail: dict = field(default_factory=dict)

    def as_row(self) -> dict:
        return {"id": self.record.id, "source": self.record.source, "reason": self.reason, **self.detail}


def exact_key(record: Record, image_digest: str | None = None) -> str:
    """Normalized-text hash, plus the image's content digest: one caption on two different images is not a copy."""
    key = text_hash(record_text(record))
    return f"{key}:{image_digest}" if image_digest else key


def exact_dedup(
    records: Iterable[Record], image_digests: dict[str, str] | None = None
) -> tuple[list[Record], list[Removal]]:
    """Keep the first record of each exact-duplicate group (normalized text, same image)."""
    seen: dict[str, str] = {}
    kept: list[Record] = []
    removed: list[Removal] = []
    digests = image_digests or {}
    for record in records:
        key = exact_key(record, digests.get(record.id))
        first = seen.get(key)
        if first is None:
            seen[key] = record.id
            kept.append(record)
        else:
            removed.append(Removal(record, "exact_duplicate", {"duplicate_of": first}))
    return kept, removed


# --------------------------------------------------------------------------------------------------- near dedup

_MULT = np.uint64(0x100000001B3)


class NearDuplicateFilter:
    """Streaming near-duplicate detection: word-shingle MinHash signatures in a datasketch MinHashLSH index.

    A document whose estimated Jaccard similarity to an earlier kept one is at least `threshold` is a near duplicate.
    Shingles get a 64-bit polynomial rolling hash over stable token hashes; the `num_perm` hash functions are
    multiply-shift hashes ((a * x + b) >> 32, a odd), so a signature costs a handful of numpy operations and no
    Python loop over shingles. datasketch's MinHashLSH does the banding and candidate lookup.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5, seed: int = 1):
        from datasketch import MinHashLSH

        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle = shingle
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        rng = np.random.default_rng(seed)
        self._a = (rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) << np.uint64(1)) | np.uint64(1)
        self._b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
        self._signatures: dict[str, np.ndarray] = {}
        self._token_hash: dict[str, int] = {}

    def signature(self, text: str, tokens: list[str] | None = None) -> np.ndarray | None:
        """The MinHash signature of `text` (None when it has no words); `tokens`: its `word_tokens`, if known."""
        tokens = word_tokens(text) if tokens is None else tokens
        if not tokens:
            return None
        cache = self._token_hash
        for token in set(tokens).difference(cache):
            # Stable across processes (unlike hash()), so a re-run removes exactly the same records.
            cache[token] = int.from_bytes(
                hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little"
            )
        values = np.fromiter(map(cache.__getitem__, tokens), dtype=np.uint64, count=len(tokens))
        if len(cache) > 2_000_000:
            cache.clear()
        width = min(self.shingle, len(values))
        windows = len(values) - width + 1
        acc = np.zeros(windows, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(width):
                acc = acc * _MULT + values[j : j + windows]
            permuted = (np.multiply.outer(self._a, acc) + self._b[:, None]) >> np.uint64(32)
        return permuted.min(axis=1)

    def check(self, key: str, text: str) -> tuple[str, float] | None:
        """Return (id of the earlier near duplicate, estimated Jaccard) or None after indexing `text` under `key`."""
        sig = self.signature(text)
        if sig is None:
            return None
        best = self.nearest(sig)
        if best is None:
            self.insert(key, sig)
        return best

    def nearest(self, sig: np.ndarray) -> tuple[str, float] | None:
        """The indexed document most similar to signature `sig` at or above the threshold (id, Jaccard), or None."""
        best: tuple[str, float] | None = None
        for other in self.lsh.query(self._minhash(sig)):
            similarity = float(np.mean(self._signatures[other] == sig))
            if similarity >= self.threshold and (best is None or similarity > best[1]):
                best = (other, similarity)
        return best

    def insert(self, key: str, sig: np.ndarray) -> None:
        self.lsh.insert(key, self._minhash(sig), check_duplication=False)
        self._signatures[key] = sig

    @staticmethod
    def _minhash(sig: np.ndarray):
        from datasketch import LeanMinHash

        return LeanMinHash(seed=1, hashvalues=sig, scheme="legacy")


def near_dedup(
    records: Iterable[Record], threshold: float = 0.8, min_words: int = 8, num_perm: int = 128
) -> tuple[list[Record], list[Removal]]:
    """Remove near duplicates of earlier records. Image records and very short texts are left to exact dedup:
    templated captions of different images, or two short ontology definitions, are not copies of each other."""
    nd = NearDuplicateFilter(threshold=threshold, num_perm=num_perm)
    kept: list[Record] = []
    removed: list[Removal] = []
    for record in records:
        text = record_text(record)
        if record.image or len(text.split()) < min_words:
            kept.append(record)
            continue
        hit = nd.check(record.id, text)
        if hit is None:
            kept.append(record)
        else:
            removed.append(
                Removal(record, "near_duplicate", {"duplicate_of": hit[0], "jaccard": round(hit[1], 3)})
            )
    return kept, removed


# --------------------------------------------------------------------------------------------------- quality

_STOPWORDS = frozenset(
    "the be to of and a in that have i it for not on with he as you do at this but his by from they we say her she "
    "or an will my one all would there their what so up out if about who get which go me when make can like time no "
    "is was are were has had patient history".split()
)
_LINE = re.compile(r"[^\n]+")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffd]")  # control characters but tab/newline/CR, U+FFFD
_SYMBOL = re.compile(r"[#{}\[\]<>|\\^~`@$%*_=]")


@dataclass
class Quality:
    score: float
    signals: dict[str, float]
    problems: list[str]


def quality(text: str, kind: str = "text", words: list[str] | None = None) -> Quality:
    """Heuristic quality in [0, 1] (product of per-signal scores) and the signals that lowered it.

    Signals, after Gopher/C4-style filters: length, share of letters, symbol and control characters, word length,
    repeated lines and n-grams, and stopword presence (a rough "is this prose" check) for longer texts.
    """
    signals: dict[str, float] = {}
    problems: list[str] = []
    words = word_tokens(text) if words is None else words  # the caller's tokens when it has them
    n_words = len(words)
    n_chars = len(text)

    def penalise(name: str, value: float, score: float) -> None:
        signals[name] = round(value, 4)
        if score < 1.0:
            problems.append(name)
        factors.append(max(0.0, min(1.0, score)))

    factors: list[float] = []
    if n_chars == 0 or n_words == 0:
        return Quality(0.0, {"words": 0}, ["empty"])
    short_ok = kind in ("qa", "caption", "report") or n_words >= 3
    penalise("words", n_words, 1.0 if short_ok else n_words / 3)
    # map/regex counts, not per-character generators: quality runs on every record (1M in the scale benchmark)
    letters = sum(map(str.isalpha, text)) / n_chars
    penalise("letter_ratio", letters, 1.0 if letters >= 0.5 else letters / 0.5)
    control = len(_CONTROL.findall(text)) / n_chars
    penalise("control_ratio", control, 1.0 - 20 * control)
    symbols = len(_SYMBOL.findall(text)) / max(n_words, 1)
    penalise("symbol_ratio", symbols, 1.0 if symbols <= 0.1 else 1.0 - (symbols - 0.1) * 2)
    mean_len = sum(map(len, words)) / n_words
    penalise("mean_word_length", mean_len, 1.0 if 2.0 <= mean_len <= 12.0 else 0.3)
    lines = [ln.strip() for ln in _LINE.findall(text) if ln.strip()]
    if len(lines) >= 3:
        dup_lines = 1.0 - len(set(lines)) / len(lines)
        penalise("duplicate_lines", dup_lines, 1.0 if dup_lines <= 0.3 else 1.0 - (dup_lines - 0.3) * 2)
    if n_words >= 20:
        grams = Counter(zip(words, words[1:], words[2:], strict=False))
        top = grams.most_common(1)[0][1] * 3 / n_words
        penalise("top_trigram_share", top, 1.0 if top <= 0.2 else 1.0 - (top - 0.2) * 2)
        unique = len(set(words)) / n_words
        penalise("unique_word_ratio", unique, 1.0 if unique >= 0.2 else unique / 0.2)
        stop = sum(map(_STOPWORDS.__contains__, words)) / n_words
        penalise("stopword_ratio", stop, 1.0 if stop >= 0.02 else 0.5 + stop * 25)
    score = math.prod(factors) if factors else 0.0
    return Quality(round(score, 4), signals, problems)
