"""Promotion gates: compare a candidate's evaluation metrics with the policy and the current champion.

Metric keys follow the evaluation harness (flat dict, one namespace per benchmark):
    <benchmark>/score or <benchmark>/accuracy    the main score (0..1; "score" wins when both exist)
    <benchmark>/ci95_lo, <benchmark>/ci95_hi     bootstrap interval of the main score
    <benchmark>/rare/score or /rare/accuracy     the main score on the rare-entity tier
    <benchmark>/hallucination_rate               share of answers with unsupported claims

`evaluate_gate` is pure; `champion_metrics` reads the registry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from medfoundry.config.release import GateConfig

MAIN_SCORE_SUFFIXES = ("score", "accuracy")


@dataclass
class GateCheck:
    name: str  # min_score | regression | rare_not_worse | hallucination
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


def evaluate_gate(gates: GateConfig, candidate: dict[str, float], champion: dict[str, float] | None) -> GateDecision:
    """Apply the policy. With no champion only the absolute checks (minimums, hallucination ceiling) apply."""
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

    if gates.max_hallucination_rate is not None:
        for key in sorted(k for k in candidate if k.endswith("/hallucination_rate")):
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

    if champion:
        for bench in benchmarks(candidate):
            checks.extend(_compare(gates, bench, candidate, champion))

    failed = [c.detail for c in checks if not c.passed]
    if failed:
        return GateDecision(False, failed, checks)
    basis = "policy and champion" if champion else "minimums (no champion yet)"
    return GateDecision(True, [f"all {len(checks)} checks passed against the {basis}"], checks)


def _compare(gates: GateConfig, bench: str, candidate: dict[str, float], champion: dict[str, float]) -> list[GateCheck]:
    checks = []
    new, old = main_score(candidate, bench), main_score(champion, bench)
    if new is not None and old is not None:
        allowed = gates.max_regression_by_benchmark.get(bench, gates.max_regression)
        drop = old - new
        hi = candidate.get(f"{bench}/ci95_hi")
        # A drop inside the candidate's own interval is sampling noise, not a regression.
        significant = hi is None or float(hi) < old
        ok = drop <= allowed or not significant
        interval = f", candidate ci95_hi {float(hi):.4f}" if hi is not None else ""
        checks.append(
            GateCheck(
                "regression",
                bench,
                ok,
                new,
                old - allowed,
                f"{bench}: score {new:.4f} vs champion {old:.4f} (drop {drop:+.4f}, allowed {allowed:.4f}{interval})"
                + ("" if ok else ": regression beyond policy"),
            )
        )
    if gates.require_rare_not_worse:
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


def champion_metrics(name: str, exclude_version: str | None = None) -> dict[str, float] | None:
    """Metrics of the registered model's current `champion` version; None when there is none, or when it is
    `exclude_version` (a candidate is never gated against itself)."""
    from medfoundry.release.registry import CHAMPION, version_by_alias

    champion = version_by_alias(name, CHAMPION)
    if champion is None or champion.version == str(exclude_version):
        return None
    return champion.metrics
