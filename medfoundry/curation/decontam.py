"""Decontamination: drop training records that share word n-grams with evaluation items.

Evaluation sets are read generically, so any benchmark file in its upstream format works: JSON (a list, or an object
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

from medfoundry.curation.cleaning import Removal, record_text
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


def build_eval_index(eval_sets: Iterable[Path], n: int = 13, min_tokens: int = 8) -> NgramIndex:
    index = NgramIndex(n=n, min_tokens=min_tokens)
    for eval_path in eval_sets:
        for item_id, text in iter_eval_items(Path(eval_path)):
            index.add(item_id, text)
    return index


def decontaminate(records: Iterable[Record], index: NgramIndex) -> tuple[list[Record], list[Removal]]:
    """Remove records sharing any indexed n-gram; the removal names the evaluation item and the shared n-gram."""
    kept: list[Record] = []
    removed: list[Removal] = []
    for record in records:
        hit = index.match(record_text(record))
        if hit is None:
            kept.append(record)
        else:
            removed.append(Removal(record, "eval_contamination", hit.as_dict()))
    return kept, removed
