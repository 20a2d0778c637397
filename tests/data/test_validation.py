"""Great Expectations validation: failing records are quarantined with the failing expectation; counts reconcile."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from medfoundry.data.records import Record, read_jsonl, read_manifest, read_records, write_jsonl
from medfoundry.data.validation import validate_dataset, validate_records


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "raw"
    (folder / "images").mkdir(parents=True)
    Image.new("L", (16, 16)).save(folder / "images" / "ok.png")
    good = [
        Record(
            id="t1", source="hpo:HP:1", kind="text", text="Seizure is a sudden episode of abnormal activity."
        ),
        Record(
            id="q1",
            source="icd10cm:E11",
            kind="qa",
            question="Which code is type 2 diabetes?",
            options={"A": "E11", "B": "I10"},
            answer="A",
        ),
        Record(
            id="c1", source="pydicom:a.dcm", kind="caption", text="CT of the abdomen.", image="images/ok.png"
        ),
    ]
    bad = [
        Record(
            id="q2",
            source="icd10cm:X",
            kind="qa",
            question="Which code?",
            options={"A": "1", "B": "2"},
            answer="C",
        ),
        Record(id="q3", source="icd10cm:Y", kind="qa", question="Which code is it?", answer=None),
        Record(id="c2", source="pydicom:b.dcm", kind="caption", text="MR of the head."),
        Record(id="c3", source="pydicom:c.dcm", kind="caption", text="X-ray.", image="images/missing.png"),
        Record(id="t1", source="hpo:HP:2", kind="text", text="A second record with a taken id."),
        Record(id="t3", source="nosource", kind="text", text="Source without an origin prefix."),
        Record(id="t4", source="hpo:HP:3", kind="text", text="..."),
    ]
    write_jsonl(folder / "records.jsonl", good + bad)
    with (folder / "records.jsonl").open("a") as fh:
        fh.write('{"id": "broken", "kind": "text"\n')
    return folder


def test_validate_dataset_quarantines_with_expectation_reasons(dataset, tmp_path):
    out = tmp_path / "validated"
    figures = validate_dataset(dataset, out, stage="ingest")
    assert figures["input"] == 11
    assert figures["kept"] == 3 and figures["quarantined"] == 8 and figures["removed"] == 0
    assert figures["input"] == figures["kept"] + figures["removed"] + figures["quarantined"]
    assert figures["gx_success"] is False
    assert [r.id for r in read_records(out)] == ["t1", "q1", "c1"]
    assert (out / "images" / "ok.png").is_file()
    rows = list(read_jsonl(out / "quarantine.jsonl"))
    by_id = {row.get("record", {}).get("id", "unreadable") + str(row["line"]): row for row in rows}
    expectations = {key: row.get("expectations", []) for key, row in by_id.items()}
    assert expectations["q24"] == ["answer_in_options"]
    assert "answer_present" in expectations["q35"]
    assert "caption_image" in expectations["c26"]
    assert expectations["c37"] == ["image_file"]
    assert expectations["t18"] == ["id_unique"]
    assert expectations["t39"] == ["source_format"]
    assert expectations["t410"] == ["text_words"]
    assert by_id["unreadable11"]["reason"].startswith("unreadable record")
    assert all(row["reason"] for row in rows)
    manifest = read_manifest(out)
    assert manifest["counts"] == {"input": 11, "kept": 3, "removed": 0, "quarantined": 8}
    summary = json.loads((out / "validation.json").read_text())
    assert set(summary["suites"]) == {"text", "qa", "caption"} and summary["evaluated_expectations"] > 20


def test_curate_stage_checks_weights_and_leftover_phi(tmp_path):
    records = [
        Record(
            id="a",
            source="user:x",
            kind="text",
            text="Clean note.",
            meta={"sample_weight": 1.0, "quality": 0.9},
        ),
        Record(id="b", source="user:x", kind="text", text="No weight set.", meta={"quality": 0.9}),
        Record(
            id="c", source="user:x", kind="text", text="Write to jo@example.com.", meta={"sample_weight": 1.0}
        ),
        Record(
            id="d", source="user:x", kind="text", text="SSN 123-45-6789 left.", meta={"sample_weight": 2.0}
        ),
    ]
    outcome = validate_records(records, tmp_path, stage="curate")
    assert [r.id for r in outcome.kept] == ["a"]
    reasons = {row["record"]["id"]: row["expectations"] for row in outcome.quarantined}
    assert reasons == {"b": ["sample_weight"], "c": ["no_phi_left"], "d": ["no_phi_left"]}
