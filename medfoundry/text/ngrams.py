"""Word n-gram index over evaluation items, to find training text that overlaps them (decontamination).

An item with at least `n` words contributes all its word n-grams; a shorter item (at least `min_tokens` words)
contributes itself whole, so a short question copied into a training document is still caught. N-grams are stored as
stable 64-bit hashes (the same in every process), so an index can be saved and reloaded.

    index = NgramIndex.build([("medqa:1", question_text), ...], n=13)
    hit = index.match(document)   # None, or which item it shares n-grams with and how many
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medfoundry.text.normalize import word_tokens

_MULTIPLIER = np.uint64(0x100000001B3)  # FNV-1a prime: a good odd multiplier for polynomial hashing mod 2**64


@dataclass(frozen=True)
class NgramMatch:
    item_id: str  # the first evaluation item the text shares an n-gram with
    ngram: str  # that shared n-gram, as words
    shared: int  # how many of the text's n-grams are in the index
    total: int  # how many n-grams the text has
    item_ids: tuple[str, ...]  # every matched item (at most 20)

    @property
    def overlap(self) -> float:
        return self.shared / self.total if self.total else 0.0

    def as_dict(self) -> dict:
        return {
            "item_id": self.item_id,
            "ngram": self.ngram,
            "shared": self.shared,
            "total": self.total,
            "overlap": round(self.overlap, 4),
            "item_ids": list(self.item_ids),
        }


class NgramIndex:
    def __init__(self, n: int = 13, min_tokens: int = 8):
        if n < 1 or min_tokens < 1:
            raise ValueError("n and min_tokens must be positive")
        self.n = n
        self.min_tokens = min(min_tokens, n)
        self.item_ids: list[str] = []
        # n-gram hash -> index of the first item holding it, per gram length (n, plus lengths of short items).
        self._grams: dict[int, dict[int, int]] = {}
        self._token_cache: dict[str, int] = {}

    @classmethod
    def build(cls, items: Iterable[tuple[str, str]], n: int = 13, min_tokens: int = 8) -> NgramIndex:
        index = cls(n=n, min_tokens=min_tokens)
        for item_id, text in items:
            index.add(item_id, text)
        return index

    def __len__(self) -> int:
        return sum(len(table) for table in self._grams.values())

    @property
    def lengths(self) -> list[int]:
        return sorted(self._grams)

    def add(self, item_id: str, text: str) -> int:
        """Index one evaluation item; returns how many new n-grams it added (0 for a too-short item)."""
        tokens = word_tokens(text)
        if len(tokens) < self.min_tokens:
            return 0
        length = min(self.n, len(tokens))
        table = self._grams.setdefault(length, {})
        item = len(self.item_ids)
        self.item_ids.append(item_id)
        before = len(table)
        for gram in self._hashes(tokens, length).tolist():
            table.setdefault(gram, item)
        return len(table) - before

    def match(self, text: str) -> NgramMatch | None:
        """Which indexed items `text` shares word n-grams with; None when it shares none."""
        if not self._grams:
            return None
        tokens = word_tokens(text)
        shared = 0
        total = 0
        first: tuple[int, int, int] | None = None  # (item, token position, length)
        items: dict[int, None] = {}
        for length, table in self._grams.items():
            if len(tokens) < length:
                continue
            grams = self._hashes(tokens, length).tolist()
            if length == self.n:
                total = len(grams)
            for pos, gram in enumerate(grams):
                item = table.get(gram)
                if item is None:
                    continue
                shared += 1
                items.setdefault(item, None)
                if first is None:
                    first = (item, pos, length)
        if first is None:
            return None
        item, pos, length = first
        return NgramMatch(
            item_id=self.item_ids[item],
            ngram=" ".join(tokens[pos : pos + length]),
            shared=shared,
            total=max(total, shared),
            item_ids=tuple(self.item_ids[i] for i in list(items)[:20]),
        )

    def contains(self, text: str) -> bool:
        return self.match(text) is not None

    def save(self, path: Path) -> Path:
        """Write the index as .npz (hashes per length) plus its item ids; `load` reads it back."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for length, table in self._grams.items():
            arrays[f"hash_{length}"] = np.fromiter(table.keys(), dtype=np.uint64, count=len(table))
            arrays[f"item_{length}"] = np.fromiter(table.values(), dtype=np.int64, count=len(table))
        meta = json.dumps({"n": self.n, "min_tokens": self.min_tokens, "item_ids": self.item_ids})
        with path.open("wb") as fh:
            np.savez_compressed(fh, meta=np.frombuffer(meta.encode(), dtype=np.uint8), **arrays)
        return path

    @classmethod
    def load(cls, path: Path) -> NgramIndex:
        with np.load(Path(path)) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            index = cls(n=meta["n"], min_tokens=meta["min_tokens"])
            index.item_ids = list(meta["item_ids"])
            for key in data.files:
                if key.startswith("hash_"):
                    length = int(key[5:])
                    index._grams[length] = dict(
                        zip(data[key].tolist(), data[f"item_{length}"].tolist(), strict=True)
                    )
        return index

    def _hashes(self, tokens: list[str], length: int) -> np.ndarray:
        """Polynomial rolling hashes (mod 2**64) of every `length`-token window."""
        cache = self._token_cache
        values = np.empty(len(tokens), dtype=np.uint64)
        for i, token in enumerate(tokens):
            value = cache.get(token)
            if value is None:
                value = int.from_bytes(
                    hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little"
                )
                if len(cache) < 2_000_000:
                    cache[token] = value
            values[i] = value
        windows = len(tokens) - length + 1
        acc = np.zeros(windows, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(length):
                acc = acc * _MULTIPLIER + values[j : j + windows]
        return acc
