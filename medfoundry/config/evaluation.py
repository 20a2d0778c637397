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
    bootstrap_samples: int = Field(1000, ge=10)
    seed: int = 0
