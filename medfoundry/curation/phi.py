"""PHI de-identification of records: every string field, whatever the record's source or labels say.

`scrub_record` runs the PHI engine (`medfoundry.deid.engine`: Presidio with spaCy NER plus our rules) over the text
fields, the option texts, every string inside `meta` (extra CSV columns such as `patient_name` or `dialogue` land
there), and the file names a record carries (`source`, `id`, `image`). Identifiers become surrogates that are
consistent within a patient (`meta.patient_id` and similar columns) or else within the record, and dates move by one
offset per patient, so a note still reads as a note. There is no bypass: a `source` prefix or `meta.phi_free` changes
nothing, and text from ontologies goes through the same engine (its eponyms and accessions are kept by the engine's
own filters, not by a label).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from medfoundry.data.records import Record
from medfoundry.deid.engine import NER_RULE_PREFIX, DeidResult, default_deidentifier
from medfoundry.deid.rules import PhiSpan
from medfoundry.deid.surrogates import Surrogates

# Columns that name the patient: their value keys the surrogates and the date shift (one patient, one mapping).
PATIENT_KEYS = (
    "patient_id",
    "patientid",
    "patient",
    "subject_id",
    "mrn",
    "medical_record_number",
    "patient_name",
)
# A column named like an identifier is replaced whole, even where no detector would fire on its value alone
# ("sunny" in a `first_name` column).
_COLUMN_KINDS = [
    (re.compile(r"(?i)(?:^|_)(?:ssn|social_security)"), "SSN"),
    (re.compile(r"(?i)(?:^|_)(?:e_?mail)"), "EMAIL"),
    (re.compile(r"(?i)(?:^|_)(?:phone|tel|fax|mobile|cell)"), "PHONE"),
    (
        re.compile(
            r"(?i)(?:^|_)(?:dob|birth|birthdate|date_of_birth|admission_date|discharge_date|visit_date)"
        ),
        "DATE",
    ),
    (re.compile(r"(?i)(?:^|_)(?:address|street|city|zip|zipcode|postcode)(?:$|_)"), "ADDRESS"),
    (
        re.compile(
            r"(?i)(?:^|_)(?:mrn|medical_record|account|acct|patient_id|subject_id|member_id|insurance_id)"
        ),
        "ID",
    ),
    (
        re.compile(
            r"(?i)(?:^|_)(?:name|first_name|last_name|surname|given_name|patient|physician|doctor|nurse)$"
        ),
        "NAME",
    ),
]
_OPTION_LETTER = re.compile(r"^[A-J]$")
# Rules that read a text's layout (a "Name:" speaker turn, a line holding only a name): "hpo:HP:..." is neither.
_LAYOUT_RULES = frozenset({"speaker", "name-line"})


def scrub_phi(text: str, scope: str = "document") -> DeidResult:
    """De-identify one text with the process-wide engine; `scope` keys the surrogates (a patient or document)."""
    return default_deidentifier().deidentify(text, scope)


def record_scope(record: Record) -> str:
    """The patient a record belongs to, from its patient columns; the record itself when none is given."""
    lowered = {str(k).lower(): v for k, v in record.meta.items()}
    for key in PATIENT_KEYS:
        value = lowered.get(key)
        if isinstance(value, str | int) and str(value).strip():
            return f"patient:{str(value).strip().lower()}"
    return f"record:{record.id}"


class _Scrubber:
    """State for one record: its surrogates and the spans counted."""

    def __init__(self, scope: str):
        self.engine = default_deidentifier()
        self.surrogates = Surrogates(scope)
        self.counts: Counter[str] = Counter()

    def text(self, value: str) -> str:
        result = self.engine.deidentify(value, self.surrogates)
        self.counts.update(result.counts)
        return result.text

    def whole(self, kind: str, value: str) -> str:
        self.counts[kind] += 1
        return self.surrogates.replace(kind, value)

    def value(self, key: str | None, value: Any) -> Any:
        if isinstance(value, str):
            kind = _column_kind(key) if key else None
            if kind and value.strip():
                return self.whole(kind, value.strip())
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(key, v) for v in value]
        return value

    def name(self, value: str) -> str:
        """A file name or path, de-identified (see `_scrub_name`)."""
        scrubbed, kinds = _scrub_name(value, self.surrogates.key)
        self.counts.update(kinds)
        return scrubbed


@lru_cache(maxsize=65536)
def _scrub_name(value: str, key: bytes) -> tuple[str, tuple[str, ...]]:
    """(scrubbed name, kinds found): words joined by `_` or `-` are read as words, lower-case ones as if capitalized.

    Surrogates are keyed by the name itself, so every record of one file (or one image) gets the same; the many
    records of one file are looked at once.
    """
    spaced = re.sub(r"_|(?<=[A-Za-z])-(?=[A-Za-z])|\.(?=[A-Za-z0-9]{1,5}$)", " ", value)
    readable = re.sub(r"\b[a-z]", lambda m: m.group().upper(), spaced)
    # spaCy's NER reads title-cased file words as people ("Caption CT Small"); names here come from our rules.
    spans = [
        span
        for span in default_deidentifier().find(readable)
        if span.kind not in ("URL", "EMAIL")
        and not span.rule.startswith(NER_RULE_PREFIX)
        and span.rule not in _LAYOUT_RULES
        # A word is rare-name evidence only where the file name itself capitalizes it ("Gyarmaty_scan.png",
        # not "pydicom_ct.dcm").
        and not (span.rule == "rare-word" and value[span.start].islower())
    ]
    if not spans:
        return value, ()
    surrogates = Surrogates(f"file:{value}", key)
    out, pos = [], 0
    for span in spans:
        out.append(value[pos : span.start])
        out.append(re.sub(r"[^\w.-]+", "_", surrogates.replace(span.kind, readable[span.start : span.end])))
        pos = span.end
    out.append(value[pos:])
    return "".join(out), tuple(span.kind for span in spans)


def _column_kind(key: str) -> str | None:
    for pattern, kind in _COLUMN_KINDS:
        if pattern.search(key):
            return kind
    return None


def scrub_record(record: Record, counts: Counter | None = None, dataset_dir: Path | None = None) -> Record:
    """A copy of `record` with PHI replaced in every string field; `counts` gains the spans found, by kind.

    Where the image file name changes, the file under `dataset_dir` is renamed with it.
    """
    scrubber = _Scrubber(record_scope(record))
    update: dict[str, Any] = {}
    for name in ("text", "question", "reasoning"):
        value = getattr(record, name)
        if value:
            update[name] = scrubber.text(value)
    if record.answer and not (_OPTION_LETTER.match(record.answer) and record.options):
        update["answer"] = scrubber.text(record.answer)
    if record.options:
        update["options"] = {key: scrubber.text(value) for key, value in record.options.items()}
    meta = scrubber.value(None, {k: v for k, v in record.meta.items() if k != "phi_spans"})
    update["source"] = scrubber.name(record.source)
    new_id = scrubber.name(record.id)
    if new_id != record.id:  # a keyed suffix keeps ids unique where two names share a surrogate
        update["id"] = f"{new_id}-{_keyed_suffix(scrubber.surrogates, record.id)}"
    if record.image:
        image = scrubber.name(record.image)
        if image != record.image:
            update["image"] = image
            if dataset_dir is not None:
                _rename(Path(dataset_dir), record.image, image)
    spans = sum(scrubber.counts.values())
    if counts is not None:
        counts.update(scrubber.counts)
    if not spans:
        return record
    if record.entities and any(update.get(f) != getattr(record, f) for f in ("text", "question", "answer")):
        update["entities"] = []  # offsets no longer hold; linking runs after cleaning anyway
    return record.model_copy(update={**update, "meta": {**meta, "phi_spans": spans}})


def _keyed_suffix(surrogates: Surrogates, value: str) -> str:
    return hmac.new(surrogates.key, value.encode(), hashlib.sha256).hexdigest()[:8]


def _rename(dataset_dir: Path, old: str, new: str) -> None:
    source, target = dataset_dir / old, dataset_dir / new
    if source.is_file() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)


__all__ = ["PATIENT_KEYS", "PhiSpan", "record_scope", "scrub_phi", "scrub_record"]
