"""Profile section for the evaluate stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

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
    # Per-benchmark override of `protocol` (e.g. loglikelihood for the multiple-choice benchmarks, generative for the
    # open ones). Each benchmark's results record the protocol it was scored with; the gate refuses to compare a
    # candidate with a champion scored under another protocol.
    protocols: dict[str, Literal["generative", "loglikelihood"]] = Field(default_factory=dict)
    bootstrap_samples: int = Field(1000, ge=10)
    seed: int = 0
    # Medical Entity Tree for rarity tiers and report entity metrics: "auto" (the workspace's cached tree for the
    # curation section's ontology inputs, the one the curate stage built), a saved tree folder, or "none".
    entity_tree: str = "auto"

    @model_validator(mode="after")
    def _protocols_name_known_benchmarks(self) -> EvalConfig:
        # A misspelled benchmark in `protocols` would silently leave it on the default protocol. Naming a known
        # benchmark this run does not evaluate is fine (`--set eval.benchmarks=[medqa]` keeps the profile's map).
        if not self.protocols:
            return self
        from medfoundry.evaluation.benchmarks import BENCHMARKS

        unknown = sorted(set(self.protocols) - set(BENCHMARKS))
        if unknown:
            raise ValueError(
                f"eval.protocols names {', '.join(unknown)}, which is no benchmark "
                f"(known: {', '.join(sorted(BENCHMARKS))})"
            )
        return self
