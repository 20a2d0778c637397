"""RL on held-back QA items: optional prompt pool by pass rate, then the profile's phases (RFT, then GRPO phases with
TRL's GRPOTrainer), each with its own pool and reward mixture behind the safety gate.

Prompts: the RL half of the holdout (`medfoundry.training.qa.is_rl_holdout`), rendered with evaluation's reasoning
template. Each row carries the columns the rewards read: the gold answer and its rule type (`answer_type`,
`tolerance`), options, context, a rubric (the record's own `meta["rubric"]`, else built from the entity tree by
`medfoundry.training.rubrics`), and `expected_tool` for tool tasks. Image items keep their image in TRL's `image`
column (`rl.images`), so rollouts and the policy update see pixels and the vision tower is trained.

GRPO settings from the profile: `batch_size` groups (prompts) per step of `num_generations` completions each,
`beta` (KL to the reference policy, logged as kl), clip-higher (`epsilon_high`) and an entropy bonus that switches on
when the mean token entropy falls to `entropy_target` (TRL adaptive entropy control). Logged per phase: every reward
component, reward and its spread, zero-variance groups (groups whose completions all got the same reward: no
gradient), KL, entropy, clip ratios, tool-call frequency.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from medfoundry.config import Profile
from medfoundry.config.training import RLConfig, RLPhase
from medfoundry.data.records import Record, read_records
from medfoundry.models.loading import LoadedModel, load_model
from medfoundry.training.checkpoints import (
    checkpoint_arguments,
    checkpoint_step,
    prepare_resume,
    with_exact_resume,
)
from medfoundry.training.common import TRAINER_DIR, deepspeed_stage, finish
from medfoundry.training.live import LiveMetricsCallback
from medfoundry.training.qa import is_qa, is_rl_holdout, qa_messages, record_image
from medfoundry.training.rewards import RewardResources, reward_mixture
from medfoundry.training.rewards.grounding_index import GroundingIndex
from medfoundry.training.rewards.rubric import RubricJudge
from medfoundry.training.rewards.rules import infer_answer_type
from medfoundry.training.rubrics import STATIC_RUBRICS, build_rubric
from medfoundry.training.tools import TOOLS, resolve_tools

log = logging.getLogger("medfoundry.training")
CLOSED_TYPES = {"option", "yes_no", "number", "set", "regex"}
# Metrics TRL logs per step that the stage reports as per-phase means.
LOGGED = {"loss": "loss", "kl": "kl", "entropy": "entropy", "clip_ratio/high_mean": "clip_high", "clip_ratio/low_mean": "clip_low",
          "entropy_coef": "entropy_coef", "reward_std": "reward_std", "completions/mean_length": "completion_length",
          "tools/call_frequency": "tool_calls_per_completion"}


def rl_row(record: Record, dataset_dir: Path | None = None, grounding: GroundingIndex | None = None,
           images: bool = True) -> dict[str, Any]:
    """One GRPO dataset row: the conversational prompt plus the columns the rewards read."""
    rubric = record.meta.get("rubric") or build_rubric(record, grounding)
    answer = record.answer or ""
    image_path = record_image(record, dataset_dir) if images and dataset_dir is not None else None
    row = {
        "prompt": record.meta.get("messages") or qa_messages(record, reasoning=True),
        "answer": answer,
        "answer_type": record.meta.get("answer_type") or infer_answer_type(answer, record.options),
        "tolerance": str(record.meta.get("tolerance", "")),
        "options": json.dumps(record.options) if record.options else "",
        "question": record.question or "",
        "context": record.text or "",
        "rubric": json.dumps(rubric) if rubric else "",
        "expected_tool": record.meta.get("expected_tool", ""),
        "rare": any(m.rare for m in record.entities),
        "id": record.id,
    }
    if image_path is not None:
        from PIL import Image

        with Image.open(image_path) as image:
            row["image"] = image.convert("RGB")
        row["image_path"] = str(image_path)
    return row


IMAGE_TOOLS = {"image_crop", "image_zoom", "image_rotate"}


def with_image_path_in_prompt(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its image's path named in the last user turn, so the policy can pass it to the image tools."""
    if not row.get("image_path"):
        return row
    prompt = [dict(m) for m in row["prompt"]]
    last = max(i for i, m in enumerate(prompt) if m["role"] == "user")
    prompt[last]["content"] = f"{prompt[last]['content']}\n(Image file for the image tools: {row['image_path']})"
    return {**row, "prompt": prompt}


