"""The curate orchestrator end to end through `medfoundry curate` on a small damaged corpus, then Feast once."""

from __future__ import annotations

import json
import re

import pytest
from corrupt_corpus import MAX_CHARS, build
from typer.testing import CliRunner

from medfoundry.data.records import Record, read_jsonl, read_manifest, read_records, write_jsonl

LEAKED_QUESTION = (
    "A 67-year-old man with atrial fibrillation on warfarin presents with melena and an INR of 9.2; which of the "
    "following is the most appropriate next step in management?"
)


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("curate")
    home = root / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDFOUNDRY_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    expected = build(root / "corpus")
    ontology = root / "dataset"
    write_jsonl(
        ontology / "records.jsonl",
        [
            Record(
                id="hpo-1",
                source="hpo:HP:0001250",
                kind="text",
                text="Seizure is an abnormal electrical "
                "discharge of neurons in the brain. Also known as: epileptic seizure.",
            ),
            Record(
                id="hpo-1-copy",
                source="hpo:HP:0001250",
                kind="text",
                text="Seizure is an abnormal electrical "
                "discharge of neurons in the brain.  Also known as: epileptic seizure!",
            ),
            Record(
                id="qa-1",
                source="icd10cm:I10",
                kind="qa",
                question="Which ICD-10-CM code denotes essential (primary) hypertension?",
                options={"A": "I10", "B": "E11.9"},
                answer="A",
                split="holdout",
            ),
            Record(id="leak-1", source="user:forum", kind="text", text="Forum: " + LEAKED_QUESTION),
            Record(id="junk-1", source="user:web", kind="text", text="$$$ ### BUY BUY BUY " * 20),
        ],
    )
    (root / "eval.jsonl").write_text(json.dumps({"question": LEAKED_QUESTION, "answer": "FFP"}) + "\n")
    out = root / "out"
    from medfoundry.cli import app

    result = CliRunner().invoke(
        app,
        [
            "curate",
            "--profile",
            "tiny",
            "--input",
            str(root / "corpus"),
            "--input",
            str(ontology),
            "--out",
            str(out),
            "--eval-set",
            str(root / "eval.jsonl"),
            "--set",
            f"curation.max_record_chars={MAX_CHARS}",
            "--set",
            "curation.max_nodes_per_source=600",
            "--set",
            "curation.synthesis_max_entities=10",
        ],
    )
    mp.undo()
    assert result.exit_code == 0, result.output + repr(result.exception)
    return {"out": out, "home": home, "output": result.output, "expected": expected}


def test_counts_reconcile_and_every_loss_has_a_reason(curated):
    out = curated["out"]
    manifest = read_manifest(out)
    counts = manifest["counts"]
    assert counts["input"] == counts["kept"] + counts["removed"] + counts["quarantined"]
    expected = curated["expected"]
    assert counts["read"] == expected["read_ok"] + expected["read_quarantined"] + 5  # + the dataset's 5 rows
    kept = list(read_records(out))
    removed = list(read_jsonl(out / "removed.jsonl"))
    quarantined = list(read_jsonl(out / "quarantine.jsonl"))
    assert (len(kept), len(removed), len(quarantined)) == (
        counts["kept"],
        counts["removed"],
        counts["quarantined"],
    )
    assert counts["synthesized"] > 0
    assert all(row["reason"] for row in removed + quarantined)
    reasons = {row["id"]: row["reason"] for row in removed}
    assert reasons["hpo-1-copy"] == "exact_duplicate"
    assert reasons["leak-1"] == "eval_contamination"
    assert reasons["junk-1"] == "low_quality"
    assert "curate" in curated["output"] and str(counts["kept"]) in curated["output"]


def test_records_are_scrubbed_linked_weighted_and_images_kept(curated):
    out = curated["out"]
    kept = {r.id: r for r in read_records(out)}
    note = kept["notes-1"]
    # Surrogates, not placeholders: another name and the date shifted in its own format (medfoundry.deid).
    assert not re.search(r"\b(John|Carter)\b", note.text) and "03/14/2021" not in note.text
    assert note.text.startswith("Patient ") and re.search(
        r"seen on \d{2}/\d{2}/20(20|21) for worsening asthma", note.text
    )
    assert note.meta["phi_spans"] == 2
    assert all(r.meta["sample_weight"] > 0 and 0 <= r.meta["quality"] <= 1 for r in kept.values())
    linked = [r for r in kept.values() if r.entities and not r.source.startswith("met:")]
    assert linked
    for record in linked:  # offsets of text mentions are valid in the (scrubbed) text
        for m in record.entities:
            if "field" not in (m.model_extra or {}):
                assert 0 <= m.start < m.end <= len(record.text)
    image_records = [r for r in kept.values() if r.image]
    assert image_records and all((out / r.image).is_file() for r in image_records)
    assert {p.relative_to(out).as_posix() for p in (out / "images").iterdir()} == {
        r.image for r in image_records
    }
    assert "qa-1" in kept and kept["qa-1"].split == "holdout"
    assert any(r.source.startswith("met:") for r in kept.values())  # synthesized for sparse entities


def test_reports_and_plots_written(curated):
    out = curated["out"]
    coverage = json.loads((out / "coverage.json").read_text())
    assert coverage["summary"]["covered_nodes"] > 0 and "rebalance" in coverage and coverage["entities"]
    assert {p.name for p in (out / "plots").glob("*.png")} == {"long_tail.png", "coverage_by_kind.png"}
    decontam = json.loads((out / "decontamination.json").read_text())
    assert decontam["removed"] == 1 and decontam["examples"][0]["item_id"] == "eval.jsonl:1"
    assert json.loads((out / "validation.json").read_text())["stage"] == "curate"


def test_feast_features_published_historical_and_online(curated):
    from medfoundry.curation.features import lookup_entities, training_weights

    workdir = curated["home"] / "feast"
    assert (workdir / "registry.db").is_file() and (workdir / "online_store.db").is_file()
    kept = list(read_records(curated["out"]))
    ids = [r.id for r in kept[:5]]
    weights = training_weights(ids + ["no-such-record"], workdir)
    for record in kept[:5]:
        assert weights.loc[record.id, "sample_weight"] == pytest.approx(
            record.meta["sample_weight"], rel=1e-5
        )
    assert weights.loc["no-such-record"].isna().all()
    mentioned = next(m for r in kept for m in r.entities)
    rows = lookup_entities([mentioned.id, "NOPE:1"], workdir)
    assert (
        rows[0]["found"]
        and rows[0]["frequency"] >= 1
        and rows[0]["rarity_tier"] in ("sparse", "common", "frequent")
    )
    assert rows[0]["depth"] >= 0
    assert rows[1]["found"] is False


def test_training_sampler_reads_weights_through_feast(curated, monkeypatch):
    from medfoundry.config import load_profile
    from medfoundry.training.common import TextExample, reweight_from_feature_store

    monkeypatch.setenv("MEDFOUNDRY_HOME", str(curated["home"]))
    kept = [r for r in read_records(curated["out"]) if r.meta.get("sample_weight")][:4]
    examples = [TextExample("", "x", None, 1.0, r.id) for r in kept]
    assert reweight_from_feature_store(load_profile("tiny"), examples) == "feast"
    for example, record in zip(examples, kept, strict=True):
        assert example.weight == pytest.approx(record.meta["sample_weight"], rel=1e-5)
    assert reweight_from_feature_store(load_profile("tiny", {"curation.feast": False}), examples) == "records"
