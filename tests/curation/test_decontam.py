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
