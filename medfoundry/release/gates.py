"""Promotion gates: compare a candidate's evaluation metrics with the policy and the current champion.

Metric keys follow the evaluation harness (flat dict, one namespace per benchmark):
    <benchmark>/score or <benchmark>/accuracy    the main score (0..1; "score" wins when both exist)
    <benchmark>/ci95_lo, <benchmark>/ci95_hi     bootstrap interval of the main score
    <benchmark>/rare/score or /rare/accuracy     the main score on the rare-entity tier
    <benchmark>/hallucination_rate               share of answers with unsupported claims
    <benchmark>/protocol_loglikelihood           1.0 when scored by log-likelihood, else generative (absent: generative)

Per-item scores ({benchmark: {item id: score}}, the evaluation's `item_scores.json`) make the regression check a
paired comparison over the items both models answered.

`evaluate_gate` is pure; `baseline` finds the version to compare against in the registry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from medfoundry.config.release import GateConfig

MAIN_SCORE_SUFFIXES = ("score", "accuracy")


@dataclass
class GateCheck:
    name: str  # min_score | max_metric | regression | protocol | rare_not_worse | hallucination
    benchmark: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str]
    checks: list[GateCheck] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons), "checks": [asdict(c) for c in self.checks]}


def benchmarks(metrics: dict[str, float]) -> list[str]:
    """Benchmark names that report a main score."""
    names = set()
    for key in metrics:
        head, _, tail = key.rpartition("/")
        if head and tail in MAIN_SCORE_SUFFIXES and not head.endswith("/rare"):
            names.add(head)
    return sorted(names)


def main_score(metrics: dict[str, float], benchmark: str) -> float | None:
    for suffix in MAIN_SCORE_SUFFIXES:
        value = metrics.get(f"{benchmark}/{suffix}")
        if value is not None:
            return float(value)
    return None


ItemScores = dict[str, dict[str, float]]  # benchmark -> item id -> main score of that item


def evaluate_gate(
    gates: GateConfig,
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    candidate_items: ItemScores | None = None,
    champion_items: ItemScores | None = None,
) -> GateDecision:
    """Apply the policy. With no champion only the absolute checks (minimums, ceilings) apply.

    Every metric the policy names must be reported: a missing one refuses with the reason, it never passes by
    default. Regression against the champion is judged on the paired difference over the items both models were
    scored on (`candidate_items`/`champion_items`, from the evaluation's per-item scores); without them only the
    point drop is compared, with no allowance for noise.
    """
    checks: list[GateCheck] = []
    for bench, minimum in sorted(gates.min_scores.items()):
        score = main_score(candidate, bench)
        if score is None:
            checks.append(GateCheck("min_score", bench, False, None, minimum, f"{bench}: no score reported"))
        else:
            ok = score >= minimum
            checks.append(
                GateCheck("min_score", bench, ok, score, minimum, f"{bench}: score {score:.4f} {'>=' if ok else '<'} minimum {minimum:.4f}")
            )
    for key, ceiling in sorted(gates.max_metrics.items()):
        bench = key.rsplit("/", 1)[0]
        value = candidate.get(key)
        if value is None:
            checks.append(GateCheck("max_metric", bench, False, None, ceiling, f"{key}: not reported"))
        else:
            ok = float(value) <= ceiling
            checks.append(
                GateCheck("max_metric", bench, ok, float(value), ceiling, f"{key}: {float(value):.4f} {'<=' if ok else '>'} ceiling {ceiling:.4f}")
            )

    if gates.max_hallucination_rate is not None:
        keys = sorted(k for k in candidate if k.endswith("/hallucination_rate"))
        if not keys:
            checks.append(
                GateCheck(
                    "hallucination", "*", False, None, gates.max_hallucination_rate,
                    "hallucination_rate: not reported (the gate has a ceiling; evaluate a report benchmark with an "
                    "entity linker)",
                )
            )
        for key in keys:
            bench = key.rsplit("/", 1)[0]
            rate = float(candidate[key])
            ok = rate <= gates.max_hallucination_rate
            checks.append(
                GateCheck(
                    "hallucination",
                    bench,
                    ok,
                    rate,
                    gates.max_hallucination_rate,
                    f"{bench}: hallucination rate {rate:.4f} {'<=' if ok else '>'} ceiling {gates.max_hallucination_rate:.4f}",
                )
            )

    for bench in sorted(set(gates.max_regression_by_benchmark) - set(gates.min_scores)):
        if main_score(candidate, bench) is None:
            checks.append(GateCheck("regression", bench, False, None, None, f"{bench}: no score reported"))

    if champion:
        for bench in sorted(set(benchmarks(candidate)) | set(benchmarks(champion))):
            checks.extend(_compare(gates, bench, candidate, champion, candidate_items or {}, champion_items or {}))

    failed = [c.detail for c in checks if not c.passed]
    if failed:
        return GateDecision(False, failed, checks)
    basis = "policy and champion" if champion else "policy (no champion yet)"
    return GateDecision(True, [f"all {len(checks)} checks passed against the {basis}"], checks)


def _compare(
    gates: GateConfig,
    bench: str,
    candidate: dict[str, float],
    champion: dict[str, float],
    candidate_items: ItemScores,
    champion_items: ItemScores,
) -> list[GateCheck]:
    from medfoundry.evaluation.loglikelihood import LOGLIKELIHOOD_FLAG

    checks = []
    new, old = main_score(candidate, bench), main_score(champion, bench)
    protocols = [
        "loglikelihood" if metrics.get(f"{bench}/{LOGLIKELIHOOD_FLAG}", 0.0) else "generative"
        for metrics in (candidate, champion)
    ]
    if new is not None and old is not None and protocols[0] != protocols[1]:
        detail = (
            f"{bench}: the candidate was scored with the {protocols[0]} protocol, the champion with {protocols[1]}; "
            "scores from different protocols are not comparable (re-evaluate the champion under this profile)"
        )
        return [GateCheck("protocol", bench, False, None, None, detail)]
    allowed = gates.max_regression_by_benchmark.get(bench, gates.max_regression)
    if new is None:
        checks.append(
            GateCheck("regression", bench, False, None, old, f"{bench}: the champion reports a score, the candidate none")
        )
    elif old is not None:
        checks.append(_regression(gates, bench, new, old, allowed, candidate_items.get(bench), champion_items.get(bench)))
    if gates.require_rare_not_worse and new is not None:
        new_rare, old_rare = main_score(candidate, f"{bench}/rare"), main_score(champion, f"{bench}/rare")
        if new_rare is not None and old_rare is not None:
            ok = new_rare >= old_rare
            checks.append(
                GateCheck(
                    "rare_not_worse",
                    bench,
                    ok,
                    new_rare,
                    old_rare,
                    f"{bench}: rare-tier score {new_rare:.4f} {'>=' if ok else '<'} champion {old_rare:.4f}",
                )
            )
    return checks


def _regression(
    gates: GateConfig,
    bench: str,
    new: float,
    old: float,
    allowed: float,
    new_items: dict[str, float] | None,
    old_items: dict[str, float] | None,
) -> GateCheck:
    """Paired bootstrap over shared items: the candidate may be worse by at most `allowed` at the interval's lower
    bound. With no shared items the point drop decides."""
    from medfoundry.evaluation.metrics import paired_delta_ci

    shared = sorted(set(new_items or {}) & set(old_items or {}))
    if shared:
        delta, (lo, hi) = paired_delta_ci(
            [old_items[i] for i in shared], [new_items[i] for i in shared],
            n_resamples=gates.bootstrap_samples, confidence=gates.confidence,
        )
        ok = lo >= -allowed
        detail = (
            f"{bench}: paired delta {delta:+.4f} over {len(shared)} shared items, "
            f"{gates.confidence:.0%} interval [{lo:+.4f}, {hi:+.4f}], allowed -{allowed:.4f}"
        )
        return GateCheck("regression", bench, ok, lo, -allowed, detail + ("" if ok else ": regression beyond policy"))
    drop = old - new
    ok = drop <= allowed
    detail = (
        f"{bench}: score {new:.4f} vs champion {old:.4f} (drop {drop:+.4f}, allowed {allowed:.4f}; "
        "no shared per-item scores, point estimates compared)"
    )
    return GateCheck("regression", bench, ok, new, old - allowed, detail + ("" if ok else ": regression beyond policy"))


def baseline(name: str, env: str, exclude_version: str | None = None):
    """The version a candidate is gated against: the `champion` (production) when there is one, else the version
    the target environment's alias points at; None when neither exists or it is `exclude_version` (a candidate is
    never gated against itself)."""
    from medfoundry.release.registry import CHAMPION, version_by_alias

    for alias in (CHAMPION, env):
        found = version_by_alias(name, alias)
        if found is not None:
            return None if found.version == str(exclude_version) else found
    return None
