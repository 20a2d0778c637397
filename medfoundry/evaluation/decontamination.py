"""Benchmark decontamination: which items share word n-grams with the evaluated model's training corpus.

Benchmark items go into the shared `medfoundry.text.ngrams.NgramIndex` (the same index curation uses to drop
contaminated training text); the corpus is streamed through `match`, so memory grows with the benchmarks, not with
the corpus. An item counts as contaminated when any of its n-grams (or the whole item, when shorter than n) occurs
in a training document.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from medfoundry.evaluation.benchmarks import EvalItem

log = logging.getLogger(__name__)

CORPUS_SUFFIXES = (".jsonl", ".txt", ".json")


def item_text(item: EvalItem) -> str:
    """Everything a training document could have copied: question, context, options and the gold answer."""
    answer = "" if item.options else item.answer  # a multiple-choice answer is a letter; its text is an option
    parts = [item.question, item.context or "", *(item.options or {}).values(), answer]
    return "\n".join(p for p in parts if p)


def _record_text(row: dict[str, Any]) -> str:
    parts = [row.get("text"), row.get("question"), *((row.get("options") or {}).values()), row.get("answer"),
             row.get("reasoning")]
    return "\n".join(p for p in parts if isinstance(p, str) and p)


def corpus_texts(path: Path, split: str | None = "train") -> Iterator[str]:
    """Texts of a training corpus: a records dataset folder (only `split` records), a JSONL file of records or of
    {"text": ...} rows, a plain text file (one document per paragraph), or a folder of such files."""
    path = Path(path)
    if path.is_dir():
        records = path / "records.jsonl"
        if records.is_file():
            yield from corpus_texts(records, split)
            return
        for child in sorted(p for p in path.rglob("*") if p.suffix in CORPUS_SUFFIXES and p.is_file()):
            yield from corpus_texts(child, split)
        return
    if path.suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("decontamination corpus %s:%d: not JSON, skipped", path, line_no)
                    continue
                if isinstance(row, dict):
                    if split is not None and row.get("split", split) != split:
                        continue
                    text = _record_text(row)
                else:
                    text = row if isinstance(row, str) else ""
                if text:
                    yield text
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    yield from (para for para in text.split("\n\n") if para.strip())


def _normalized_words(text: str) -> list[str]:
    from medfoundry.text.normalize import word_tokens

    return word_tokens(text)


def find_contaminated(
    items: Iterable[tuple[str, str]], documents: Iterable[str], n: int = 13, min_tokens: int = 8
) -> dict[str, str]:
    """item key -> one shared n-gram, for every item whose n-grams occur in any document."""
    from medfoundry.text.ngrams import NgramIndex

    index = NgramIndex.build(items, n=n, min_tokens=min_tokens)
    found: dict[str, str] = {}
    if not len(index):
        return found
    for doc in documents:
        _collect(index, doc, found)
    return found


# NgramIndex.match reports at most this many items per document; a document matching that many is split and
# matched again so no item is missed.
_MATCH_CAP = 20


def _collect(index, text: str, found: dict[str, str]) -> None:
    match = index.match(text)
    if match is None:
        return
    for key in match.item_ids:
        found.setdefault(key, match.ngram)
    if len(match.item_ids) < _MATCH_CAP:
        return
    words = _normalized_words(text)
    if len(words) <= 2 * index.n:
        return
    middle = len(words) // 2
    _collect(index, " ".join(words[: middle + index.n - 1]), found)
    _collect(index, " ".join(words[middle:]), found)


class CorpusContamination:
    """Callable for `ItemAnnotator`: marks items of every benchmark against one corpus in one pass."""

    def __init__(self, corpus: Path, n: int = 13, split: str | None = "train"):
        self.corpus = Path(corpus)
        self.n = n
        self.split = split

    def __call__(self, items: list[EvalItem]) -> dict[tuple[str, str], str]:
        keyed = {f"{it.benchmark}\x1f{it.id}": it for it in items}
        hits = find_contaminated(((k, item_text(it)) for k, it in keyed.items()), corpus_texts(self.corpus, self.split), self.n)
        return {(keyed[k].benchmark, keyed[k].id): gram for k, gram in hits.items()}

    def __repr__(self) -> str:
        return f"CorpusContamination({self.corpus}, n={self.n})"
