"""The adapter base class, the registry, split selection and line-keeping readers shared by every benchmark."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from medfoundry.tasks.items import LETTERS, EvalItem, Task

__all__ = ["LETTERS", "EvalItem", "Task"]


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
    # The lm-evaluation-harness task the `loglikelihood` protocol follows (its task file under lm_eval/tasks/, used
    # by the parity check) and `harness_prompt`, that task's prompt. The defaults are medqa_4options for multiple
    # choice and pubmedqa for yes/no/maybe; benchmarks whose harness task differs override both.
    harness_task_file: ClassVar[str | None] = None

    @classmethod
    def harness_prompt(cls, item: EvalItem) -> tuple[str, str]:
        """(context, template id) as the harness builds it: tasks/medqa/preprocess_medqa.py doc_to_text for
        multiple choice, tasks/pubmedqa/preprocess_pubmedqa.py doc_to_text for yes/no/maybe."""
        if item.options:
            options = "".join(f"{letter}. {text}\n" for letter, text in item.options.items())
            return f"Question: {item.question}\n{options}Answer:", "lm-eval:medqa_4options"
        return f"Abstract: {item.context or ''}\nQuestion: {item.question}\nAnswer:", "lm-eval:pubmedqa"

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


def record_rarity(record) -> dict[str, str]:
    """Curated records carry linked entities; their tier wins over linking the item again."""
    if not record.entities:
        return {}
    return {"rarity": "rare" if any(m.rare for m in record.entities) else "common"}


# Section codes of MTS-Dialog, spelled out for the prompt.
