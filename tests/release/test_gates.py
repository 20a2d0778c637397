"""The gate policy on plain metric dicts: minimums, regression with intervals, rare tier, hallucination ceiling."""

from __future__ import annotations

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


def test_drop_inside_the_candidate_interval_is_noise():
    gates = GateConfig(max_regression=0.02)
    candidate = {**CHAMPION, "heldout/accuracy": 0.55, "heldout/ci95_lo": 0.45, "heldout/ci95_hi": 0.66}
    assert evaluate_gate(gates, candidate, CHAMPION).passed


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


def test_rare_tier_reads_the_harness_score_key():
    champion = {"medqa/score": 0.5, "medqa/rare/score": 0.4}
    candidate = {"medqa/score": 0.5, "medqa/rare/score": 0.3, "medqa/rare/accuracy": 0.9}
    decision = evaluate_gate(GateConfig(), candidate, champion)
    assert not decision.passed and "rare-tier score 0.3000 < champion 0.4000" in decision.reasons[0]


def test_metric_key_helpers():
    assert benchmarks(CHAMPION) == ["heldout", "medqa"]
    assert main_score({"x/score": 0.2, "x/accuracy": 0.9}, "x") == 0.2
    assert main_score({}, "x") is None
