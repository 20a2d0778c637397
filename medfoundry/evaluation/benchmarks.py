"""Benchmark adapters over the upstream file formats, registered by name.

Adding a benchmark is one small class: subclass `Benchmark`, set `name`, `folder`, `patterns` and `main_metric`,
implement `read(path)` yielding `EvalItem` or `Skipped` (a malformed row with its file and line), and decorate it
with `@register`. Items are yielded in file order so `--limit N` always takes the same N items.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal
from xml.etree import ElementTree

Task = Literal["multiple_choice", "yes_no", "short_answer", "long_answer", "report"]
LETTERS = "ABCDEFGHIJ"


@dataclass
class EvalItem:
    id: str
    benchmark: str
    task: Task
    question: str
    answer: str
    options: dict[str, str] | None = None
    context: str | None = None
    image: Path | None = None
    # Labels the yes/no extractor accepts (PubMedQA adds "maybe").
    labels: tuple[str, ...] = ("yes", "no")
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # "file:line" of the row the item came from


@dataclass
class Skipped:
    file: str
    line: int | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason}


class BenchmarkDataMissing(FileNotFoundError):
    """No file in the benchmark's upstream format was found under the given data path."""


class BenchmarkDataError(ValueError):
    """The data cannot be read without a choice the user must make (which split, which label convention)."""


SPLITS = ("train", "dev", "test")
_SPLIT_ALIASES = {"validation": "dev", "valid": "dev", "val": "dev"}
_SPLIT_IN_NAME = re.compile(r"(?:^|[_\-.])(train|dev|validation|valid|val|test)(?:set)?(?=[_\-.]|$)", re.I)


def split_of(path: Path) -> str | None:
    """The split a file's name says it holds (pqal_dev.json -> dev, trainset.json -> train), or None."""
    found = _SPLIT_IN_NAME.search(Path(path).name)
    if not found:
        return None
    token = found.group(1).lower()
    return _SPLIT_ALIASES.get(token, token)


class Benchmark:
    name: ClassVar[str]
    folder: ClassVar[str]  # the benchmark's subfolder in a data root such as ../shared/data
    patterns: ClassVar[tuple[str, ...]]  # glob patterns of its files inside that folder
    main_metric: ClassVar[str] = "accuracy"
    # Used as the main score when the main metric cannot be computed (report entity metrics without a linker).
    fallback_metric: ClassVar[str | None] = None
    description: ClassVar[str] = ""
    # Part of `--benchmark all` (the upstream benchmarks); the recipe's held-out split is not.
    public: ClassVar[bool] = True

    def __init__(self, split: str | None = None, **options: Any):
        if split is not None and split not in SPLITS:
            raise BenchmarkDataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        self.split = split
        self.options = options

    def files(self, data: Path) -> list[Path]:
        """Accept the benchmark's own file, its folder, or a root folder holding `<folder>/`.

        In a folder, files are chosen by split (the split named in the file name): with `split` set only that split's
        files; without it, a folder holding files of more than one split is an error, so train and test items are
        never merged."""
        data = Path(data)
        if data.is_file():
            return [data]
        if not data.is_dir():
            raise BenchmarkDataMissing(f"{self.name}: {data} does not exist")
        base = data / self.folder if (data / self.folder).is_dir() else data
        found = sorted({p for pattern in self.patterns for p in base.glob(pattern) if p.is_file()})
        if not found:
            raise BenchmarkDataMissing(
                f"{self.name}: no {' or '.join(self.patterns)} under {base} (expected the upstream format)"
            )
        splits = {p: split_of(p) for p in found}
        if self.split is not None:
            chosen = [p for p in found if splits[p] == self.split]
            if not chosen:
                seen = ", ".join(f"{p.name} ({splits[p] or 'no split in name'})" for p in found[:10])
                raise BenchmarkDataMissing(f"{self.name}: no {self.split} file under {base}; found {seen}")
            return chosen
        named = sorted({sp for sp in splits.values() if sp})
        if len(named) > 1:
            raise BenchmarkDataError(
                f"{self.name}: {base} holds several splits ({', '.join(named)}): choose one with --split "
                f"({'|'.join(named)}) or give the file"
            )
        return found

    def load(self, data: Path, limit: int | None = None) -> tuple[list[EvalItem], list[Skipped]]:
        items: list[EvalItem] = []
        skipped: list[Skipped] = []
        for path in self.files(data):
            for row in self.read(path):
                if isinstance(row, Skipped):
                    skipped.append(row)
                    continue
                items.append(row)
                if limit is not None and len(items) >= limit:
                    return items, skipped
        return items, skipped

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        raise NotImplementedError


