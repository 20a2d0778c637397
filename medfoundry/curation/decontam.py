"""Decontamination: drop training records that overlap what we evaluate on.

Three checks, each removal naming the evaluation item and its benchmark:
- word n-grams (`NgramIndex`): a training text sharing a 13-gram with an item, or holding a short item (>= 8 words,
  e.g. a VQA-RAD question with its answer) whole;
- near duplicates by MinHash (the dedup stage's `NearDuplicateFilter`, datasketch LSH): a training text whose 5-word
  shingles have an estimated Jaccard similarity >= `minhash_threshold` with an item (reworded or reformatted copies);
- perceptual image hashes (`imagehash.phash`): a training image within `image_distance` bits of an evaluation image
  (resized, re-encoded or re-normalized copies).

The benchmarks come from the profile's evaluation (`eval.benchmarks` under `eval.data_dir`), read through the
evaluation package's adapters (`medfoundry.evaluation.benchmarks.get_benchmark(name).load(path)`), so curation
checks exactly the items the evaluate stage scores. Other evaluation files are read generically, so any benchmark file in its upstream format works: JSON (a list, or an object
keyed by item id), JSONL, CSV (with or without header), MedQuAD-style XML, and dataset folders (their holdout
records). Every string field of an item is evaluation text: question, options, contexts and answers.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from medfoundry.curation.cleaning import NearDuplicateFilter, Removal, record_text
from medfoundry.data.records import RECORDS, Record, read_records
from medfoundry.text.ngrams import NgramIndex

_EVAL_SUFFIXES = {".json", ".jsonl", ".csv", ".xml", ".txt"}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def iter_eval_items(path: Path) -> Iterator[tuple[str, str]]:
    """(item id, item text) for every evaluation item under `path` (a file or a folder of files)."""
    path = Path(path)
    if path.is_dir():
        if (path / RECORDS).exists():
            for record in read_records(path):
                if record.split == "holdout":
                    yield f"{path.name}:{record.id}", record_text(record)
            return
        for child in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _EVAL_SUFFIXES):
            yield from iter_eval_items(child)
        return
    name = path.name
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line_no, line in enumerate(fh, 1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                yield f"{name}:{line_no}", "\n".join(_strings(row))
    elif suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        rows = (
            data.items() if isinstance(data, dict) else enumerate(data if isinstance(data, list) else [data])
        )
        for key, row in rows:
            yield f"{name}:{key}", "\n".join(_strings(row))
    elif suffix == ".csv":
        with path.open(encoding="utf-8", errors="replace", newline="") as fh:
            for line_no, row in enumerate(csv.reader(fh), 1):
                yield f"{name}:{line_no}", "\n".join(cell for cell in row if cell.strip())
    elif suffix == ".xml":
        try:
            root = ElementTree.parse(path).getroot()
        except ElementTree.ParseError:
            return
        pairs = root.findall(".//QAPair")
        for i, pair in enumerate(pairs or [root]):
            yield f"{name}:{i}", "\n".join(t.strip() for t in pair.itertext() if t.strip())
    elif suffix == ".txt":
        yield name, path.read_text(encoding="utf-8", errors="replace")


class EvalIndex:
    """Everything training data is checked against: n-grams, MinHash signatures and image hashes of eval items."""

    def __init__(
        self, n: int = 13, min_tokens: int = 8, minhash_threshold: float = 0.7, image_distance: int = 4
    ) -> None:
        self.ngrams = NgramIndex(n=n, min_tokens=min_tokens)
        self.near = NearDuplicateFilter(threshold=minhash_threshold)
        self.min_tokens = min_tokens
        self.image_distance = image_distance
        self.image_hashes: list[tuple[str, Any]] = []  # (item id, imagehash.ImageHash)
        self._hashed: set[str] = set()
        self.benchmarks: dict[str, int] = {}  # benchmark -> items indexed
        self.skipped: dict[str, str] = {}  # benchmark -> why it was not indexed

    @property
    def item_ids(self) -> list[str]:
        return list(dict.fromkeys(self.ngrams.item_ids))

    def __len__(self) -> int:
        return len(self.ngrams)

    def add(self, item_id: str, text: str, image: Path | None = None) -> None:
        self.ngrams.add(item_id, text)
        if len(text.split()) >= self.min_tokens:
            sig = self.near.signature(text)
            if sig is not None:
                self.near.insert(item_id, sig)
        if image is not None and str(image) not in self._hashed:
            self._hashed.add(str(image))  # VQA-RAD asks several questions about each image
            digest = _image_hash(Path(image))
            if digest is not None:
                self.image_hashes.append((item_id, digest))

    def add_benchmarks(self, names: Iterable[str], data_dir: str | Path | None) -> None:
        """Index every item of the named benchmarks (through the evaluation adapters); a benchmark whose data is
        missing is recorded in `skipped` with the reason, never silently dropped."""
        for name in names:
            try:
                items = _benchmark_items(name, data_dir)
            except (FileNotFoundError, KeyError, ValueError) as err:
                self.skipped[name] = str(err)
                continue
            for item in items:
                item_id = f"{name}:{item.id}"
                self.add(item_id, _item_text(item), item.image)
                if len(item.question.split()) < self.ngrams.n:
                    # a short question (VQA-RAD) is caught on its own too, whatever separates it from its answer
                    self.ngrams.add(item_id, item.question)
            self.benchmarks[name] = len(items)

    def match(self, record: Record, image_root: Path | None) -> tuple[str, dict] | None:
        """(reason, detail) when `record` overlaps an evaluation item, else None."""
        text = record_text(record)
        hit = self.ngrams.match(text)
        if hit is not None:
            return "eval_contamination", {**hit.as_dict(), "benchmark": _benchmark(hit.item_id), "method": "ngram"}
        if len(text.split()) >= self.min_tokens and self.near.lsh.keys:
            sig = self.near.signature(text)
            near = self.near.nearest(sig) if sig is not None else None
            if near is not None:
                item_id, jaccard = near
                detail = {"item_id": item_id, "jaccard": round(jaccard, 3), "method": "minhash"}
                return "eval_contamination", {**detail, "benchmark": _benchmark(item_id)}
        if record.image and self.image_hashes and image_root is not None:
            digest = _image_hash(Path(image_root) / record.image)
            if digest is not None:
                item_id, distance = min(((i, digest - h) for i, h in self.image_hashes), key=lambda x: x[1])
                if distance <= self.image_distance:
                    detail = {"item_id": item_id, "hamming": int(distance), "method": "phash"}
                    return "eval_image_contamination", {**detail, "benchmark": _benchmark(item_id)}
        return None


def _benchmark(item_id: str) -> str:
    return item_id.split(":", 1)[0]


def _benchmark_items(name: str, data_dir: str | Path | None) -> list:
    from medfoundry.evaluation.benchmarks import get_benchmark

    if data_dir is None:
        raise FileNotFoundError("eval.data_dir is not set")
    items, _ = get_benchmark(name).load(Path(data_dir))
    return items


def _item_text(item) -> str:
    """Question, options, answer and context of an evaluation item: every string a training text could copy."""
    parts = [item.question, *(item.options or {}).values(), item.answer, item.context or ""]
    return "\n".join(part for part in parts if part)


def _image_hash(path: Path):
    import imagehash
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return imagehash.phash(image.convert("L"))
    except (OSError, UnidentifiedImageError):
        return None


def build_eval_index(
    eval_sets: Iterable[Path],
    n: int = 13,
    min_tokens: int = 8,
    benchmarks: Iterable[str] = (),
    data_dir: str | Path | None = None,
    minhash_threshold: float = 0.7,
    image_distance: int = 4,
) -> EvalIndex:
    index = EvalIndex(n=n, min_tokens=min_tokens, minhash_threshold=minhash_threshold, image_distance=image_distance)
    for eval_path in eval_sets:
        for item_id, text in iter_eval_items(Path(eval_path)):
            index.add(item_id, text)
    index.add_benchmarks(benchmarks, data_dir)
    return index


def profile_eval_index(profile, eval_sets: Iterable[Path] = ()) -> EvalIndex:
    """The index the curate stage checks training data against: `eval_sets` plus every public benchmark the
    profile's evaluate stage scores (`eval.benchmarks` under `eval.data_dir`). The dataset's own held-out split, the
    evaluate stage's "heldout" benchmark, is added by the curate stage once the split is known."""
    cfg = profile.curation
    return build_eval_index(
        eval_sets,
        n=cfg.decontamination_ngram,
        benchmarks=profile.eval.benchmarks if cfg.decontaminate_benchmarks else (),
        data_dir=profile.eval.data_dir,
        minhash_threshold=cfg.decontamination_minhash_threshold,
        image_distance=cfg.decontamination_image_distance,
    )


def decontaminate(
    records: Iterable[Record], index: EvalIndex, image_root: Path | None = None
) -> tuple[list[Record], list[Removal]]:
    """Remove records that overlap an evaluation item; the removal names the item, its benchmark and the check."""
    kept: list[Record] = []
    removed: list[Removal] = []
    for record in records:
        hit = index.match(record, image_root)
        if hit is None:
            kept.append(record)
        else:
            removed.append(Removal(record, *hit))
    return kept, removed
