"""Robust reading of user corpora into records; anything unreadable becomes a quarantine row with a reason.

Accepted inputs (local paths or s3:// URIs, files or folders, searched recursively):
- dataset folders (a `records.jsonl` beside `images/`): their records, images copied along;
- JSONL: full `Record` rows, or loose rows `{"id", "text"}` (also `caption`/`report`/`note` with optional `image`);
- CSV with a header naming a text column (text, section_text, note, report, caption, content, body) or
  question/answer columns; an `id`/`ID` column is used when present;
- images (DICOM, NIfTI, PNG, JPEG) with a sidecar caption `<stem>.txt`; other `.txt` files are text records.

Yields `Record`s and quarantine dicts `{"raw" | "record", "reason", "source", "line"}`: truncated JSON lines,
non-UTF-8 bytes, empty or oversized records, wrong field types, unreadable images, files of unknown type.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import ValidationError

from medfoundry.data.images import ImageDecodeError, is_image_file, load_image, save_normalized
from medfoundry.data.records import IMAGES, RECORDS, Record, validation_reason

TEXT_COLUMNS = ("text", "section_text", "note", "report", "caption", "content", "body", "abstract")
_KIND_FOR_FIELD = {"caption": "caption", "report": "report", "note": "note", "section_text": "note"}
_RAW_CHARS = 2000  # quarantine rows keep at most this much of a bad line


@dataclass
class ReadOptions:
    max_record_chars: int = 100_000
    image_max_size: int = 512
    mask_burned_in_text: bool = False


def quarantine_row(
    reason: str, source: str, line: int | None = None, raw: Any = None, record: Any = None
) -> dict:
    row: dict[str, Any] = {"reason": reason, "source": source, "line": line}
    if record is not None:
        row["record"] = record
    else:
        row["raw"] = raw[:_RAW_CHARS] if isinstance(raw, str) else raw
    return row


def read_corpora(uris: Iterable[str | Path], out_dir: Path, profile: Any = None) -> Iterator[Record | dict]:
    """Read every corpus (path or s3:// URI) into records whose images are normalized under `out_dir`."""
    options = ReadOptions()
    if profile is not None:
        options = ReadOptions(
            profile.curation.max_record_chars, profile.curation.image_max_size, profile.data.mask_burned_in_text
        )
    out_dir = Path(out_dir)
    seen_ids: dict[str, str] = {}
    for uri in uris:
        try:
            local = materialize(str(uri), out_dir.parent / f".{out_dir.name}-downloads", profile)
        except Exception as err:  # noqa: BLE001 - a missing corpus is reported, the others are still read
            yield quarantine_row(f"cannot open input: {err}", str(uri))
            continue
        for item in read_path(local, out_dir, options):
            if isinstance(item, Record):
                first = seen_ids.get(item.id)
                if first is not None:
                    yield quarantine_row(
                        f"duplicate record id {item.id!r} (first read from {first})",
                        item.source,
                        item.meta.get("line"),
                        record=item.model_dump(mode="json"),
                    )
                    continue
                seen_ids[item.id] = item.source
            yield item


def materialize(uri: str, download_dir: Path, profile: Any = None) -> Path:
    """A local path for `uri`: local paths as they are, s3:// objects or prefixes downloaded into `download_dir`."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3":
        path = Path(parsed.path if parsed.scheme == "file" else uri)
        if not path.exists():
            raise FileNotFoundError(f"{uri}: no such file or folder")
        return path
    from medfoundry.storage import StorageError, open_storage

    storage = profile.storage if profile is not None else None
    bucket = open_storage(
        f"s3://{parsed.netloc}",
        endpoint_url=getattr(storage, "endpoint_url", None),
        region=getattr(storage, "region", None),
    )
    key = parsed.path.lstrip("/")
    target = Path(download_dir) / hashlib.sha256(uri.encode()).hexdigest()[:12]
    try:
        return bucket.get_dir(key, target)
    except StorageError:
        if not bucket.exists(key):
            raise FileNotFoundError(f"{uri}: no such object or prefix") from None
        return bucket.get_file(key, target / Path(key).name)


def read_path(path: Path, out_dir: Path, options: ReadOptions | None = None) -> Iterator[Record | dict]:
    options = options or ReadOptions()
    path = Path(path)
    if path.is_dir():
        yield from _read_folder(path, path, out_dir, options)
    else:
        yield from _read_file(path, path.parent, out_dir, options, captions={})


def _read_folder(folder: Path, root: Path, out_dir: Path, options: ReadOptions) -> Iterator[Record | dict]:
    if (folder / RECORDS).is_file():
        yield from _read_dataset(folder, out_dir, options)
        return
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    image_stems = {p.stem.removesuffix(".nii") for p in files if is_image_file(p.name)}
    captions = {p.stem: p for p in files if p.suffix.lower() == ".txt" and p.stem in image_stems}
    for path in files:
        if path in captions.values():
            continue
        yield from _read_file(path, root, out_dir, options, captions)
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        yield from _read_folder(sub, root, out_dir, options)


def _source(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.name
    return f"user:{rel if rel != '.' else path.name}"


def _read_file(
    path: Path, root: Path, out_dir: Path, options: ReadOptions, captions: dict[str, Path]
) -> Iterator[Record | dict]:
    source = _source(path, root)
    name = path.name.lower()
    if name.endswith(".jsonl") or name.endswith(".ndjson"):
        yield from _read_jsonl(path, source, options)
    elif name.endswith(".csv"):
        yield from _read_csv(path, source, options)
    elif name.endswith(".json"):
        yield from _read_json(path, source, options)
    elif is_image_file(name):
        yield from _read_image(path, source, out_dir, options, captions)
    elif name.endswith(".txt"):
        text, problem = _decode(path.read_bytes())
        if problem:
            yield quarantine_row(problem, source, raw=text)
            return
        yield from _checked(
            Record(id=_stem_id(path, root), source=source, kind="text", text=text.strip()),
            source,
            None,
            options,
        )
    else:
        yield quarantine_row(f"unsupported file type {path.suffix or '(none)'!r}", source, raw=str(path))


def _stem_id(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root).with_suffix("").as_posix()
    except ValueError:
        rel = path.stem
    return f"user-{rel}".replace("/", "-")


def _decode(data: bytes) -> tuple[str, str | None]:
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as err:
        return data.decode("utf-8", errors="replace"), f"not UTF-8: invalid byte at offset {err.start}"


def _checked(record: Record, source: str, line: int | None, options: ReadOptions) -> Iterator[Record | dict]:
    """Quarantine empty and oversized records; pass the rest through."""
    body = record.text + (record.question or "") + (record.answer or "")
    size = len(body) + len(record.reasoning or "") + sum(len(v) for v in (record.options or {}).values())
    if not body.strip() and not record.image:
        yield quarantine_row(
            "empty record: no text, question or image", source, line, record=record.model_dump(mode="json")
        )
    elif size > options.max_record_chars:
        yield quarantine_row(
            f"oversized record: {size} characters > limit {options.max_record_chars}",
            source,
            line,
            raw=body[:_RAW_CHARS],
        )
    else:
        yield record


def _read_jsonl(path: Path, source: str, options: ReadOptions) -> Iterator[Record | dict]:
    stem = path.stem
    # Lines are read as bytes so one bad line never hides the rest; a line far beyond the record limit is not parsed.
    byte_limit = options.max_record_chars * 4 + 65536
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            if len(raw) > byte_limit:
                yield quarantine_row(
                    f"oversized line: {len(raw)} bytes > limit {byte_limit}",
                    source,
                    line_no,
                    raw=raw[:200].decode("utf-8", "replace"),
                )
                continue
            text, problem = _decode(raw)
            if problem:
                yield quarantine_row(problem, source, line_no, raw=text)
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                yield quarantine_row(
                    f"invalid JSON (truncated line?): {err.msg} at column {err.colno}",
                    source,
                    line_no,
                    raw=text,
                )
                continue
            yield from _row_to_record(row, stem, source, line_no, options)


def _read_json(path: Path, source: str, options: ReadOptions) -> Iterator[Record | dict]:
    """A JSON list of rows (or {"records": [...]}); each row as in JSONL, numbered from 1."""
    text, problem = _decode(path.read_bytes())
    if problem:
        yield quarantine_row(problem, source, raw=text)
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        yield quarantine_row(f"invalid JSON: {err.msg} at line {err.lineno}", source, err.lineno, raw=text)
        return
    rows = data.get("records") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        yield quarantine_row('JSON file is not a list of records (or {"records": [...]})', source, raw=text)
        return
    for index, row in enumerate(rows, 1):
        yield from _row_to_record(row, path.stem, source, index, options)


def _row_to_record(
    row: Any, stem: str, source: str, line: int, options: ReadOptions
) -> Iterator[Record | dict]:
    if not isinstance(row, dict):
        yield quarantine_row(
            f"wrong type: expected a JSON object, got {type(row).__name__}",
            source,
            line,
            raw=json.dumps(row)[:_RAW_CHARS],
        )
        return
    if "kind" in row and "source" in row:  # a full Record row
        try:
            record = Record.model_validate(row)
        except ValidationError as err:
            yield quarantine_row(f"invalid record: {validation_reason(err)}", source, line, record=row)
            return
        if record.image:
            yield quarantine_row(
                "record references an image but the input is not a dataset folder (records.jsonl + images/)",
                source,
                line,
                record=row,
            )
            return
        record.meta.setdefault("line", line)
        yield from _checked(record, source, line, options)
        return
    field = next((f for f in TEXT_COLUMNS if f in row), None)
    if field is None and not ("question" in row and "answer" in row):
        yield quarantine_row(
            f"no text field (expected one of {', '.join(TEXT_COLUMNS)} or question/answer)",
            source,
            line,
            record=row,
        )
        return
    problems = [
        f"field {key!r}: expected a string, got {type(row[key]).__name__}"
        for key in ([field] if field else []) + ["question", "answer"]
        if key in row and row[key] is not None and not isinstance(row[key], str)
    ]
    raw_id = row.get("id", row.get("ID"))
    if raw_id is not None and not isinstance(raw_id, str | int):
        problems.append(f"field 'id': expected a string or integer, got {type(raw_id).__name__}")
    if problems:
        yield quarantine_row("wrong type: " + "; ".join(problems), source, line, record=row)
        return
    record_id = f"{stem}-{raw_id}" if raw_id is not None else f"{stem}-L{line}"
    meta = {k: v for k, v in row.items() if k not in {field, "id", "ID", "question", "answer", "options"}}
    try:
        record = Record(
            id=record_id,
            source=source,
            kind="qa" if field is None else _KIND_FOR_FIELD.get(field, "text"),
            text=(row.get(field) or "").strip() if field else "",
            question=row.get("question"),
            answer=row.get("answer"),
            options=row.get("options") if isinstance(row.get("options"), dict) else None,
            meta={**_jsonable(meta), "line": line},
        )
    except ValidationError as err:
        first = err.errors()[0]
        yield quarantine_row(
            f"invalid record: {'.'.join(map(str, first['loc']))}: {first['msg']}", source, line, record=row
        )
        return
    yield from _checked(record, source, line, options)


def _jsonable(meta: dict) -> dict:
    try:
        json.dumps(meta)
        return meta
    except (TypeError, ValueError):
        return {k: str(v) for k, v in meta.items()}


def _read_csv(path: Path, source: str, options: ReadOptions) -> Iterator[Record | dict]:
    data = path.read_bytes()
    # surrogateescape keeps bad bytes visible per row, so only the rows holding them are quarantined.
    text = data.decode("utf-8-sig", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        yield quarantine_row(
            "CSV file has no header row", source, 1, raw=text[:_RAW_CHARS].encode("utf-8", "replace").decode()
        )
        return
    stem = path.stem
    for row in reader:
        line = reader.line_num
        cells = [v for v in row.values() if isinstance(v, str)] + [k for k in row if isinstance(k, str)]
        if any("\udc80" <= ch <= "\udcff" for cell in cells for ch in cell):
            raw = json.dumps(row, default=str).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            yield quarantine_row("not UTF-8: invalid bytes in this row", source, line, raw=raw)
            continue
        flat = json.dumps(row, ensure_ascii=False, default=str)
        if None in row:  # more cells than header columns
            yield quarantine_row(
                f"CSV row has {len(row[None])} more cells than the header", source, line, raw=flat
            )
            continue
        # Empty cells are absent values, except in the text column, where emptiness is the record's problem.
        clean = {k: v for k, v in row.items() if v or k in TEXT_COLUMNS}
        yield from _row_to_record(clean, stem, source, line, options)


def _read_image(
    path: Path, source: str, out_dir: Path, options: ReadOptions, captions: dict[str, Path]
) -> Iterator[Record | dict]:
    stem = path.name[: -len(".nii.gz")] if path.name.lower().endswith(".nii.gz") else path.stem
    caption_path = captions.get(stem)
    caption = ""
    if caption_path is not None:
        caption, problem = _decode(caption_path.read_bytes())
        if problem:
            yield quarantine_row(f"caption {caption_path.name}: {problem}", source, raw=caption)
            return
    try:
        image = load_image(path, mask_burned_in_text=options.mask_burned_in_text)
    except ImageDecodeError as err:
        yield quarantine_row(f"unreadable image: {err}", source, raw=str(path))
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    rel = save_normalized(image, out_dir, f"user_{stem}_{digest}", max_size=options.image_max_size)
    kind = "report" if len(caption.split()) > 60 else "caption"
    record = Record(
        id=f"user-image-{stem}-{digest}",
        source=source,
        kind=kind,
        text=caption.strip(),
        image=rel,
        modality=image.modality,
        body_part=(image.body_part or "").replace("_", " ").lower() or None,
        meta={
            "image_format": image.source_format,
            "frames": image.frames,
            "original_size": list(image.original_size),
        },
    )
    if not record.text:
        yield quarantine_row(
            f"image without a caption: add {stem}.txt beside it",
            source,
            record=record.model_dump(mode="json"),
        )
        (Path(out_dir) / rel).unlink(missing_ok=True)
        return
    yield from _checked(record, source, None, options)


def _read_dataset(folder: Path, out_dir: Path, options: ReadOptions) -> Iterator[Record | dict]:
    """Records of an existing dataset folder; referenced images are copied into `out_dir/images`."""
    source = f"dataset:{folder.name}"
    path = folder / RECORDS
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            text, problem = _decode(raw)
            if problem:
                yield quarantine_row(problem, source, line_no, raw=text)
                continue
            try:
                record = Record.model_validate_json(text)
            except ValidationError as err:
                yield quarantine_row(f"invalid record: {validation_reason(err)}", source, line_no, raw=text)
                continue
            if record.image:
                image_path = folder / record.image
                if not image_path.is_file():
                    yield quarantine_row(
                        f"image file missing: {record.image}",
                        source,
                        line_no,
                        record=record.model_dump(mode="json"),
                    )
                    continue
                target = Path(out_dir) / record.image
                if Path(record.image).parts[0] != IMAGES:
                    target = Path(out_dir) / IMAGES / Path(record.image).name
                    record.image = f"{IMAGES}/{Path(record.image).name}"
                if target.resolve() != image_path.resolve():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(image_path, target)
            yield from _checked(record, record.source, line_no, options)
