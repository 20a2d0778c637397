"""Great Expectations suites per record type, run at ingestion and after curation.

Records become a pandas frame with derived columns (text length, answer-in-options, image file present, ...); one
suite per record group (text, qa, caption) plus the expectations every record shares. A record that fails any
expectation is quarantined with the failing expectations as its reason; the rest are kept. One ephemeral GX context
and its validation definitions are built once per process (importing GX takes seconds).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medfoundry.data.records import (
    QUARANTINE,
    RECORDS,
    REMOVED,
    Record,
    RecordKind,
    read_manifest,
    write_jsonl,
    write_manifest,
)

VALIDATION_FILE = "validation.json"
KINDS: tuple[str, ...] = RecordKind.__args__  # type: ignore[attr-defined]
GROUPS: dict[str, tuple[str, ...]] = {
    "text": ("text", "note", "dialogue"),
    "qa": ("qa",),
    "caption": ("caption", "report"),
}
STAGES = ("ingest", "curate")
MAX_TEXT_CHARS = 200_000
# Identifiers that must never survive curation (PHI scrubbing runs before this check).
_PHI_LEFTOVERS = [r"\b\d{3}-\d{2}-\d{4}\b", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"]

_WORD = re.compile(r"\w+")
_lock = threading.Lock()
_context: Any = None
_definitions: dict[str, Any] = {}


@dataclass
class ValidationOutcome:
    kept: list[Record]
    quarantined: list[dict]
    summary: dict[str, Any] = field(default_factory=dict)


def _expectations(group: str, stage: str) -> list[tuple[str, Any, str]]:
    """(name, expectation, reason shown for a failing record) for one suite."""
    import great_expectations.expectations as gxe

    common = [
        (
            "id_present",
            gxe.ExpectColumnValuesToBeBetween(column="id_chars", min_value=1, max_value=256),
            "id empty or longer than 256",
        ),
        ("id_unique", gxe.ExpectColumnValuesToBeInSet(column="id_first", value_set=[True]), "duplicate id"),
        (
            "source_format",
            gxe.ExpectColumnValuesToMatchRegex(column="source", regex=r"^[\w.+-]+:\S"),
            "source is not 'origin:reference'",
        ),
        ("kind_known", gxe.ExpectColumnValuesToBeInSet(column="kind", value_set=list(KINDS)), "unknown kind"),
        (
            "split_known",
            gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "holdout"]),
            "unknown split",
        ),
        (
            "has_content",
            gxe.ExpectColumnValuesToBeInSet(column="has_content", value_set=[True]),
            "no text and no question",
        ),
        (
            "text_size",
            gxe.ExpectColumnValuesToBeBetween(column="text_chars", min_value=0, max_value=MAX_TEXT_CHARS),
            f"text longer than {MAX_TEXT_CHARS} characters",
        ),
        (
            "image_file",
            gxe.ExpectColumnValuesToBeInSet(column="image_ok", value_set=[True]),
            "referenced image missing or not a PNG under images/",
        ),
    ]
    specific = {
        "text": [
            (
                "text_words",
                gxe.ExpectColumnValuesToBeBetween(column="text_words", min_value=1),
                "text has no words",
            ),
        ],
        "qa": [
            # Map expectations skip nulls, so presence is checked on derived lengths (0 when missing).
            (
                "question_present",
                gxe.ExpectColumnValuesToBeBetween(column="question_chars", min_value=3),
                "question missing or shorter than 3 characters",
            ),
            (
                "answer_present",
                gxe.ExpectColumnValuesToBeBetween(column="answer_chars", min_value=1),
                "answer missing",
            ),
            (
                "answer_in_options",
                gxe.ExpectColumnValuesToBeInSet(column="answer_in_options", value_set=[True]),
                "answer is not one of the option letters",
            ),
            (
                "options_count",
                gxe.ExpectColumnValuesToBeBetween(column="option_count", min_value=0, max_value=10),
                "more than 10 options",
            ),
        ],
        "caption": [
            (
                "caption_image",
                gxe.ExpectColumnValuesToBeInSet(column="has_image", value_set=[True]),
                "caption/report without an image",
            ),
            (
                "caption_words",
                gxe.ExpectColumnValuesToBeBetween(column="text_words", min_value=1),
                "caption/report has no words",
            ),
        ],
    }[group]
    curated = []
    if stage == "curate":
        curated = [
            (
                "sample_weight",
                gxe.ExpectColumnValuesToBeBetween(
                    column="sample_weight", min_value=0, max_value=1000, strict_min=True
                ),
                "sample weight missing or not positive",
            ),
            (
                "quality_range",
                gxe.ExpectColumnValuesToBeBetween(column="quality", min_value=0.0, max_value=1.0),
                "quality score outside [0, 1]",
            ),
            (
                "no_phi_left",
                gxe.ExpectColumnValuesToNotMatchRegexList(column="all_text", regex_list=_PHI_LEFTOVERS),
                "identifier (SSN or e-mail) left after PHI scrubbing",
            ),
        ]
    return common + specific + curated


def _definition(group: str, stage: str):
    """The ValidationDefinition for (group, stage), built once per process."""
    global _context
    key = f"{stage}-{group}"
    with _lock:
        if key in _definitions:
            return _definitions[key]
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        if _context is None:
            _context = gx.get_context(mode="ephemeral")
            _context.variables.progress_bars = ProgressBarsConfig(globally=False)
            _context.data_sources.add_pandas("medfoundry")
        source = _context.data_sources.get("medfoundry")
        asset = source.add_dataframe_asset(f"records-{key}")
        batch = asset.add_batch_definition_whole_dataframe("all")
        suite = gx.ExpectationSuite(name=f"medfoundry-{key}")
        reasons = {}
        for name, expectation, reason in _expectations(group, stage):
            expectation.meta = {"name": name}
            suite.add_expectation(expectation)
            reasons[name] = reason
        suite = _context.suites.add(suite)
        definition = _context.validation_definitions.add(
            gx.ValidationDefinition(data=batch, suite=suite, name=f"vd-{key}")
        )
        _definitions[key] = (definition, reasons)
        return _definitions[key]


def _frame(records: list[Record], dataset_dir: Path):
    import pandas as pd

    seen: set[str] = set()
    rows = []
    for i, r in enumerate(records):
        first = r.id not in seen
        seen.add(r.id)
        image_ok = True
        if r.image:
            path = dataset_dir / r.image
            image_ok = r.image.startswith("images/") and r.image.lower().endswith(".png") and path.is_file()
        options = r.options or {}
        all_text = "\n".join(filter(None, [r.text, r.question, r.answer, r.reasoning, *options.values()]))
        rows.append(
            {
                "_row": i,
                "id_chars": len(r.id.strip()),
                "id_first": first,
                "source": r.source,
                "kind": r.kind,
                "split": r.split,
                "text_chars": len(r.text),
                "text_words": len(_WORD.findall(r.text)),
                "has_content": bool(r.text.strip() or (r.question or "").strip()),
                "question_chars": len((r.question or "").strip()),
                "answer_chars": len((r.answer or "").strip()),
                "option_count": len(options),
                "answer_in_options": (r.answer in options) if options else True,
                "has_image": bool(r.image),
                "image_ok": image_ok,
                "sample_weight": float(r.meta.get("sample_weight", 0.0) or 0.0),
                "quality": float(r.meta.get("quality", 1.0)),
                "all_text": all_text,
            }
        )
    return pd.DataFrame(rows)


def validate_records(
    records: Iterable[Record], dataset_dir: Path, stage: str = "ingest"
) -> ValidationOutcome:
    """Run the suites over `records` (images resolved under `dataset_dir`); split into kept and quarantined."""
    if stage not in STAGES:
        raise ValueError(f"unknown validation stage {stage!r}: use one of {', '.join(STAGES)}")
    records = list(records)
    frame = _frame(records, Path(dataset_dir))
    failures: dict[int, list[str]] = {}
    suites: dict[str, Any] = {}
    for group, kinds in GROUPS.items():
        part = frame[frame["kind"].isin(kinds)] if len(frame) else frame
        if part.empty:
            continue
        definition, reasons = _definition(group, stage)
        result = definition.run(
            batch_parameters={"dataframe": part.reset_index(drop=True)},
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["_row"]},
        )
        failed = []
        for item in result.results:
            name = (item.expectation_config.meta or {}).get("name", item.expectation_config.type)
            if item.success:
                continue
            if item.exception_info and item.exception_info.get("raised_exception"):
                message = item.exception_info.get("exception_message", "")
                raise RuntimeError(f"GX expectation {name} could not run: {message}")
            rows = [entry["_row"] for entry in item.result.get("unexpected_index_list") or []]
            failed.append(
                {"expectation": name, "type": item.expectation_config.type, "unexpected": len(rows)}
            )
            for row in rows:
                failures.setdefault(int(row), []).append(f"{name}: {reasons[name]}")
        stats = result.statistics
        suites[group] = {
            "records": int(len(part)),
            "success": bool(result.success),
            "evaluated_expectations": int(stats["evaluated_expectations"]),
            "successful_expectations": int(stats["successful_expectations"]),
            "failed": failed,
        }
    kept: list[Record] = []
    quarantined: list[dict] = []
    for i, record in enumerate(records):
        if i in failures:
            quarantined.append(
                {
                    "record": record.model_dump(mode="json"),
                    "reason": "failed validation: " + "; ".join(failures[i]),
                    "expectations": [f.split(":", 1)[0] for f in failures[i]],
                    "source": record.source,
                    "line": i + 1,
                }
            )
        else:
            kept.append(record)
    summary = {
        "stage": stage,
        "success": all(s["success"] for s in suites.values()),
        "suites": suites,
        "evaluated_expectations": sum(s["evaluated_expectations"] for s in suites.values()),
        "successful_expectations": sum(s["successful_expectations"] for s in suites.values()),
    }
    return ValidationOutcome(kept, quarantined, summary)


def validate_dataset(dataset_dir: Path, out_dir: Path, stage: str = "ingest") -> dict:
    """Validate a dataset folder into `out_dir` (same layout): kept records and their images, quarantine with the
    failing expectations, validation.json with the GX summary, manifest.json with reconciling counts."""
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    records: list[Record] = []
    unreadable: list[dict] = []
    with (dataset_dir / RECORDS).open("rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                records.append(Record.model_validate_json(raw))
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "<record>"
                unreadable.append(
                    {
                        "raw": raw.decode("utf-8", "replace")[:2000],
                        "reason": f"unreadable record: {where}: {first['msg']}",
                        "source": f"{dataset_dir.name}/{RECORDS}",
                        "line": line_no,
                    }
                )
    outcome = validate_records(records, dataset_dir, stage)
    quarantined = unreadable + outcome.quarantined
    if out_dir.resolve() != dataset_dir.resolve():
        out_dir.mkdir(parents=True, exist_ok=True)
        for record in outcome.kept:
            if record.image:
                target = out_dir / record.image
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(dataset_dir / record.image, target)
    else:
        _drop_unreferenced_images(out_dir, outcome.kept)
    write_jsonl(out_dir / RECORDS, outcome.kept)
    write_jsonl(out_dir / QUARANTINE, quarantined)
    write_jsonl(out_dir / REMOVED, [])
    (out_dir / VALIDATION_FILE).write_text(json.dumps(outcome.summary, indent=2, sort_keys=True))
    counts = {
        "input": len(records) + len(unreadable),
        "kept": len(outcome.kept),
        "removed": 0,
        "quarantined": len(quarantined),
    }
    assert counts["input"] == counts["kept"] + counts["removed"] + counts["quarantined"]
    upstream = read_manifest(dataset_dir)
    write_manifest(
        out_dir,
        stage=f"validate-{stage}",
        counts=counts,
        validation={k: v for k, v in outcome.summary.items() if k != "suites"},
        upstream={"content_hash": upstream.get("content_hash"), "counts": upstream.get("counts")},
    )
    reasons: dict[str, int] = {}
    for row in quarantined:
        for name in row.get("expectations", ["unreadable"]):
            reasons[name] = reasons.get(name, 0) + 1
    return {
        **counts,
        "gx_success": outcome.summary["success"],
        "gx_evaluated_expectations": outcome.summary["evaluated_expectations"],
        "gx_successful_expectations": outcome.summary["successful_expectations"],
        **{f"quarantined/{k}": v for k, v in sorted(reasons.items())},
    }


def _drop_unreferenced_images(dataset_dir: Path, kept: list[Record]) -> None:
    referenced = {r.image for r in kept if r.image}
    images = dataset_dir / "images"
    if images.is_dir():
        for path in images.rglob("*"):
            if path.is_file() and path.relative_to(dataset_dir).as_posix() not in referenced:
                path.unlink()