BENCHMARKS: dict[str, type[Benchmark]] = {}


def register(cls: type[Benchmark]) -> type[Benchmark]:
    BENCHMARKS[cls.name] = cls
    return cls


def public_benchmarks() -> list[str]:
    return sorted(name for name, cls in BENCHMARKS.items() if cls.public)


def get_benchmark(name: str, split: str | None = None, **options: Any) -> Benchmark:
    try:
        return BENCHMARKS[name](split, **options)
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}: use one of {', '.join(sorted(BENCHMARKS))}") from None


# --- readers that keep line numbers -----------------------------------------------------------------------------

_decoder = json.JSONDecoder()
_WS = re.compile(r"\s*")


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _skip_ws(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()


def iter_json_container(path: Path) -> Iterator[tuple[Any, Any, int] | Skipped]:
    """Yield (key or index, value, line) for each entry of a top-level JSON object or list.

    Entries are decoded one by one so a broken entry is reported at its own line; decoding stops there because the
    rest of the file can no longer be delimited reliably.
    """
    text = path.read_text(encoding="utf-8")
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] not in "[{":
        yield Skipped(str(path), _line_of(text, pos), "expected a JSON object or list at the top level")
        return
    is_object = text[pos] == "{"
    closer = "}" if is_object else "]"
    pos = _skip_ws(text, pos + 1)
    index = 0
    while pos < len(text) and text[pos] != closer:
        line = _line_of(text, pos)
        try:
            if is_object:
                key, pos = _decoder.raw_decode(text, pos)
                pos = _skip_ws(text, pos)
                if text[pos] != ":":
                    raise json.JSONDecodeError("expected ':'", text, pos)
                pos = _skip_ws(text, pos + 1)
            else:
                key = index
            value, pos = _decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, IndexError) as err:
            yield Skipped(str(path), line, f"invalid JSON: {getattr(err, 'msg', err)}")
            return
        yield key, value, line
        index += 1
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)


def iter_jsonl(path: Path) -> Iterator[tuple[dict, int] | Skipped]:
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield Skipped(str(path), line_no, f"invalid JSON: {err.msg}")
                continue
            if not isinstance(row, dict):
                yield Skipped(str(path), line_no, f"expected a JSON object, got {type(row).__name__}")
                continue
            yield row, line_no


def iter_dataset_records(path: Path) -> Iterator[tuple[Any, int] | Skipped]:
    """`Record`s of a medfoundry records.jsonl with their line numbers; invalid rows become `Skipped`."""
    from pydantic import ValidationError

    from medfoundry.data.records import Record, validation_reason

    for entry in iter_jsonl(path):
        if isinstance(entry, Skipped):
            yield entry
            continue
        row, line = entry
        try:
            yield Record.model_validate(row), line
        except ValidationError as err:
            yield Skipped(str(path), line, f"invalid record: {validation_reason(err)}")


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


# --- adapters ---------------------------------------------------------------------------------------------------


@register
class PubMedQA(Benchmark):
    name = "pubmedqa"
    folder = "pubmedqa"
    patterns = ("*.json",)
    description = "PubMedQA (PQA-L): yes/no/maybe with the abstract's contexts; JSON object keyed by PMID"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        for entry in iter_json_container(path):
            if isinstance(entry, Skipped):
                yield entry
                continue
            pmid, row, line = entry
            where = f"{path}:{line}"
            if not isinstance(row, dict):
                yield Skipped(str(path), line, f"PMID {pmid}: expected an object")
                continue
            question = _text(row.get("QUESTION"))
            decision = _text(row.get("final_decision"))
            contexts = row.get("CONTEXTS")
            if question is None:
                yield Skipped(str(path), line, f"PMID {pmid}: missing QUESTION")
            elif decision is None or decision.lower() not in ("yes", "no", "maybe"):
                yield Skipped(str(path), line, f"PMID {pmid}: final_decision must be yes/no/maybe, got {decision!r}")
            elif not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
                yield Skipped(str(path), line, f"PMID {pmid}: CONTEXTS must be a list of strings")
            else:
                yield EvalItem(
                    id=str(pmid),
                    benchmark=self.name,
                    task="yes_no",
                    question=question,
                    answer=decision.lower(),
                    context="\n".join(contexts),
                    labels=("yes", "no", "maybe"),
                    meta={"meshes": row.get("MESHES") or []},
                    source=where,
                )


