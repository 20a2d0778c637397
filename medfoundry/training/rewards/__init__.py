"""Reward functions for GRPO, one module each (verl style), in a registry the profile's `rl.rewards` names.

    exact_match          verifiable: the answer satisfies the gold under its answer-type rule (rules.py)
    format               <think>...</think><answer>...</answer> structure
    rubric               weighted share of the item's rubric satisfied (rules, or an OpenAI-compatible judge)
    evidence_grounding   share of the answer's linked medical entities supported by the item's evidence or the
                         entity tree's relations
    safety               1.0 safe / 0.0 unsafe; with `safety_gate` it also zeros every other reward of an unsafe answer
    tool_use             successful tool calls, the expected tool called, and its result used in the final answer

Layering: rule rewards (exact_match, format) -> rubric -> evidence grounding, each weighted by the profile, all
behind the safety gate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medfoundry.training.rewards.evidence_grounding import EvidenceGrounding
from medfoundry.training.rewards.exact_match import exact_match
from medfoundry.training.rewards.format import format_reward
from medfoundry.training.rewards.grounding_index import GroundingIndex
from medfoundry.training.rewards.rubric import Rubric, RubricJudge, rubric
from medfoundry.training.rewards.safety import is_safe, safety
from medfoundry.training.rewards.tool_use import tool_use

RewardFn = Callable[..., list]


@dataclass
class RewardResources:
    """What some rewards need besides the dataset columns: the entity index (evidence_grounding) and a judge."""

    grounding: GroundingIndex | None = None
    judge: RubricJudge | None = None


def _grounding(resources: RewardResources) -> RewardFn:
    if resources.grounding is None:
        raise ValueError("rl.rewards: evidence_grounding needs the medical entity tree (RewardResources.grounding)")
    return EvidenceGrounding(resources.grounding)


REWARDS: dict[str, Callable[[RewardResources], RewardFn]] = {
    "exact_match": lambda _: exact_match,
    "format": lambda _: format_reward,
    "rubric": lambda r: Rubric(r.judge) if r.judge else rubric,
    "evidence_grounding": _grounding,
    "safety": lambda _: safety,
    "tool_use": lambda _: tool_use,
}


def safety_gated(fn: RewardFn) -> RewardFn:
    """`fn` with every score of an unsafe completion set to 0.0 (None, not applicable, stays None)."""

    def gated(completions: list[Any], **kwargs: Any) -> list:
        values = fn(completions, **kwargs)
        return [v if v is None or is_safe(c) else 0.0 for c, v in zip(completions, values, strict=True)]

    gated.__name__ = fn.__name__
    return gated


def reward_mixture(
    weights: dict[str, float], resources: RewardResources | None = None, safety_gate: bool = False
) -> tuple[list[RewardFn], list[float]]:
    """Reward functions and their weights (GRPOConfig.reward_weights) from a profile's `rl.rewards`.

    With `safety_gate`, every reward is gated by the safety rules, and `safety` is always among the functions (with
    weight 0 when the profile gives it none) so its rate is logged."""
    unknown = sorted(set(weights) - set(REWARDS))
    if unknown:
        raise ValueError(f"rl.rewards: unknown reward(s) {', '.join(unknown)}; known: {', '.join(sorted(REWARDS))}")
    active = {name: w for name, w in weights.items() if w != 0}
    if not active:
        raise ValueError("rl.rewards: every weight is 0; give at least one reward a non-zero weight")
    if safety_gate:
        active.setdefault("safety", 0.0)
    resources = resources or RewardResources()
    funcs = [REWARDS[name](resources) for name in active]
    if safety_gate:
        funcs = [fn if fn is safety else safety_gated(fn) for fn in funcs]
    return funcs, [float(w) for w in active.values()]


def score(
    weights: dict[str, float],
    completions: list,
    resources: RewardResources | None = None,
    safety_gate: bool = False,
    **columns,
) -> list[float]:
    """The weighted reward per completion as GRPO sums it (not-applicable rewards count as 0)."""
    funcs, ws = reward_mixture(weights, resources, safety_gate)
    totals = [0.0] * len(completions)
    for fn, w in zip(funcs, ws, strict=True):
        for i, value in enumerate(fn(completions, **columns)):
            totals[i] += w * (value or 0.0)
    return totals
