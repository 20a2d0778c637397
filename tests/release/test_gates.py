"""The gate policy on plain metric dicts: minimums, regression with intervals, rare tier, hallucination ceiling."""

from __future__ import annotations

import pytest

from medfoundry.config.release import GateConfig
from medfoundry.release.gates import benchmarks, evaluate_gate, main_score

CHAMPION = {
    "heldout/accuracy": 0.60,
    "heldout/ci95_lo": 0.55,
    "heldout/ci95_hi": 0.65,
    "heldout/rare/accuracy": 0.40,
    "medqa/score": 0.50,
}


def _checks(decision, name):
    return [c for c in decision.checks if c.name == name]


def test_first_model_passes_on_minimums_alone():
    gates = GateConfig(min_scores={"heldout": 0.3})
    decision = evaluate_gate(gates, {"heldout/accuracy": 0.31}, None)
    assert decision.passed
    assert [c.name for c in decision.checks] == ["min_score"]
    assert "no champion" in decision.reasons[0]
    assert not evaluate_gate(GateConfig(min_scores={"heldout": 0.3}), {"heldout/accuracy": 0.29}, None).passed


def test_minimum_missing_or_below_is_refused_with_reason():
    gates = GateConfig(min_scores={"heldout": 0.5, "pubmedqa": 0.7})
    decision = evaluate_gate(gates, {"heldout/accuracy": 0.4}, None)
    assert not decision.passed
    assert any("heldout: score 0.4000 < minimum 0.5000" in r for r in decision.reasons)
    assert any("pubmedqa: no score reported" in r for r in decision.reasons)


def test_regression_beyond_policy_is_refused():
    gates = GateConfig(max_regression=0.02)
    candidate = {**CHAMPION, "heldout/accuracy": 0.50, "heldout/ci95_lo": 0.45, "heldout/ci95_hi": 0.55}
    decision = evaluate_gate(gates, candidate, CHAMPION)
    assert not decision.passed
    (check,) = [c for c in _checks(decision, "regression") if c.benchmark == "heldout"]
    assert not check.passed and check.threshold == 0.60 - 0.02
    assert "regression beyond policy" in decision.reasons[0]


def _items(correct: int, n: int = 100, offset: int = 0) -> dict[str, float]:
    """Per-item scores: items offset..offset+correct-1 right, the rest wrong."""
    return {f"q{i}": float(offset <= i < offset + correct) for i in range(n)}


def test_twelve_point_drop_on_shared_items_is_refused_even_inside_the_candidate_interval():
    # The old rule let any drop pass while the candidate's own upper bound reached the champion (0.58 here).
    gates = GateConfig(max_regression=0.01)
    champion = {"medqa/accuracy": 0.60}
    candidate = {"medqa/accuracy": 0.48, "medqa/ci95_lo": 0.38, "medqa/ci95_hi": 0.58}
    decision = evaluate_gate(gates, candidate, champion, {"medqa": _items(48)}, {"medqa": _items(60)})
    assert not decision.passed
    (check,) = _checks(decision, "regression")
    assert "paired delta -0.1200 over 100 shared items" in check.detail and check.value < -0.01


def test_equal_model_on_shared_items_passes_and_only_shared_items_count():
    gates = GateConfig(max_regression=0.01)
    champion, candidate = {"medqa/accuracy": 0.60}, {"medqa/accuracy": 0.60}
    same = _items(60)
    assert evaluate_gate(gates, candidate, champion, {"medqa": same}, {"medqa": same}).passed
    # Items only one side answered are left out of the paired comparison.
    extra = {**same, **{f"new{i}": 0.0 for i in range(50)}}
    decision = evaluate_gate(gates, candidate, champion, {"medqa": extra}, {"medqa": same})
    assert decision.passed and "over 100 shared items" in _checks(decision, "regression")[0].detail


def test_small_paired_drop_within_policy_passes_and_large_noise_is_refused():
    gates = GateConfig(max_regression=0.05)
    # 1 item of 400 flips: delta -0.0025, tight interval.
    assert evaluate_gate(gates, {"x/accuracy": 0.5}, {"x/accuracy": 0.5}, {"x": _items(199, 400)}, {"x": _items(200, 400)}).passed
    # Same means, but the candidate answers different items right: the interval is wide and reaches below -0.05.
    decision = evaluate_gate(gates, {"x/accuracy": 0.5}, {"x/accuracy": 0.5}, {"x": _items(20, 40, 20)}, {"x": _items(20, 40)})
    assert not decision.passed


def test_without_per_item_scores_the_point_drop_decides():
    gates = GateConfig(max_regression=0.02)
    candidate = {**CHAMPION, "heldout/accuracy": 0.55, "heldout/ci95_lo": 0.45, "heldout/ci95_hi": 0.66}
    decision = evaluate_gate(gates, candidate, CHAMPION)
    assert not decision.passed and "point estimates compared" in decision.reasons[0]