def _multiple_choice(
    bench: str, path: Path, line: int, item_id: str, question: Any, options: Any, answer: Any, meta: dict
) -> EvalItem | Skipped:
    question = _text(question)
    if question is None:
        return Skipped(str(path), line, f"{item_id}: missing question")
    if not isinstance(options, dict) or len(options) < 2:
        return Skipped(str(path), line, f"{item_id}: options must be an object with at least two entries")
    clean = {str(k).strip().upper(): _text(v) for k, v in options.items()}
    if any(v is None for v in clean.values()) or any(k not in LETTERS for k in clean):
        return Skipped(str(path), line, f"{item_id}: options must map letters to non-empty text")
    answer = answer.strip().upper() if isinstance(answer, str) else None
    if answer not in clean:
        return Skipped(str(path), line, f"{item_id}: gold answer {answer!r} is not one of {', '.join(clean)}")
    return EvalItem(
        id=item_id,
        benchmark=bench,
        task="multiple_choice",
        question=question,
        answer=answer,
        options=dict(sorted(clean.items())),  # type: ignore[arg-type]
        meta=meta,
        source=f"{path}:{line}",
    )


@register
class MedQA(Benchmark):
    name = "medqa"
    folder = "medqa"
    patterns = ("*.jsonl",)
    description = "MedQA-USMLE, 4 options; JSONL with question, options {A..D}, answer_idx"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        for entry in iter_jsonl(path):
            if isinstance(entry, Skipped):
                yield entry
                continue
            row, line = entry
            yield _multiple_choice(
                self.name, path, line, f"{path.stem}-{line}", row.get("question"), row.get("options"),
                row.get("answer_idx"), {"meta_info": row.get("meta_info")},
            )


@register
class MedMCQA(Benchmark):
    """MedMCQA's `cop` is 1-based in the original release (1-4) and 0-based in the widely used Hugging Face export
    (0-3). The convention is read from the file: a 0 means 0-based, a 4 means 1-based; a file with only 1-3 cannot
    be told apart and is refused unless `cop_base` (0 or 1) is given."""

    name = "medmcqa"
    folder = "medmcqa"
    patterns = ("*.jsonl", "*.json")
    description = "MedMCQA; JSONL with question, opa..opd and cop (1-4 original, 0-3 HF export; detected per file)"

    def cop_base(self, path: Path) -> int:
        given = self.options.get("cop_base")
        if given is not None:
            if given not in (0, 1):
                raise BenchmarkDataError(f"cop_base must be 0 or 1, got {given!r}")
            return int(given)
        seen = {
            row.get("cop")
            for entry in iter_jsonl(path)
            if not isinstance(entry, Skipped)
            for row in [entry[0]]
            if isinstance(row.get("cop"), int) and not isinstance(row.get("cop"), bool)
        }
        if 0 in seen and 4 in seen:
            raise BenchmarkDataError(f"{path}: cop holds both 0 and 4: neither 0-based nor 1-based")
        if 0 in seen:
            return 0
        if 4 in seen:
            return 1
        raise BenchmarkDataError(
            f"{path}: cannot tell whether cop is 0-based (HF export) or 1-based (original): only values "
            f"{sorted(seen)} occur; pass --cop-base 0 or 1"
        )

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        base = self.cop_base(path)
        for entry in iter_jsonl(path):
            if isinstance(entry, Skipped):
                yield entry
                continue
            row, line = entry
            cop = row.get("cop")
            if isinstance(cop, bool) or not isinstance(cop, int) or not base <= cop <= base + 3:
                yield Skipped(str(path), line, f"cop must be an integer {base}-{base + 3} ({base}-based file), got {cop!r}")
                continue
            options = {letter: row.get(f"op{letter.lower()}") for letter in "ABCD"}
            yield _multiple_choice(
                self.name, path, line, str(row.get("id") or f"{path.stem}-{line}"), row.get("question"), options,
                "ABCD"[cop - base], {"subject": row.get("subject_name"), "topic": row.get("topic_name"), "cop_base": base},
            )


@register
class MMLUMedical(Benchmark):
    name = "mmlu_medical"
    folder = "mmlu_medical"
    patterns = ("*.csv",)
    description = "MMLU medical subsets; CSV without header: question, A, B, C, D, answer letter"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        subject = path.stem.removesuffix("_test").removesuffix("_dev").removesuffix("_val")
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as err:
                    yield Skipped(str(path), reader.line_num, f"invalid CSV: {err}")
                    continue
                line = reader.line_num
                if not row or not any(cell.strip() for cell in row):
                    continue
                if len(row) != 6:
                    yield Skipped(str(path), line, f"expected 6 columns (question, A-D, answer), got {len(row)}")
                    continue
                yield _multiple_choice(
                    self.name, path, line, f"{subject}-{line}", row[0], dict(zip("ABCD", row[1:5], strict=True)),
                    row[5], {"subject": subject},
                )


