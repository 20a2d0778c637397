"""N-gram decontamination: the shared index, evaluation-set readers, and removal with a report."""

from __future__ import annotations

import json

import pytest

from medfoundry.curation.decontam import build_eval_index, decontaminate, iter_eval_items
from medfoundry.data.records import Record
from medfoundry.text.ngrams import NgramIndex

QUESTION = (
    "A 23-year-old woman presents with fever, dysuria and flank pain for two days; urinalysis shows white cell "
    "casts. Which of the following is the most likely diagnosis?"
)


def test_index_finds_shared_ngrams_across_case_and_punctuation():
    index = NgramIndex.build([("medqa:1", QUESTION)], n=13)
    document = "Intro text. " + QUESTION.upper().replace(";", " --") + " More unrelated text follows here."
    hit = index.match(document)
    assert hit is not None and hit.item_id == "medqa:1" and hit.shared >= 10
    assert len(hit.ngram.split()) == 13
    assert index.match("Fever and dysuria in a young woman suggest a urinary tract infection.") is None


def test_short_items_match_whole_and_tiny_items_are_ignored():
    index = NgramIndex.build(
        [("a", "What is the first line treatment for anaphylaxis"), ("b", "Yes or no")], n=13
    )
    assert index.item_ids == ["a"]  # "Yes or no" is below min_tokens
    assert index.contains("Q: what is the first-line treatment for anaphylaxis? A: epinephrine")
    assert not index.contains("what is the first line treatment for asthma")


def test_index_save_and_load_round_trip(tmp_path):
    index = NgramIndex.build([("x", QUESTION), ("y", "short item with exactly eight words here ok")], n=8)
    loaded = NgramIndex.load(index.save(tmp_path / "index.npz"))
    assert loaded.n == 8 and loaded.item_ids == index.item_ids and len(loaded) == len(index)
    assert loaded.match(QUESTION).item_id == "x"


def test_eval_items_from_upstream_formats(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"question": QUESTION, "options": {"A": "Pyelonephritis"}}) + "\n"
    )
    (tmp_path / "b.json").write_text(
        json.dumps({"123": {"QUESTION": "Is aspirin useful?", "CONTEXTS": ["ctx"]}})
    )
    (tmp_path / "c.csv").write_text("What bone is the longest?,Femur,Tibia,Ulna,Radius,A\n")
    items = dict(iter_eval_items(tmp_path))
    assert (
        "Pyelonephritis" in items["a.jsonl:1"]
        and "ctx" in items["b.json:123"]
        and "Femur" in items["c.csv:1"]
    )


def test_decontaminate_removes_overlapping_records_with_reason(tmp_path):
    (tmp_path / "eval.jsonl").write_text(json.dumps({"question": QUESTION}) + "\n")
    index = build_eval_index([tmp_path / "eval.jsonl"], n=13)
    records = [
        Record(
            id="leak", source="user:x", kind="text", text=f"Board review: {QUESTION} Answer: pyelonephritis."
        ),
        Record(id="fine", source="user:x", kind="text", text="Pyelonephritis is an infection of the kidney."),
    ]
    kept, removed = decontaminate(records, index)
    assert [r.id for r in kept] == ["fine"]
    assert removed[0].reason == "eval_contamination"
    assert removed[0].detail["item_id"] == "eval.jsonl:1" and removed[0].detail["shared"] > 0


@pytest.mark.shared
def test_real_medqa_question_in_a_training_document_is_caught(shared_dir):
    path = shared_dir / "data" / "medqa" / "us_4options.jsonl"
    index = build_eval_index([path], n=13)
    assert len(index.item_ids) >= 300
    question = json.loads(path.read_text().splitlines()[5])["question"]
    leaked = Record(id="x", source="user:web", kind="text", text="From a forum post: " + question[:400])
    clean = Record(id="y", source="user:web", kind="text", text="Hypertension is a risk factor for stroke.")
    kept, removed = decontaminate([leaked, clean], index)
    assert [r.id for r in kept] == ["y"] and removed[0].detail["item_id"] == "us_4options.jsonl:6"


# -- against the profile's benchmarks, through the curate stage ---------------------------------------------------


