"""Profile section for the evaluate stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medfoundry.config.sections import Section


class EvalConfig(Section):
    # Benchmarks run by the evaluate stage besides the recipe's own held-out split. Data for them is found under
    # `data_dir` in upstream formats (see ../shared/data); missing data skips a benchmark with a logged reason.
    benchmarks: list[str] = Field(default_factory=list)
    data_dir: str | None = None
    limit: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(16, ge=1)
    prompt_mode: Literal["plain", "reasoning"] = "plain"
    # generative: our prompts, generated answers read by the extractors (MedEvalKit-style rules);
    # loglikelihood: options scored by log-likelihood exactly as lm-evaluation-harness 0.4.13 (leaderboard numbers).
    protocol: Literal["generative", "loglikelihood"] = "generative"
    bootstrap_samples: int = Field(1000, ge=10)
    seed: int = 0
    # Medical Entity Tree for rarity tiers and report entity metrics: "auto" (the workspace's cached tree for the
    # curation section's ontology inputs, the one the curate stage built), a saved tree folder, or "none".
    entity_tree: str = "auto"
