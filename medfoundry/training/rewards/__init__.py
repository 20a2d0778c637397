"""Reward functions for GRPO, one module each (verl style), in a registry the profile's `rl.rewards` names.

    exact_match          verifiable: extracted answer == gold (evaluation's extractors)
    format               <think>...</think><answer>...</answer> structure
    rubric               weighted rubric items found in the completion
    evidence_grounding   share of the answer's medical terms found in the context/evidence
    safety               dangerous-advice patterns and unhedged high-risk answers
    tool_use             share of successful tool calls in the decision trace (GRPO with `rl.tools`)
"""

from __future__ import annotations

from collections.abc import Callable

from medfoundry.training.rewards.evidence_grounding import evidence_grounding
from medfoundry.training.rewards.exact_match import exact_match
from medfoundry.training.rewards.format import format_reward
from medfoundry.training.rewards.rubric import rubric
from medfoundry.training.rewards.safety import safety
from medfoundry.training.rewards.tool_use import tool_use

RewardFn = Callable[..., list]
REWARDS: dict[str, RewardFn] = {
    "exact_match": exact_match,
    "format": format_reward,
    "rubric": rubric,
    "evidence_grounding": evidence_grounding,
    "safety": safety,
    "tool_use": tool_use,
}


def reward_mixture(weights: dict[str, float]) -> tuple[list[RewardFn], list[float]]:
    """Reward functions and their weights (GRPOConfig.reward_weights) from a profile's `rl.rewards`."""
    unknown = sorted(set(weights) - set(REWARDS))
    if unknown:
        raise ValueError(f"rl.rewards: unknown reward(s) {', '.join(unknown)}; known: {', '.join(sorted(REWARDS))}")
    active = {name: w for name, w in weights.items() if w != 0}
    if not active:
        raise ValueError("rl.rewards: every weight is 0; give at least one reward a non-zero weight")
    return [REWARDS[name] for name in active], [float(w) for w in active.values()]


def score(weights: dict[str, float], completions: list, **columns) -> list[float]:
    """The weighted reward per completion as GRPO sums it (not-applicable rewards count as 0)."""
    funcs, ws = reward_mixture(weights)
    totals = [0.0] * len(completions)
    for fn, w in zip(funcs, ws, strict=True):
        for i, value in enumerate(fn(completions, **columns)):
            totals[i] += w * (value or 0.0)
    return totals
