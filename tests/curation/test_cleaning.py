"""Exact and near-duplicate removal, quality scoring."""

from __future__ import annotations

import random

from medfoundry.curation.cleaning import NearDuplicateFilter, exact_dedup, near_dedup, quality
from medfoundry.data.records import Record

PARAGRAPH = (
    "The patient is a 54-year-old man with a history of type 2 diabetes mellitus and hypertension who presents "
    "with two days of progressive shortness of breath, productive cough and fever. Chest radiograph shows a right "
    "lower lobe consolidation. He was started on ceftriaxone and azithromycin and improved over three days."
)


def _rec(i: int, text: str, **kw) -> Record:
    return Record(id=f"r{i}", source="user:test", kind="text", text=text, **kw)


def test_exact_dedup_ignores_case_punctuation_and_spacing():
    records = [_rec(0, "Fever and cough."), _rec(1, "fever   AND cough"), _rec(2, "Fever and rash.")]
    kept, removed = exact_dedup(records)
    assert [r.id for r in kept] == ["r0", "r2"]
    assert removed[0].reason == "exact_duplicate" and removed[0].detail["duplicate_of"] == "r0"


def test_same_caption_on_different_images_is_not_a_duplicate():
    records = [_rec(0, "Chest X-ray.", image="images/a.png"), _rec(1, "Chest X-ray.", image="images/b.png")]
    kept, removed = exact_dedup(records, {"r0": "digest-a", "r1": "digest-b"})
    assert len(kept) == 2 and not removed
    kept, removed = exact_dedup(records, {"r0": "same", "r1": "same"})
    assert len(kept) == 1


def test_near_duplicates_removed_distinct_texts_kept():
    words = PARAGRAPH.split()
    edited = list(words)
    edited[-1] = "days"  # one word changed
    other = (
        "Magnetic resonance imaging of the lumbar spine demonstrates a broad-based disc protrusion at L4-L5 with "
        "moderate narrowing of the left lateral recess and contact of the traversing L5 nerve root."
    )
    records = [_rec(0, PARAGRAPH), _rec(1, " ".join(edited)), _rec(2, other), _rec(3, PARAGRAPH.upper())]
    kept, removed = near_dedup(records, threshold=0.8)
    assert [r.id for r in kept] == ["r0", "r2"]
    assert {r.record.id for r in removed} == {"r1", "r3"}
    assert all(r.reason == "near_duplicate" and r.detail["duplicate_of"] == "r0" for r in removed)
    assert all(r.detail["jaccard"] >= 0.8 for r in removed)


def test_near_dedup_recall_on_lightly_edited_copies():
    rng = random.Random(0)
    vocab = PARAGRAPH.lower().split() + [f"w{i}" for i in range(500)]
    originals = [" ".join(rng.choice(vocab) for _ in range(120)) for _ in range(200)]
    nd = NearDuplicateFilter(threshold=0.8)
    for i, text in enumerate(originals):
        assert nd.check(f"o{i}", text) is None  # random documents are not near duplicates of each other
    found = 0
    for i, text in enumerate(originals):
        words = text.split()
        words[rng.randrange(len(words))] = "edited"
        found += nd.check(f"c{i}", " ".join(words)) is not None
    assert found >= 190


def test_signatures_are_stable_across_instances():
    a, b = NearDuplicateFilter(), NearDuplicateFilter()
    assert (a.signature(PARAGRAPH) == b.signature(PARAGRAPH)).all()


def test_quality_scores_prose_high_and_junk_low():
    good = quality(PARAGRAPH)
    assert good.score >= 0.9 and not good.problems
    assert quality("").score == 0.0
    repetitive = quality("buy now " * 40)
    assert repetitive.score < 0.3 and "top_trigram_share" in repetitive.problems
    symbols = quality("#### {{{ }}} <<< >>> ||| @@@ $$$ %%% *** === ___ ^^^ ~~~ ``` [[[ ]]] a b c")
    assert symbols.score < 0.3
    binaryish = quality("\x00\x01\x02 abc \ufffd\ufffd\ufffd def \x03\x04")
    assert binaryish.score < 0.3 and "control_ratio" in binaryish.problems
    # Short QA items and captions are fine at a few words.
    assert quality("Chest CT.", kind="caption").score == 1.0
