"""The record schema every stage reads and writes, and the dataset folder layout.

A dataset is a folder:
    records.jsonl      kept records, one `Record` per line
    images/            normalized images referenced by `Record.image` (relative paths)
    quarantine.jsonl   records that could not be read or failed validation: {"record"|"raw", "reason", "source", "line"}
    removed.jsonl      records removed on purpose (duplicates, contamination, low quality): {"id", "reason", ...}
    manifest.json      counts (input = kept + removed + quarantined), content hash, provenance
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RecordKind = Literal["text", "qa", "caption", "note", "dialogue", "report"]

RECORDS = "records.jsonl"
QUARANTINE = "quarantine.jsonl"
REMOVED = "removed.jsonl"
MANIFEST = "manifest.json"
IMAGES = "images"


class EntityMention(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    name: str
    kind: str
    start: int
    end: int
    rare: bool = False
    negated: bool = False


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    source: (
        str  # provenance, e.g. "pydicom:CT_small.dcm", "hpo:HP:0001250", "icd10cm:E11.9", "user:notes.jsonl"
    )
    kind: RecordKind
    text: str = ""  # corpus text, caption, report or note body
    question: str | None = None
    options: dict[str, str] | None = None  # {"A": "...", ...} for multiple choice
    answer: str | None = None  # gold answer: option letter, yes/no/maybe, or free text
    reasoning: str | None = None  # structured rationale for SFT targets
    image: str | None = None  # path relative to the dataset folder
    modality: str | None = None  # CT, MR, CR, US, NM, fundus, ...
    body_part: str | None = None
    split: Literal["train", "holdout"] = "train"
    entities: list[EntityMention] = Field(default_factory=list)
    license: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


def validation_reason(err) -> str:
    """'field.path: message' of a pydantic ValidationError's first problem (how quarantine reasons read)."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "<record>"
    return f"{where}: {first['msg']}"


def write_jsonl(path: Path, rows: Iterable[BaseModel | dict]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            data = row.model_dump(mode="json", exclude_defaults=False) if isinstance(row, BaseModel) else row
            fh.write(json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def read_records(dataset_dir: Path) -> Iterator[Record]:
    path = Path(dataset_dir) / RECORDS
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield Record.model_validate_json(line)


def read_jsonl(path: Path) -> Iterator[dict]:
    if not Path(path).exists():
        return
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def content_hash(folder: Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted order (manifest.json excluded)."""
    digest = hashlib.sha256()
    folder = Path(folder)
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest.update(path.relative_to(folder).as_posix().encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def write_manifest(dataset_dir: Path, **fields: Any) -> dict:
    dataset_dir = Path(dataset_dir)
    manifest = {"content_hash": content_hash(dataset_dir), **fields}
    (dataset_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def read_manifest(dataset_dir: Path) -> dict:
    path = Path(dataset_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def assign_split(record_id: str, holdout_fraction: float, seed: int = 0) -> str:
    """Deterministic train/holdout assignment by hash, so every stage and re-run agrees on the split."""
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2**64
    return "holdout" if bucket < holdout_fraction else "train"
