"""Profile sections for registration, promotion gates, GitOps and serving."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medfoundry.config.sections import Section


class GateConfig(Section):
    # Minimum main score per benchmark name ("heldout" is the recipe's own held-out split).
    min_scores: dict[str, float] = Field(default_factory=dict)
    # Largest allowed drop versus the current champion, per benchmark (absolute score points, 0..1).
    max_regression: float = Field(0.02, ge=0.0, le=1.0)
    require_rare_not_worse: bool = True
    max_hallucination_rate: float | None = Field(None, ge=0.0, le=1.0)


class GitOpsConfig(Section):
    # Empty: a local git repository under the workspace (created on first promotion).
    repo: str = ""
    remote: str | None = None
    branch: str = "main"
    environment: Literal["dev", "staging", "prod"] = "dev"


class ServingConfig(Section):
    max_batch_size: int = Field(8, ge=1)
    batch_timeout_ms: int = Field(10, ge=0)
    max_queue: int = Field(64, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