def rl_rows(dataset_dir: Path, grounding: GroundingIndex | None = None, images: bool = True) -> list[dict[str, Any]]:
    return [rl_row(r, dataset_dir, grounding, images) for r in read_records(dataset_dir) if is_qa(r) and is_rl_holdout(r)]


def rubric_coverage(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How many RL rows have a non-empty rubric, and the share whose rubric has more than the gold answer (a fact
    from the entity tree or a static domain rubric)."""
    rubrics = [json.loads(r["rubric"]) if r["rubric"] else [] for r in rows]
    with_fact = sum(1 for rubric in rubrics if any(item["source"] != "gold" for item in rubric))
    return {"rows_with_rubric": sum(1 for rubric in rubrics if rubric),
            "rubric_coverage": sum(1 for rubric in rubrics if rubric) / len(rows),
            "rubric_coverage_beyond_gold": with_fact / len(rows)}


POOLS = {
    "all": lambda row: True,
    "banded": lambda row: "pass_rate" in row,
    "closed": lambda row: row["answer_type"] in CLOSED_TYPES,
    "red_flag": lambda row: any(pattern.search(row["question"]) for pattern, _ in STATIC_RUBRICS),
    "rare": lambda row: row["rare"],
    "image": lambda row: row.get("image") is not None,
    "tools": lambda row: bool(row["expected_tool"]),
}


def phases(cfg: RLConfig) -> list[RLPhase]:
    return cfg.phases or [RLPhase(name="rl", kind="grpo", pool="all", max_steps=cfg.max_steps, rewards=cfg.rewards)]


def _needs_grounding(cfg: RLConfig) -> bool:
    return any("evidence_grounding" in (p.rewards or cfg.rewards) for p in phases(cfg))


def grounding_index(profile: Profile) -> GroundingIndex:
    """The entity tree the curate stage built (the workspace's cache for the curation section's ontology inputs)."""
    from medfoundry.entities.linker import Linker
    from medfoundry.entities.tree import load_or_build_tree
    from medfoundry.workspace import Workspace

    cur = profile.curation
    tree, folder = load_or_build_tree(
        Path(cur.ontology_dir) if cur.ontology_dir else None,
        cur.max_nodes_per_source,
        cache_dir=Workspace.resolve(profile.workspace).cache / "entity_tree",
    )
    try:
        linker = Linker.cached(tree, folder)
    except OSError:  # a read-only tree folder
        linker = Linker.from_tree(tree)
    return GroundingIndex(linker, tree)


def phase_checkpoint_dir(out_dir: Path, phase: RLPhase) -> Path:
    return Path(out_dir) / TRAINER_DIR / phase.name


def grpo_config(profile: Profile, phase: RLPhase, out_dir: Path, num_prompts: int, weights: list[float]):
    import torch
    from trl import GRPOConfig

    from medfoundry.training.deepspeed import build_deepspeed_config, prepare_cpu_deepspeed

    cfg = profile.rl
    tool_phase = offers_tools(cfg, phase)
    on_gpu = torch.cuda.is_available()
    zero_stage = deepspeed_stage(cfg, profile.cluster.deepspeed_stage)
    if zero_stage:
        prepare_cpu_deepspeed()
    return GRPOConfig(
        output_dir=str(phase_checkpoint_dir(out_dir, phase)),
        max_steps=phase.max_steps,
        # A phase that offers tools has long prompts (schemas, calls, results): its loss runs one rollout at a time
        # (the same step by accumulation; TRL still generates the step's groups together), which keeps SmolLM2's
        # tools phase from holding eight ~800-token sequences' activations at once (12.7 GB resident).
        per_device_train_batch_size=1 if tool_phase else cfg.batch_size * cfg.num_generations,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps * (
            cfg.batch_size * cfg.num_generations if tool_phase else 1),
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,
        beta=cfg.beta,
        loss_type=cfg.loss_type,
        num_generations=cfg.num_generations,
        max_completion_length=phase.max_completion_length or cfg.max_completion_length,
        temperature=phase.temperature or cfg.temperature,
        reward_weights=weights,
        epsilon_high=cfg.epsilon_high,
        use_adaptive_entropy=cfg.entropy_target is not None,
        entropy_coef=0.0,
        entropy_target=cfg.entropy_target if cfg.entropy_target is not None else 0.2,
        use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode,
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


TRACES_FILE = "rl_traces.jsonl"  # every rollout: phase, row id, completion (tool calls and results), rewards


def _recording(fn, values: list, rollouts: list | None = None):
    """`fn` that also keeps its scores (and, for the first reward, the rollouts they belong to)."""

    def recorded(completions, **kwargs):
        scores = fn(completions, **kwargs)
        values.extend(scores)
        if rollouts is not None:
            ids = kwargs.get("id") or [None] * len(completions)
            rollouts.extend({"id": i, "completion": c} for i, c in zip(ids, completions, strict=True))
        return scores

    recorded.__name__ = fn.__name__
    return recorded


def offers_tools(cfg: RLConfig, phase: RLPhase) -> bool:
    return bool(cfg.tools) and (cfg.tools_in_every_phase or phase.pool == "tools")


def _calls_tools(completion: Any) -> bool:
    return isinstance(completion, list) and any(m.get("tool_calls") for m in completion)


def _grpo_phase(profile: Profile, phase: RLPhase, loaded: LoadedModel, rows: list[dict[str, Any]], out_dir: Path,
                resources: RewardResources) -> tuple[dict[str, Any], dict[str, list], Any]:
    from datasets import Dataset
    from trl import GRPOTrainer

    cfg = profile.rl
    reward_funcs, weights = reward_mixture(phase.rewards or cfg.rewards, resources, cfg.safety_gate)
    recorded: dict[str, list] = {fn.__name__: [] for fn in reward_funcs}
    rollouts: list[dict[str, Any]] = []
    reward_funcs = [_recording(fn, recorded[fn.__name__], rollouts if i == 0 else None)
                    for i, fn in enumerate(reward_funcs)]
    peft_config = None
    if cfg.use_lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    columns = [{k: v for k, v in row.items() if k not in ("pass_rate", "in_band")} for row in rows]
    # Each phase checkpoints into its own folder, so a restarted stage resumes the phase it was killed in (finished
    # phases resume from their final checkpoint, restoring the policy they produced).
    settings = {"rl": cfg.model_dump(), "phase": phase.model_dump(), "rows": [r["id"] for r in rows]}
    resume = prepare_resume(phase_checkpoint_dir(out_dir, phase), settings)
    trainer = with_exact_resume(GRPOTrainer)(
        callbacks=[LiveMetricsCallback()],
        model=loaded.model,
        reward_funcs=reward_funcs,
        args=grpo_config(profile, phase, out_dir, len(rows), weights),
        train_dataset=Dataset.from_list(columns),
        processing_class=loaded.processing_class,
        peft_config=peft_config,
        tools=resolve_tools(cfg.tools) if offers_tools(cfg, phase) else None,
    )
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    model = trainer.model
    loaded.model = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    history = [row for row in trainer.state.log_history if "reward" in row]
    curves: dict[str, list] = {"reward": [(int(r["step"]), float(r["reward"])) for r in history]}
    metrics: dict[str, Any] = {"steps": int(trainer.state.global_step), "prompts": len(rows),
                               "resumed_from_step": checkpoint_step(resume)}
    names = {fn.__name__ for fn in reward_funcs}
    for key, name in [("reward", "reward"), *((f"rewards/{n}/mean", f"reward_{n}") for n in sorted(names)),
                      *LOGGED.items()]:  # per-step curves; the component means are recomputed below
        values = [(int(r["step"]), float(r[key])) for r in history if r.get(key) is not None and r[key] == r[key]]
        if values:
            curves[name] = values
            metrics[f"{name}_mean"] = sum(v for _, v in values) / len(values)
            metrics[f"{name}_last"] = values[-1][1]
    for name, values in recorded.items():  # every component, applicable or not (TRL logs NaN for "never")
        applicable = [float(v) for v in values if v is not None]
        metrics[f"reward_{name}_applicable"] = len(applicable) / len(values) if values else 0.0
        if applicable:
            metrics[f"reward_{name}_mean"] = sum(applicable) / len(applicable)
    # TRL scores each generation batch with every reward in turn, so the recorded lists line up with the rollouts
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with (Path(out_dir) / TRACES_FILE).open("a", encoding="utf-8") as fh:
        for n, rollout in enumerate(rollouts):
            scores = {name: values[n] for name, values in recorded.items() if n < len(values)}
            fh.write(json.dumps({"phase": phase.name, **rollout, "rewards": scores}, default=str) + "\n")
    metrics["rollouts"] = len(rollouts)
    metrics["rollouts_with_tool_calls"] = sum(1 for r in rollouts if _calls_tools(r["completion"]))
    # frac_reward_zero_std is per step over that step's groups; the stage reports counts
    zero = [float(r["frac_reward_zero_std"]) for r in history if "frac_reward_zero_std" in r]
    metrics["groups"] = len(zero) * cfg.batch_size
    metrics["zero_variance_groups"] = round(sum(z * cfg.batch_size for z in zero))
    return metrics, curves, trainer


def _rft_phase(profile: Profile, phase: RLPhase, loaded: LoadedModel, rows: list[dict[str, Any]],
               samples: dict[str, list[str]], out_dir: Path) -> tuple[dict[str, Any], dict[str, list], Any]:
    """Rejection-sampling fine-tuning: SFT steps on the policy's own passing (correct and safe) samples."""
    from medfoundry.models.chat import attach_image, render
    from medfoundry.training.common import TextExample, encode_examples, train_causal_lm
    from medfoundry.training.prompt_pool import passes

    examples = []
    for row in rows:
        completions = samples.get(row["id"], [])
        for completion, ok in zip(completions, passes(row, completions), strict=True):
            if ok:
                image_path = Path(row["image_path"]) if row.get("image_path") and loaded.is_vision else None
                messages = attach_image(row["prompt"]) if row.get("image") is not None and loaded.is_vision else row["prompt"]
                examples.append(TextExample(render(loaded, messages, add_generation_prompt=True), completion,
                                            image_path, 1.0, row["id"]))
    metrics: dict[str, Any] = {"accepted_samples": len(examples), "sampled": sum(len(v) for v in samples.values())}
    if not examples:
        log.warning("RL phase %s: no passing samples to fine-tune on; skipped", phase.name)
        return {**metrics, "steps": 0, "skipped": 1}, {}, None
    cfg = profile.rl
    encoded, _ = encode_examples(loaded, examples, cfg.max_length, keep_completion=True)
    stage_cfg = cfg.model_copy(update={"max_steps": phase.max_steps})
    train_metrics, curves, trainer = train_causal_lm(loaded, encoded, stage_cfg, out_dir,
                                                     deepspeed_stage(cfg, profile.cluster.deepspeed_stage),
                                                     phase_checkpoint_dir(out_dir, phase))
    metrics.update(steps=train_metrics["steps"], loss_first=train_metrics["loss_first"],
                   loss_last=train_metrics["loss_last"])
    return metrics, curves, trainer


def _tool_sft_phase(profile: Profile, phase: RLPhase, loaded: LoadedModel, dataset_dir: Path, out_dir: Path,
                    grounding: GroundingIndex | None) -> tuple[dict[str, Any], dict[str, list], Any]:
    """Tool-use SFT: the reference solver's traces (call turn, answer turn after the tool's result) for
    `rl.sft_tool_tasks` candidate tasks on other patients than RL's, rendered with the offered tools' schemas exactly
    as the GRPO rollouts' prompts are, so the policy learns the call format before GRPO. Whole prompts are kept (the
    schemas come first), with the SFT section's learning rate and batch size. As many of the SFT stage's own QA
    examples are replayed beside them (`<think>`/`<answer>` targets), so that the policy keeps answering questions
    that offer no tool instead of calling one everywhere."""
    import random

    from medfoundry.training.agentic import profile_tool_sft_examples
    from medfoundry.training.common import encode_examples, train_causal_lm
    from medfoundry.training.sft import sft_examples

    records = [r for r in read_records(dataset_dir) if r.split == "train"]
    examples = profile_tool_sft_examples(profile, loaded, records, grounding.tree if grounding else None)
    # structured traces need the SFT stage's teacher; the record's own rationale keeps the same tags
    replay_format = "think_answer" if profile.sft.reasoning_format == "structured" else profile.sft.reasoning_format
    replay = sft_examples(loaded, dataset_dir, replay_format)
    random.Random(profile.rl.seed).shuffle(replay)
    longest = max(len(loaded.tokenizer(ex.prompt + ex.completion)["input_ids"]) for ex in examples)
    max_length = max(longest, min(profile.sft.max_length, profile.model.max_length))  # replay as the SFT stage fits it
    encoded, _ = encode_examples(loaded, examples + replay[: len(examples)], max_length, keep_completion=True)
    # one sequence per micro-batch (the SFT section's batch by accumulation): whole tool prompts are long, and four
    # at once took SmolLM2 to 8 GB resident
    sft = profile.sft
    stage_cfg = sft.model_copy(update={"max_steps": phase.max_steps, "packing": False, "curriculum": [],
                                       "max_length": max_length, "checkpoint_every": 0, "batch_size": 1,
                                       "gradient_accumulation_steps": sft.batch_size * sft.gradient_accumulation_steps})
    train_metrics, curves, trainer = train_causal_lm(loaded, encoded, stage_cfg, out_dir,
                                                     deepspeed_stage(profile.rl, profile.cluster.deepspeed_stage),
                                                     phase_checkpoint_dir(out_dir, phase))
    metrics = {"examples": len(examples), "replayed": len(replay[: len(examples)]),
               "tasks": len({ex.record_id for ex in examples}),
               "steps": train_metrics["steps"], "loss_first": train_metrics["loss_first"],
               "loss_last": train_metrics["loss_last"], "max_length": longest}
    return metrics, curves, trainer


def run_grpo(profile: Profile, dataset_dir: Path, model_dir: str | Path, out_dir: Path,
             grounding: GroundingIndex | None = None) -> dict[str, Any]:
    """The RL phases on the RL holdout; save the policy to `out_dir`; return metrics: per phase `<phase>/<metric>`,
    and overall `reward_<component>_mean` for every reward component, mean_reward, reward_first/last, kl/entropy,
    zero-variance groups, rubric coverage and the prompt pool's composition."""
    cfg = profile.rl
    if grounding is None and _needs_grounding(cfg):
        grounding = grounding_index(profile)
    for phase in phases(cfg):  # fail early
        reward_mixture(phase.rewards or cfg.rewards, RewardResources(grounding=grounding), cfg.safety_gate)
        if phase.kind == "tool_sft" and not (cfg.tools and cfg.sft_tool_tasks):
            raise ValueError(f"rl.phases: {phase.name} (kind tool_sft) needs rl.tools and rl.sft_tool_tasks")
    if grounding is None and "entity_lookup" in cfg.tools:
        grounding = grounding_index(profile)
    rows = rl_rows(Path(dataset_dir), grounding, cfg.images)
    agentic_counts: dict[str, int] = {}
    if cfg.agentic_tasks:
        from medfoundry.training.agentic import profile_tasks, task_records

        held_back = [r for r in read_records(Path(dataset_dir)) if is_rl_holdout(r)]
        tasks, agentic_counts = profile_tasks(cfg.agentic_tasks, cfg.seed, cfg.tools or sorted(TOOLS), held_back,
                                              grounding.tree if grounding else None)
        rows += [rl_row(r, None, grounding, False) for r in task_records(tasks)]
    if not rows:
        raise ValueError(f"{dataset_dir}: no held-back QA records for RL (split 'holdout', RL half)")
    if "entity_lookup" in cfg.tools:
        from medfoundry.training.tools.entities import use_entity_tree

        use_entity_tree(grounding.tree)
    if IMAGE_TOOLS & set(cfg.tools):
        from medfoundry.training.tools.image import use_output_dir

        use_output_dir(Path(out_dir) / "tool_images")
        rows = [with_image_path_in_prompt(r) for r in rows]
    judge = RubricJudge(cfg.judge.endpoint, cfg.judge.model) if cfg.judge else None
    resources = RewardResources(grounding=grounding, judge=judge)
    loaded = load_model(model_dir, profile.model)
    loaded.model.train()
    original_template = None
    if cfg.tools:
        from medfoundry.training.agentic import use_tool_chat_template

        original_template = use_tool_chat_template(loaded)
    if not loaded.is_vision:  # a text-only policy is asked image questions from their text
        rows = [{k: v for k, v in r.items() if k not in ("image", "image_path")} for r in rows]
    metrics: dict[str, Any] = {
        "prompts": len(rows),
        **rubric_coverage(rows),
        "rows_with_image": sum(1 for r in rows if r.get("image") is not None),
        **{f"agentic/{k}": v for k, v in agentic_counts.items()},
    }
    curves: dict[str, list] = {}
    samples: dict[str, list[str]] = {}
    if cfg.prompt_pool.enabled:
        from medfoundry.training.prompt_pool import build_prompt_pool

        pool = build_prompt_pool(loaded, rows, cfg.prompt_pool, cfg.seed)
        samples = pool.samples
        banded_ids = {r["id"]: r for r in pool.rows}
        rows = [banded_ids.get(r["id"], r) for r in rows]
        metrics.update({f"pool/{k}": v for k, v in pool.composition.items() if isinstance(v, int | float)})
        metrics["pool_composition"] = json.dumps(pool.composition, sort_keys=True)
        (Path(out_dir)).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "prompt_pool.json").write_text(json.dumps(pool.measured, indent=1))
        if profile.curation.feast:  # beside curation's features, in the workspace's store
            from medfoundry.curation.features import publish_prompt_pass_rates
            from medfoundry.workspace import Workspace

            metrics["pool/feast_prompts"] = publish_prompt_pass_rates(
                pool.measured, tuple(cfg.prompt_pool.pass_rate_band), cfg.prompt_pool.samples_per_prompt,
                Workspace.resolve(profile.workspace).sub("feast"), profile.feast,
            )
    trainer = None
    grpo_phases: list[dict[str, Any]] = []
    for configured in phases(cfg):
        if configured.kind == "tool_sft":
            phase_metrics, phase_curves, trainer = _tool_sft_phase(profile, configured, loaded, Path(dataset_dir),
                                                                   out_dir, grounding)
            metrics.update({f"{configured.name}/{k}": v for k, v in phase_metrics.items()})
            curves.update({f"{configured.name}/{k}": v for k, v in phase_curves.items()})
            continue
        # a tool task is asked only where the tools are offered
        configured_rows = [r for r in rows if POOLS[configured.pool](r)
                           and (offers_tools(cfg, configured) or not r["expected_tool"])]
        if not configured_rows:
            log.warning("RL phase %s: pool %r is empty; skipped", configured.name, configured.pool)
            metrics[f"{configured.name}/skipped"] = 1
            continue
        for phase, pool_rows in single_modality_parts(configured, configured_rows, loaded.is_vision):
            trainer = _run_phase(profile, phase, loaded, pool_rows, samples, out_dir, resources, metrics, curves,
                                 grpo_phases) or trainer
    if not grpo_phases:
        raise ValueError("RL: no GRPO phase ran (every phase's pool was empty)")
    rewards = curves["reward"]
    metrics.update(
        steps=sum(int(v) for k, v in metrics.items() if k.endswith("/steps")),
        mean_reward=sum(v for _, v in rewards) / len(rewards),
        reward_first=rewards[0][1],
        reward_last=rewards[-1][1],
        groups=sum(p["groups"] for p in grpo_phases),
        zero_variance_groups=sum(p["zero_variance_groups"] for p in grpo_phases),
        rollouts_with_tool_calls=sum(p["rollouts_with_tool_calls"] for p in grpo_phases),
    )
    for key in {k for p in grpo_phases for k in p if k.endswith(("_mean", "_applicable")) and k != "reward_mean"}:
        values = [p[key] for p in grpo_phases if key in p]
        metrics[key] = sum(values) / len(values)
    if cfg.tools:
        from medfoundry.training.agentic import restore_chat_template

        restore_chat_template(loaded, original_template)  # the saved policy keeps the template SFT trained it with
    return finish(loaded, Path(out_dir), metrics, curves, trainer)


