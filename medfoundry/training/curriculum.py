"""Curriculum as configuration: a stage's phases (profile `<stage>.curriculum`) become one sampler over the whole run
and a callback that switches the trainable modules and reports the phase at every step.

Each phase weights every example by its source (`mixture`), its rarity tier (`rarity`), curation's entity-aware
sample weight raised to `entity_temperature` (the weights come from Feast when curation published them), and gives
`replay_share` of its draws to general examples. Its `token_budget` becomes steps through the expected example length
under those weights, so the schedule is fixed before training starts and a resumed run draws the same batches.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers import TrainerCallback

from medfoundry.config.training import CurriculumPhase
from medfoundry.training.checkpoints import EpochSeededSampler

log = logging.getLogger("medfoundry.training")
PHASE_METRIC = "curriculum_phase"
TIERS = ("rare", "common", "general")


@dataclass
class PlannedPhase:
    phase: CurriculumPhase
    weights: list[float]
    steps: int
    first_step: int  # global step (1-based) of the phase's first update


def example_tier(entities: list[Any]) -> str:
    """A record's rarity tier from its linked entity mentions."""
    if not entities:
        return "general"
    return "rare" if any(getattr(m, "rare", False) for m in entities) else "common"


def _source_factor(source: str, mixture: dict[str, float]) -> float:
    matches = [key for key in mixture if key != "*" and source.startswith(key)]
    if matches:
        return mixture[max(matches, key=len)]
    return mixture.get("*", 1.0)


def phase_weights(examples: list[Any], phase: CurriculumPhase) -> list[float]:
    """Sampling weight of each encoded example in `phase` (they sum to 1)."""
    weights = [
        (ex.weight**phase.entity_temperature) * _source_factor(ex.source, phase.mixture) * phase.rarity.get(ex.tier, 1.0)
        for ex in examples
    ]
    if phase.replay_share is not None:
        general = [ex.tier == "general" for ex in examples]
        mass_general = sum(w for w, g in zip(weights, general, strict=True) if g)
        mass_other = sum(w for w, g in zip(weights, general, strict=True) if not g)
        if mass_general == 0 or mass_other == 0:
            log.warning("curriculum phase %r: replay_share needs both general examples (no linked medical entity) "
                        "and medical ones; this dataset has %s only, so it is drawn as weighted", phase.name,
                        "medical" if mass_general == 0 else "general")
        else:
            weights = [
                w * (phase.replay_share / mass_general if g else (1 - phase.replay_share) / mass_other)
                for w, g in zip(weights, general, strict=True)
            ]
    total = sum(weights)
    if total <= 0:
        raise ValueError(f"curriculum phase {phase.name!r} gives every example weight 0")
    return [w / total for w in weights]


def plan(examples: list[Any], phases: list[CurriculumPhase], examples_per_step: int) -> list[PlannedPhase]:
    """Weights and steps of each phase: steps = token budget / expected tokens per step under its weights."""
    planned, step = [], 1
    for phase in phases:
        weights = phase_weights(examples, phase)
        expected = sum(w * len(ex.input_ids) for w, ex in zip(weights, examples, strict=True))
        steps = max(1, math.ceil(phase.token_budget / (expected * examples_per_step)))
        planned.append(PlannedPhase(phase, weights, steps, step))
        step += steps
    return planned


class CurriculumSampler(EpochSeededSampler):
    """The whole run's draws: each phase's share of examples, drawn with replacement by its weights, seeded by
    (seed, phase) so a resumed run gets the same sequence."""

    def __init__(self, planned: list[PlannedPhase], examples_per_step: int, seed: int):
        self.planned, self.examples_per_step, self.seed, self.epoch = planned, examples_per_step, seed, 0

    def __len__(self) -> int:
        return sum(p.steps for p in self.planned) * self.examples_per_step

    def __iter__(self):
        draws: list[int] = []
        for index, p in enumerate(self.planned):
            generator = torch.Generator().manual_seed(self.seed * 100_003 + 1_000 * self.epoch + index)
            weights = torch.as_tensor(p.weights, dtype=torch.double)
            draws += torch.multinomial(weights, p.steps * self.examples_per_step, True, generator=generator).tolist()
        return iter(draws)


def vision_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The vision tower's parameters (Qwen-VL `visual`, LLaVA/Idefics `vision_tower`/`vision_model`)."""
    names = ("visual.", "vision_tower.", "vision_model.")
    return [p for n, p in model.named_parameters() if any(f".{k}" in f".{n}" for k in names)]


class CurriculumCallback(TrainerCallback):
    """Before each step: freezes/unfreezes the phase's modules and sets the phase metric that LiveMetricsCallback
    streams; at the start: logs the phases as run params."""

    def __init__(self, planned: list[PlannedPhase], model: torch.nn.Module, live: Any):
        self.planned, self.model, self.live = planned, model, live
        self.vision = vision_parameters(model)
        self.current = -1

    def phase_at(self, step: int) -> int:
        """Index of the phase that trains global step `step` (1-based)."""
        return max(i for i, p in enumerate(self.planned) if p.first_step <= step)

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        import mlflow

        if mlflow.active_run() is None:
            return
        params: dict[str, Any] = {}
        for i, p in enumerate(self.planned):
            prefix = f"curriculum.{i}"
            params.update({
                f"{prefix}.name": p.phase.name, f"{prefix}.steps": p.steps, f"{prefix}.first_step": p.first_step,
                f"{prefix}.token_budget": p.phase.token_budget, f"{prefix}.mixture": p.phase.mixture,
                f"{prefix}.rarity": p.phase.rarity, f"{prefix}.entity_temperature": p.phase.entity_temperature,
                f"{prefix}.replay_share": p.phase.replay_share, f"{prefix}.freeze": p.phase.freeze,
            })
        existing = mlflow.get_run(mlflow.active_run().info.run_id).data.params
        mlflow.log_params({k: v for k, v in params.items() if k not in existing})  # a resumed run logged them

    def on_step_begin(self, args, state, control, **kwargs):
        index = self.phase_at(state.global_step + 1)
        if index == self.current:
            return
        self.current = index
        frozen = "vision" in self.planned[index].phase.freeze
        for param in self.vision:
            param.requires_grad_(not frozen)
            if frozen:
                param.grad = None
        self.live.extra[PHASE_METRIC] = float(index)
