"""Ingest reads the real PyPI-shipped sources; every input ends as a record or a quarantined item with a reason."""

from __future__ import annotations

import json

import pytest

from medfoundry.config import load_profile
from medfoundry.data.ingest import MODALITY_NAMES, ingest_sources
from medfoundry.data.records import read_jsonl, read_manifest, read_records


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    profile = load_profile("tiny", {"data.max_dicom_files": 6, "data.max_ontology_terms": 45})
    figures = ingest_sources(profile, out)
    return out, figures


def test_counts_reconcile(raw):
    out, figures = raw
    records = list(read_records(out))
    quarantined = list(read_jsonl(out / "quarantine.jsonl"))
    assert figures["records"] == len(records) > 0
    assert figures["quarantined"] == len(quarantined)
    assert figures["input"] == len(records) + len(quarantined)
    manifest = read_manifest(out)
    assert manifest["counts"]["records"] == len(records)
    assert len(manifest["content_hash"]) == 64


def test_dicom_images_come_with_header_verified_questions(raw):
    out, _ = raw
    records = list(read_records(out))
    captions = [r for r in records if r.kind == "caption"]
    questions = [r for r in records if r.kind == "qa" and r.source.startswith("pydicom:")]
    assert len(captions) == 6 and len(questions) == 6
    for caption in captions:
        assert (out / caption.image).is_file()
        assert caption.modality in MODALITY_NAMES
    for item in questions:
        assert set(item.options) == {"A", "B", "C", "D"}
        assert item.options[item.answer] == MODALITY_NAMES[item.modality]


def test_ontology_sources_become_text_and_coding_questions(raw):
    out, figures = raw
    records = list(read_records(out))
    assert figures["source/hpo"] > 0 and figures["source/hpoa"] > 0 and figures["source/icd10cm"] > 0
    coding = [r for r in records if r.id.startswith("icd10cm-qa-")]
    assert coding
    for item in coding:
        code = item.source.split(":", 1)[1]
        assert item.options[item.answer] == code
    assert {r.split for r in records if r.kind == "qa"} <= {"train", "holdout"}


def test_unreadable_dicom_is_quarantined_with_a_reason(raw):
    out, _ = raw
    for row in read_jsonl(out / "quarantine.jsonl"):
        assert row["reason"] and row["source"].startswith("pydicom:")
        json.dumps(row)


def test_split_is_deterministic(tmp_path):
    profile = load_profile("tiny", {"data.max_dicom_files": 2, "data.max_ontology_terms": 6, "data.hpo": False})
    first = {r.id: r.split for r in _records(profile, tmp_path / "a")}
    second = {r.id: r.split for r in _records(profile, tmp_path / "b")}
    assert first == second


def _records(profile, out):
    ingest_sources(profile, out)
    return list(read_records(out))