def single_modality_parts(phase: RLPhase, rows: list[dict[str, Any]],
                          is_vision: bool) -> list[tuple[RLPhase, list[dict[str, Any]]]]:
    """A phase whose pool mixes image and text-only prompts runs as two parts (image rows, then text rows) sharing its
    steps: TRL's GRPOTrainer hands its processor `None` for the text rows of a mixed batch and fails."""
    with_image = [r for r in rows if r.get("image") is not None]
    if phase.kind == "rft" or not is_vision or not with_image or len(with_image) == len(rows):
        return [(phase, rows)]
    text_only = [r for r in rows if r.get("image") is None]
    image_steps = max(1, round(phase.max_steps * len(with_image) / len(rows)))
    return [
        (phase.model_copy(update={"name": f"{phase.name}-images", "max_steps": image_steps}), with_image),
        (phase.model_copy(update={"name": f"{phase.name}-text", "max_steps": max(1, phase.max_steps - image_steps)}),
         text_only),
    ]


def _run_phase(profile: Profile, phase: RLPhase, loaded: LoadedModel, pool_rows: list[dict[str, Any]], samples: Any,
               out_dir: Path, resources: RewardResources, metrics: dict[str, Any], curves: dict[str, list],
               grpo_phases: list[dict[str, Any]]) -> Any:
    """One phase (or single-modality part of one): its metrics and curves land under `<name>/`; returns its trainer."""
    cfg = profile.rl
    prefix = f"{phase.name}/"
    if len(pool_rows) < cfg.batch_size:  # a step needs batch_size groups: repeat a small pool's prompts
        pool_rows = (pool_rows * cfg.batch_size)[: cfg.batch_size]
    if phase.kind == "rft":
        phase_metrics, phase_curves, phase_trainer = _rft_phase(profile, phase, loaded, pool_rows, samples, out_dir)
    else:
        phase_metrics, phase_curves, phase_trainer = _grpo_phase(profile, phase, loaded, pool_rows, out_dir, resources)
        grpo_phases.append(phase_metrics)
        for name, values in phase_curves.items():  # one run-wide curve per metric across the GRPO phases
            curve = curves.setdefault(name, [])
            start = len(curve)  # not len(curve) inside the generator: it grows while extending (steps 1, 3, 5 ...)
            curve.extend((start + i, v) for i, (_, v) in enumerate(values, 1))
    metrics.update({prefix + k: v for k, v in phase_metrics.items()})
    curves.update({prefix + k: v for k, v in phase_curves.items()})
    return phase_trainer
