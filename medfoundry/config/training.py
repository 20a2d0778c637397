"""Profile sections for the training stages: continual pretraining, SFT, RL (GRPO), agentic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medfoundry.config.sections import Section


class CurriculumPhase(Section):
    """One phase of a stage's curriculum: what it draws, how much, and which modules learn."""

    name: str
    # Non-padding tokens this phase trains on; turned into steps from the phase's expected example length.
    token_budget: int = Field(..., ge=1)
    # Weight multiplier per record source prefix (e.g. "hpo", "medquad"); "*" for the rest (default 1).
    mixture: dict[str, float] = Field(default_factory=dict)
    # Weight multiplier per rarity tier of the record: "rare" (mentions a rare disease), "common" (mentions other
    # entities), "general" (no linked medical entity).
    rarity: dict[str, float] = Field(default_factory=dict)
    # Curation's entity-aware sample weight (from Feast when published) raised to this power: 0 ignores it, 1 uses it
    # as is, >1 sharpens it toward rare entities.
    entity_temperature: float = Field(1.0, ge=0)
    # Share of draws given to general examples (no linked medical entity) as replay; None: as weighted.
    replay_share: float | None = Field(None, ge=0, le=1)
    # Modules that do not learn in this phase ("vision": the vision tower).
    freeze: list[Literal["vision"]] = Field(default_factory=list)


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
    # Fault tolerance: an HF Trainer checkpoint every `checkpoint_every` steps (0: none), the last `checkpoint_keep`
    # kept; a restarted stage resumes from the newest complete one.
    checkpoint_every: int = Field(20, ge=0)
    checkpoint_keep: int = Field(2, ge=1)
    # Padding-free packing: each batch's examples end to end in one row, attention and loss kept within each example
    # (position ids restart per example). Same loss as the padded path, without computing on padding.
    packing: bool = False
    # Recompute activations in the backward pass instead of keeping them (large models; slower steps).
    gradient_checkpointing: bool = False
    # Curriculum: phases in order; when set, the stage trains their summed steps (max_steps is not used).
    curriculum: list[CurriculumPhase] = Field(default_factory=list)
    # Steps between logged points (loss, lr, grad norm, tokens/s), streamed to MLflow while training.
    logging_steps: int = Field(1, ge=1)


class PretrainConfig(TrainStageConfig):
    pass


class TeacherConfig(Section):
    """An OpenAI-compatible chat endpoint that writes SFT reasoning traces (our own served model included)."""

    base_url: str  # e.g. http://medfoundry-predictor/openai/v1
    model: str
    api_key_env: str = "OPENAI_API_KEY"  # the variable holding the key (never the key itself)
    max_tokens: int = Field(512, ge=16)
    temperature: float = Field(0.0, ge=0)
    timeout_s: float = Field(60.0, gt=0)


class SFTConfigSection(TrainStageConfig):
    # Targets are "<think>...</think><answer>...</answer>": `structured` fills <think> with verified four-part traces
    # (understanding, recall, reasoning, conclusion; medfoundry.training.reasoning), `think_answer` with the record's
    # own rationale, `plain` is the bare answer.
    reasoning_format: Literal["structured", "think_answer", "plain"] = "think_answer"
    # Teacher for structured traces; without one, fact-based templates (the run says so).
    teacher: TeacherConfig | None = None


class RLPhase(Section):
    """One RL phase: RFT (rejection-sampling fine-tuning on the policy's own correct, safe samples), tool-use SFT
    (`tool_sft`: fine-tuning on reference tool traces for `rl.sft_tool_tasks` tasks, with the SFT section's learning
    rate and batch size, so the policy knows the call format before GRPO; its pool is not used) or GRPO on a pool.

    Pools (medfoundry.training.grpo.POOLS): all; banded (pass rate in `prompt_pool.pass_rate_band`, plus tool-use
    and multi-turn items); closed (answers with a closed form: option, yes/no, number, set, regex); red_flag
    (questions with a red-flag symptom or a dose); rare (items naming a rare entity); image (items with an image);
    tools (items that expect a tool call)."""

    name: str
    kind: Literal["rft", "tool_sft", "grpo"] = "grpo"
    pool: Literal["all", "banded", "closed", "red_flag", "rare", "image", "tools"] = "all"
    max_steps: int = Field(2, ge=1)
    # GRPO reward mixture for this phase (name -> weight); empty: the section's `rewards`.
    rewards: dict[str, float] = Field(default_factory=dict)
    # Completion budget of this phase's rollouts (tool calls, results and the answer after them); None: the section's.
    max_completion_length: int | None = Field(None, ge=1)
    # Sampling temperature of this phase's rollouts; None: the section's.
    temperature: float | None = Field(None, gt=0)


class PromptPoolConfig(Section):
    """Build 1: sample `samples_per_prompt` answers per candidate prompt from the current policy and keep prompts
    whose pass rate lies in `pass_rate_band` (inclusive), plus tool-use and multi-turn items."""

    enabled: bool = False
    samples_per_prompt: int = Field(4, ge=1)
    pass_rate_band: tuple[float, float] = (0.6, 0.8)
    max_candidates: int | None = Field(None, ge=1)
    max_new_tokens: int = Field(32, ge=1)
    temperature: float = Field(1.0, gt=0)


class JudgeConfig(Section):
    """An OpenAI-compatible chat endpoint that scores rubric items instead of the keyword rules."""

    endpoint: str
    model: str


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
    # True: the tools are offered in every GRPO phase (the policy decides when to call one); False: only in phases
    # whose pool is `tools`, which keeps the tool schemas out of the other phases' prompts (memory and time on CPU).
    tools_in_every_phase: bool = True
    # Tool-requiring tasks (medfoundry.training.agentic) added to the RL rows; 0: none.
    agentic_tasks: int = Field(0, ge=0)
    # Candidate tool tasks (other patients than RL's) whose reference traces (call turn, answer turn) a `tool_sft`
    # phase trains on; 0: none.
    sft_tool_tasks: int = Field(0, ge=0)
    # An unsafe answer (medfoundry.training.rewards.safety) gets 0 for every reward.
    safety_gate: bool = True
    judge: JudgeConfig | None = None
    # RFT -> foundation -> specialization -> alignment; empty: one GRPO phase on all rows with `rewards`/`max_steps`.
    phases: list[RLPhase] = Field(default_factory=list)
    prompt_pool: PromptPoolConfig = Field(default_factory=PromptPoolConfig)
    # Image rows keep their image (TRL's "image" column) so the vision tower is trained too.
    images: bool = True
    # batch_size is prompts (groups) per step; each group has num_generations completions.
    # Clip-higher (DAPO): the upper PPO clip bound; None: symmetric with epsilon.
    epsilon_high: float | None = Field(None, gt=0)
    # Entropy bonus that switches on when the mean token entropy falls to this value (TRL adaptive entropy
    # control); None: no bonus.
    entropy_target: float | None = Field(None, gt=0)
    # TRL's vLLM generation (GPU only); unmeasured in this project (no GPU was lent).
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
