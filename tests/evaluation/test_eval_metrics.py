"""Metrics and intervals against values computed by hand."""

from __future__ import annotations

import math

import pytest

from medfoundry.evaluation.metrics import (
    bootstrap_ci,
    entity_scores,
    exact_match,
    paired_delta_ci,
    rouge_l,
    token_f1,
)


def test_exact_match_normalizes():
    assert exact_match("The CT.", "ct") == 1.0
    assert exact_match("MRI", "CT") == 0.0
    assert exact_match(None, "CT") == 0.0


def test_token_f1_by_hand():
    # pred tokens: right side trachea (3); gold: right side of trachea -> "of" kept, "the" dropped: right side of trachea (4)
    # common 3 -> P = 1, R = 3/4, F1 = 2*0.75/1.75
    assert token_f1("right side trachea", "the right side of the trachea") == pytest.approx(2 * 0.75 / 1.75)
    assert token_f1("liver", "kidney") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1(None, "x") == 0.0


def test_rouge_l_by_hand():
    # LCS("the cat sat on the mat", "the cat is on the mat") = the cat on the mat = 5; P = R = 5/6
    assert rouge_l("the cat is on the mat", "the cat sat on the mat") == pytest.approx(5 / 6)
    assert rouge_l("", "anything") == 0.0
    assert rouge_l("identical text here", "identical text here") == pytest.approx(1.0)


def test_entity_scores_and_hallucination():
    scores = entity_scores({"pneumonia", "effusion", "fracture"}, {"pneumonia", "effusion", "cardiomegaly", "edema"})
    assert scores["entity_precision"] == pytest.approx(2 / 3)
    assert scores["entity_recall"] == pytest.approx(2 / 4)
    assert scores["entity_f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert scores["hallucination_rate"] == pytest.approx(1 / 3)  # "fracture" is not in the reference
    empty = entity_scores(set(), {"x"})
    assert empty["hallucination_rate"] == 0.0 and empty["entity_recall"] == 0.0


def test_bootstrap_ci_contains_mean_and_is_seeded():
    values = [1.0] * 30 + [0.0] * 70
    lo, hi = bootstrap_ci(values, n_resamples=500, seed=1)
    assert lo < 0.3 < hi
    assert 0.18 < lo < 0.3 and 0.3 < hi < 0.42  # ~ 0.3 +- 1.96 * sqrt(0.21 / 100) = [0.21, 0.39]
    assert bootstrap_ci(values, n_resamples=500, seed=1) == (lo, hi)
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    assert bootstrap_ci([0.5]) == (0.5, 0.5)
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def test_paired_delta_ci():
    base = [0.0] * 50 + [1.0] * 50
    better = [1.0] * 100
    delta, (lo, hi) = paired_delta_ci(base, better, n_resamples=500)
    assert delta == pytest.approx(0.5)
    assert 0.35 < lo < 0.5 < hi < 0.65
    same, ci = paired_delta_ci(base, base)
    assert same == 0.0 and ci == (0.0, 0.0)
    with pytest.raises(ValueError):
        paired_delta_ci([1.0], [1.0, 0.0])
