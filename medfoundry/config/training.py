"""Profile sections for the training stages: continual pretraining, SFT, RL (GRPO), agentic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medfoundry.config.sections import Section


class TrainStageConfig(Section):
    enabled: bool = True
    max_steps: int = Field(4, ge=1)
    batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(5e-4, gt=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    max_length: int = Field(256, ge=16)
    seed: int = 0
    use_lora: bool = False
    deepspeed_stage: Literal[0, 1, 2, 3] = 0


class PretrainConfig(TrainStageConfig):
    pass


class SFTConfigSection(TrainStageConfig):
    # Structured reasoning: targets are "<think>...</think><answer>...</answer>".
    reasoning_format: Literal["think_answer", "plain"] = "think_answer"


class RLConfig(TrainStageConfig):
    learning_rate: float = Field(1e-5, gt=0)
    num_generations: int = Field(4, ge=2)
    max_completion_length: int = Field(16, ge=1)
    beta: float = Field(0.0, ge=0)
    loss_type: str = "grpo"
    temperature: float = Field(1.0, gt=0)
    # Reward mixture: name -> weight. Names are registered in medfoundry.training.rewards.
    rewards: dict[str, float] = Field(default_factory=lambda: {"exact_match": 1.0, "format": 0.2})
    # Tools the policy may call during rollouts (names in medfoundry.training.tools.TOOLS); empty: no tool calling.
    tools: list[str] = Field(default_factory=list)
    max_tool_calling_iterations: int = Field(2, ge=1)