@register
class VQARAD(Benchmark):
    name = "vqa_rad"
    folder = "vqa_rad"
    patterns = ("*.json",)
    description = "VQA-RAD radiology VQA; JSON list with image_name, question, answer, answer_type; images/"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        images = path.parent / "images"
        for entry in iter_json_container(path):
            if isinstance(entry, Skipped):
                yield entry
                continue
            _, row, line = entry
            if not isinstance(row, dict):
                yield Skipped(str(path), line, "expected an object")
                continue
            qid = row.get("qid", f"{path.stem}-{line}")
            question, answer = _text(row.get("question")), _text(str(row.get("answer", "")))
            answer_type = str(row.get("answer_type", "")).strip().upper()
            image = images / str(row.get("image_name", ""))
            if question is None or answer is None:
                yield Skipped(str(path), line, f"qid {qid}: missing question or answer")
            elif answer_type not in ("OPEN", "CLOSED"):
                yield Skipped(str(path), line, f"qid {qid}: answer_type must be OPEN or CLOSED, got {answer_type!r}")
            elif not row.get("image_name") or not image.is_file():
                yield Skipped(str(path), line, f"qid {qid}: image {row.get('image_name')!r} not found in {images}")
            else:
                # Closed as the field counts it (LLaVA-Med, MedEvalKit): yes/no answers. An upstream CLOSED item with
                # another answer ("left", "CT") is scored as open; its upstream label is kept.
                closed_yes_no = answer_type == "CLOSED" and answer.lower() in ("yes", "no")
                yield EvalItem(
                    id=str(qid),
                    benchmark=self.name,
                    task="yes_no" if closed_yes_no else "short_answer",
                    question=question,
                    answer=answer.lower() if closed_yes_no else answer,
                    image=image,
                    meta={
                        "answer_type": "closed" if closed_yes_no else "open",
                        "upstream_answer_type": answer_type.lower(),
                        "organ": row.get("image_organ"),
                        "question_type": row.get("question_type"),
                    },
                    source=f"{path}:{line}",
                )


def _xml_line(raw: str, needle: str) -> int | None:
    offset = raw.find(needle)
    return _line_of(raw, offset) if offset >= 0 else None


@register
class MedQuAD(Benchmark):
    name = "medquad"
    folder = "medquad"
    patterns = ("**/*.xml",)
    main_metric = "rouge_l"
    description = "MedQuAD consumer health QA; one XML document per focus with QAPairs (answers scored by ROUGE-L)"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        raw = path.read_text(encoding="utf-8", errors="replace")
        try:
            root = ElementTree.fromstring(raw)
        except ElementTree.ParseError as err:
            yield Skipped(str(path), err.position[0], f"invalid XML: {err}")
            return
        focus = (root.findtext("Focus") or "").strip()
        for pair in root.iter("QAPair"):
            question_el = pair.find("Question")
            qid = question_el.get("qid") if question_el is not None else None
            line = _xml_line(raw, f'qid="{qid}"') if qid else _xml_line(raw, f'pid="{pair.get("pid")}"')
            question = _text(question_el.text if question_el is not None else None)
            answer = _text(pair.findtext("Answer"))
            if question is None or answer is None:
                yield Skipped(str(path), line, f"QAPair {qid or pair.get('pid')}: missing question or answer text")
                continue
            yield EvalItem(
                id=qid or f"{root.get('id', path.stem)}-{pair.get('pid')}",
                benchmark=self.name,
                task="long_answer",
                question=question,
                answer=" ".join(answer.split()),
                meta={"focus": focus, "qtype": question_el.get("qtype"), "source": root.get("source")},
                source=f"{path}:{line}",
            )


@register
class HeldOut(Benchmark):
    """The recipe's own held-out QA split of a curated dataset (records.jsonl), minus the half reserved for RL
    (`medfoundry.training.qa.is_rl_holdout`)."""

    name = "heldout"
    public = False
    folder = "."
    patterns = ("records.jsonl",)
    description = "held-out QA records of a medfoundry dataset (split == holdout, not reserved for RL)"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        from medfoundry.training.qa import YES_NO, YES_NO_MAYBE, is_qa, is_rl_holdout, task_of

        for entry in iter_dataset_records(path):
            if isinstance(entry, Skipped):
                yield entry
                continue
            record, line = entry
            if record.split != "holdout" or not is_qa(record) or is_rl_holdout(record):
                continue
            task = task_of(record)
            labels = tuple(record.meta.get("labels") or (YES_NO_MAYBE if "pubmedqa" in record.source.lower() else YES_NO))
            image = path.parent / record.image if record.image else None
            if image is not None and not image.is_file():
                yield Skipped(str(path), line, f"record {record.id}: image {record.image} not found")
                continue
            answer = record.answer.strip()
            if task == "multiple_choice":
                answer = answer.upper()
                if answer not in (record.options or {}):
                    yield Skipped(str(path), line, f"record {record.id}: gold answer {answer!r} is not an option")
                    continue
            elif task == "yes_no":
                answer = answer.lower()
            yield EvalItem(
                id=record.id,
                benchmark=self.name,
                task=task,  # type: ignore[arg-type]
                question=record.question or "",
                answer=answer,
                options=record.options,
                context=record.text or None,
                image=image,
                labels=labels,
                meta={"source": record.source, "modality": record.modality, **_record_rarity(record)},
                source=f"{path}:{line}",
            )


