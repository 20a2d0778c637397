"""RL with GRPO (TRL's GRPOTrainer) on held-back QA items, with the profile's reward mixture.

Prompts: the RL half of the holdout (`medfoundry.training.qa.is_rl_holdout`: split "holdout" and
meta["holdout_use"] == "rl" when set, otherwise the sha256 of "rl:<id>" with an even first byte), rendered with
evaluation's reasoning template. The other half of the holdout is left for evaluation. Prompts are text-only: the
record's image is not passed to GRPO (TRL 1.16's multimodal GRPO path is not used here), so image questions are
asked from their text. With `rl.tools` the policy may call lookup tools (`medfoundry.training.tools`) during
rollouts; the chat template must support tool calls (the tiny models' Qwen3-VL template does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medfoundry.config import Profile
from medfoundry.data.records import Record, read_records
from medfoundry.models.loading import load_model
from medfoundry.training.checkpoints import (
    checkpoint_arguments,
    checkpoint_step,
    prepare_resume,
    with_exact_resume,
)
from medfoundry.training.common import TRAINER_DIR, deepspeed_stage, finish, resume_settings
from medfoundry.training.live import LiveMetricsCallback
from medfoundry.training.qa import is_qa, is_rl_holdout, qa_messages
from medfoundry.training.rewards import reward_mixture
from medfoundry.training.tools import resolve_tools


def rl_row(record: Record) -> dict[str, Any]:
    """One GRPO dataset row: the conversational prompt plus the columns the rewards read."""
    rubric = record.meta.get("rubric")
    return {
        "prompt": qa_messages(record, reasoning=True),
        "answer": record.answer or "",
        "options": json.dumps(record.options) if record.options else "",
        "question": record.question or "",
        "context": record.text or "",
        "rubric": json.dumps(rubric) if rubric else "",
        "id": record.id,
    }


def rl_rows(dataset_dir: Path) -> list[dict[str, Any]]:
    return [rl_row(r) for r in read_records(dataset_dir) if is_qa(r) and is_rl_holdout(r)]


def grpo_config(profile: Profile, out_dir: Path, num_prompts: int):
    import torch
    from trl import GRPOConfig

    from medfoundry.training.deepspeed import build_deepspeed_config, prepare_cpu_deepspeed

    cfg = profile.rl
    _, weights = reward_mixture(cfg.rewards)
    on_gpu = torch.cuda.is_available()
    zero_stage = deepspeed_stage(cfg, profile.cluster.deepspeed_stage)
    if zero_stage:
        prepare_cpu_deepspeed()
    return GRPOConfig(
        output_dir=str(Path(out_dir) / TRAINER_DIR),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,
        beta=cfg.beta,
        loss_type=cfg.loss_type,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        reward_weights=weights,
        seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        **checkpoint_arguments(cfg),
        report_to="none",
        use_cpu=not on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        gradient_checkpointing=False,
        disable_tqdm=True,
        deepspeed=build_deepspeed_config(zero_stage) if zero_stage else None,
        shuffle_dataset=num_prompts > 1,
        max_tool_calling_iterations=cfg.max_tool_calling_iterations,
    )


def run_grpo(profile: Profile, dataset_dir: Path, model_dir: str | Path, out_dir: Path) -> dict[str, Any]:
    """GRPO steps on the RL holdout; save the policy to `out_dir`; return metrics (mean_reward, reward_first/last,
    per-reward means, steps, prompts)."""
    from datasets import Dataset
    from trl import GRPOTrainer

    cfg = profile.rl
    rows = rl_rows(Path(dataset_dir))
    if not rows:
        raise ValueError(f"{dataset_dir}: no held-back QA records for RL (split 'holdout', RL half)")
    reward_funcs, _ = reward_mixture(cfg.rewards)
    tools = resolve_tools(cfg.tools) if cfg.tools else None
    loaded = load_model(model_dir, profile.model)
    loaded.model.train()
    peft_config = None
    if cfg.use_lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    settings = {"stage": cfg.model_dump(), **resume_settings(dataset_dir, model_dir)}
    resume = prepare_resume(Path(out_dir) / TRAINER_DIR, settings)
    trainer = with_exact_resume(GRPOTrainer)(
        callbacks=[LiveMetricsCallback()],
        model=loaded.model,
        reward_funcs=reward_funcs,
        args=grpo_config(profile, Path(out_dir), len(rows)),
        train_dataset=Dataset.from_list(rows),
        processing_class=loaded.processing_class,
        peft_config=peft_config,
        tools=tools,
    )
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    model = trainer.model
    loaded.model = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    history = [row for row in trainer.state.log_history if "reward" in row]
    rewards = [(int(row["step"]), float(row["reward"])) for row in history]
    curves: dict[str, list] = {"reward": rewards}
    metrics: dict[str, Any] = {
        "steps": int(trainer.state.global_step),
        "prompts": len(rows),
        "mean_reward": sum(r for _, r in rewards) / len(rewards) if rewards else float("nan"),
        "reward_first": rewards[0][1] if rewards else float("nan"),
        "reward_last": rewards[-1][1] if rewards else float("nan"),
        "train_runtime_s": float(result.metrics.get("train_runtime", 0.0)),
        "resumed_from_step": checkpoint_step(resume),
    }
    for fn in reward_funcs:
        key = f"rewards/{fn.__name__}/mean"
        values = [(int(row["step"]), float(row[key])) for row in history if row.get(key) is not None]
        if values:
            curves[f"reward_{fn.__name__}"] = values
            metrics[f"reward_{fn.__name__}_mean"] = sum(v for _, v in values) / len(values)
    calls = [float(row["tools/call_frequency"]) for row in history if "tools/call_frequency" in row]
    if calls:
        metrics["tool_calls_per_completion"] = sum(calls) / len(calls)
    lengths = [float(row["completions/mean_length"]) for row in history if "completions/mean_length" in row]
    if lengths:
        metrics["completion_mean_length"] = sum(lengths) / len(lengths)
    return finish(loaded, Path(out_dir), metrics, curves, trainer)