def test_minhash_catches_a_reworded_item_the_ngrams_miss():
    from medfoundry.curation.decontam import EvalIndex
    from medfoundry.data.records import Record

    item = (
        "A 45-year-old woman presents with fatigue, weight gain, cold intolerance and constipation for six months; "
        "her TSH is elevated and free T4 is low, and she has a family history of autoimmune thyroid disease."
    )
    index = EvalIndex(n=60, min_tokens=8)  # 60-grams: longer than the item, so only MinHash can match
    index.add("medqa:7", item)
    reworded = "Case: " + item.replace("thyroid disease.", "thyroid disorder.")
    hit = index.match(Record(id="t", source="user:x", kind="text", text=reworded), None)
    assert hit is not None and hit[0] == "eval_contamination"
    assert hit[1]["method"] == "minhash" and hit[1]["benchmark"] == "medqa" and hit[1]["jaccard"] >= 0.7
    other = "Hypothyroidism is treated with levothyroxine; doses are adjusted to the TSH every six to eight weeks."
    assert index.match(Record(id="u", source="user:x", kind="text", text=other), None) is None


@pytest.fixture(scope="module")
def benchmark_curated(tmp_path_factory):
    from medfoundry.config import load_profile
    from medfoundry.curation.curate import curate
    from medfoundry.workspace import shared_root

    shared = shared_root()
    if shared is None:
        pytest.skip("../shared not found: benchmark decontamination test skipped")
    data = shared / "data"
    vqa = json.loads((data / "vqa_rad" / "trainset.json").read_text())
    item = next(x for x in vqa if len(f"{x['question']} {x['answer']}".split()) >= 9)
    medqa = json.loads((data / "medqa" / "us_4options.jsonl").read_text().splitlines()[0])
    root = tmp_path_factory.mktemp("bench")
    corpus = root / "corpus"
    corpus.mkdir()
    rows = [
        {"id": "vqa-leak", "text": f"Radiology teaching file. Q: {item['question']} A: {item['answer']}. End of case."},
        {"id": "medqa-leak", "text": "Board review, question 12. " + medqa["question"]},
        {"id": "clean", "text": "Chest radiographs are the first test for suspected pneumonia in adults with cough."},
    ]
    (corpus / "notes.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    # an evaluation image, re-encoded as PNG and resized, slipped into the training data with a caption
    from PIL import Image

    with Image.open(data / "vqa_rad" / "images" / item["image_name"]) as image:
        image.convert("L").resize((300, 300)).save(corpus / "scan.png")
    (corpus / "scan.txt").write_text("Axial image from an outside hospital, teaching collection.")
    home = root / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDFOUNDRY_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    profile = load_profile(
        "tiny",
        {
            "eval.benchmarks": ["vqa_rad", "medqa"],
            "eval.data_dir": str(data),
            "curation.max_nodes_per_source": 300,
            "curation.synthesize": False,
            "curation.feast": False,
            "curation.scrub_phi": False,
        },
    )
    out = root / "out"
    figures = curate(profile, [corpus], out)
    mp.undo()
    return {"out": out, "figures": figures, "vqa": item}


def test_curate_removes_verbatim_benchmark_items_naming_the_benchmark(benchmark_curated):
    from medfoundry.data.records import read_jsonl

    out = benchmark_curated["out"]
    removed = {row["id"].removeprefix("notes-"): row for row in read_jsonl(out / "removed.jsonl")}
    assert removed["vqa-leak"]["reason"] == "eval_contamination"
    assert removed["vqa-leak"]["benchmark"] == "vqa_rad" and removed["vqa-leak"]["item_id"].startswith("vqa_rad:")
    assert removed["medqa-leak"]["benchmark"] == "medqa"
    assert "clean" not in removed
    report = json.loads((out / "decontamination.json").read_text())
    assert report["benchmarks"]["vqa_rad"] == 1798 and report["benchmarks"]["medqa"] == 300
    assert report["benchmarks_skipped"] == {}


def test_curate_removes_an_evaluation_image_from_training_data(benchmark_curated):
    from medfoundry.data.records import read_jsonl

    out = benchmark_curated["out"]
    images = [row for row in read_jsonl(out / "removed.jsonl") if row["reason"] == "eval_image_contamination"]
    assert len(images) == 1 and images[0]["benchmark"] == "vqa_rad" and images[0]["hamming"] <= 4
    assert benchmark_curated["figures"]["images"] == 0  # no image left in the curated dataset