def _record_rarity(record) -> dict[str, str]:
    """Curated records carry linked entities; their tier wins over linking the item again."""
    if not record.entities:
        return {}
    return {"rarity": "rare" if any(m.rare for m in record.entities) else "common"}


# Section codes of MTS-Dialog, spelled out for the prompt.
MTS_SECTIONS = {
    "GENHX": "history of present illness", "FAM/SOCHX": "family and social history", "ROS": "review of systems",
    "PASTSURGICAL": "past surgical history", "PASTMEDICALHX": "past medical history", "CC": "chief complaint",
    "MEDICATIONS": "medications", "ALLERGY": "allergies", "ASSESSMENT": "assessment", "EDCOURSE": "emergency course",
    "DIAGNOSIS": "diagnosis", "DISPOSITION": "disposition", "EXAM": "examination", "PLAN": "plan",
    "PROCEDURES": "procedures", "IMAGING": "imaging", "LABS": "laboratory results", "IMMUNIZATIONS": "immunizations",
    "GYNHX": "gynecologic history", "OTHER_HISTORY": "other history",
}


@register
class MTSDialog(Benchmark):
    """Clinical note generation from a doctor-patient dialogue, scored like report generation: entity-level
    precision/recall/F1 and hallucination rate against the reference section (via the entity linker)."""

    name = "mts_dialog"
    folder = "mts_dialog"
    patterns = ("*.csv",)
    main_metric = "entity_f1"
    fallback_metric = "rouge_l"
    public = False  # not one of the six headline benchmarks; run it by name
    description = "MTS-Dialog; CSV with ID, section_header, section_text, dialogue (note section from dialogue)"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"section_header", "section_text", "dialogue"} - set(reader.fieldnames or [])
            if missing:
                yield Skipped(str(path), 1, f"missing columns {', '.join(sorted(missing))}")
                return
            for row in reader:
                line = reader.line_num
                header, text, dialogue = (_text(row.get(k)) for k in ("section_header", "section_text", "dialogue"))
                if header is None or text is None or dialogue is None:
                    yield Skipped(str(path), line, "empty section_header, section_text or dialogue")
                    continue
                section = MTS_SECTIONS.get(header.upper(), header.lower())
                yield EvalItem(
                    id=f"{path.stem}-{row.get('ID') or line}",
                    benchmark=self.name,
                    task="report",
                    question=f"Write the {section} section of the clinical note for this dialogue.",
                    answer=text,
                    context=dialogue,
                    meta={"section": header},
                    source=f"{path}:{line}",
                )


@register
class ReportFindings(Benchmark):
    """Radiology report generation over a medfoundry dataset: held-out `report` records (image -> findings text)."""

    name = "report_findings"
    folder = "."
    patterns = ("records.jsonl",)
    main_metric = "entity_f1"
    fallback_metric = "rouge_l"
    public = False
    description = "held-out report records of a medfoundry dataset (image + findings text)"

    def read(self, path: Path) -> Iterator[EvalItem | Skipped]:
        for entry in iter_dataset_records(path):
            if isinstance(entry, Skipped):
                yield entry
                continue
            record, line = entry
            if record.kind != "report" or record.split != "holdout" or not record.text.strip():
                continue
            image = path.parent / record.image if record.image else None
            if image is not None and not image.is_file():
                yield Skipped(str(path), line, f"record {record.id}: image {record.image} not found")
                continue
            what = f"{record.modality} " if record.modality else ""
            yield EvalItem(
                id=record.id,
                benchmark=self.name,
                task="report",
                question=f"Write the findings section of the radiology report for this {what}image.",
                answer=record.text.strip(),
                image=image,
                meta={"modality": record.modality, **_record_rarity(record)},
                source=f"{path}:{line}",
            )