def test_every_metric_the_gate_names_must_be_reported():
    gates = GateConfig(
        max_hallucination_rate=0.1,
        max_metrics={"heldout/unparseable_rate": 0.5},
        max_regression_by_benchmark={"medqa": 0.01},
    )
    decision = evaluate_gate(gates, {"heldout/accuracy": 0.7}, None)
    assert not decision.passed
    assert {c.name for c in decision.checks if not c.passed} == {"hallucination", "max_metric", "regression"}
    assert any("hallucination_rate: not reported" in r for r in decision.reasons)
    assert any("heldout/unparseable_rate: not reported" in r for r in decision.reasons)
    assert any("medqa: no score reported" in r for r in decision.reasons)
    reported = {"heldout/accuracy": 0.7, "report_findings/hallucination_rate": 0.05, "heldout/unparseable_rate": 0.2, "medqa/accuracy": 0.5}
    assert evaluate_gate(gates, reported, None).passed


def test_a_benchmark_the_champion_reports_must_not_vanish():
    decision = evaluate_gate(GateConfig(), {"heldout/accuracy": 0.6}, {"heldout/accuracy": 0.6, "medqa/accuracy": 0.5})
    assert not decision.passed and "medqa: the champion reports a score, the candidate none" in decision.reasons[0]


def test_per_benchmark_override_and_score_key():
    gates = GateConfig(max_regression=0.5, max_regression_by_benchmark={"medqa": 0.01})
    candidate = {**CHAMPION, "medqa/score": 0.45}
    decision = evaluate_gate(gates, candidate, CHAMPION)
    assert not decision.passed and decision.reasons[0].startswith("medqa:")


def test_rare_tier_must_not_be_worse_and_hallucination_ceiling():
    gates = GateConfig(max_hallucination_rate=0.1)
    candidate = {**CHAMPION, "heldout/rare/accuracy": 0.39, "heldout/hallucination_rate": 0.2}
    decision = evaluate_gate(gates, candidate, CHAMPION)
    assert not decision.passed
    assert {c.name for c in decision.checks if not c.passed} == {"rare_not_worse", "hallucination"}
    relaxed = GateConfig(require_rare_not_worse=False)
    assert evaluate_gate(relaxed, candidate, CHAMPION).passed
    assert "no champion" not in evaluate_gate(relaxed, candidate, CHAMPION).reasons[0]


def test_rare_tier_reads_the_harness_score_key():
    champion = {"medqa/score": 0.5, "medqa/rare/score": 0.4}
    candidate = {"medqa/score": 0.5, "medqa/rare/score": 0.3, "medqa/rare/accuracy": 0.9}
    decision = evaluate_gate(GateConfig(), candidate, champion)
    assert not decision.passed and "rare-tier score 0.3000 < champion 0.4000" in decision.reasons[0]


def test_metric_key_helpers():
    assert benchmarks(CHAMPION) == ["heldout", "medqa"]
    assert main_score({"x/score": 0.2, "x/accuracy": 0.9}, "x") == 0.2
    assert main_score({}, "x") is None


def test_item_scores_come_from_the_evaluation_predictions(tmp_path):
    import pandas as pd

    from medfoundry.evaluation.runner import PREDICTIONS, load_item_scores

    for bench, ids, scores in (("heldout", ["a", "b"], [1.0, 0.0]), ("report_findings", ["r"], [float("nan")])):
        (tmp_path / bench).mkdir()
        pd.DataFrame({"benchmark": bench, "id": ids, "score": scores, "extra": 1}).to_parquet(tmp_path / bench / PREDICTIONS)
    assert load_item_scores(tmp_path) == {"heldout": {"a": 1.0, "b": 0.0}}  # NaN (no main score) is left out


@pytest.mark.parametrize("name", ["tiny", "small", "production-7b"])
def test_every_shipped_profiles_gate_refuses_a_first_model_that_fails_at_everything(name):
    """A gate that passes a model scoring 0 on every benchmark, with every answer unreadable and every report
    hallucinated, guards nothing (as `min_scores: {heldout: 0.0}` once did)."""
    from medfoundry.config import load_profile

    profile = load_profile(name)
    evaluated = ["heldout", *profile.eval.benchmarks]
    worst = {f"{bench}/score": 0.0 for bench in evaluated}
    worst |= {f"{bench}/unparseable_rate": 1.0 for bench in evaluated}
    worst |= {f"{bench}/hallucination_rate": 1.0 for bench in evaluated}
    decision = evaluate_gate(profile.gates, worst, None)
    assert not decision.passed, f"{name}: {decision.reasons}"
