"""What the trainers share: tokenized examples with images, the collator, HF TrainingArguments from a profile
section, and finishing a run (save, metrics file, MLflow)."""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from medfoundry.config.training import TrainStageConfig
from medfoundry.models.loading import LoadedModel, count_parameters, save_model
from medfoundry.models.tokenizer import VISION_END, VISION_START
from medfoundry.training import curriculum
from medfoundry.training.checkpoints import EpochSeededSampler, checkpoint_step, prepare_resume
from medfoundry.training.live import LiveMetricsCallback

METRICS_FILE = "train_metrics.json"
TRAINER_DIR = "trainer"
IGNORE_INDEX = -100


@dataclass
class TextExample:
    """One training sequence before tokenization: `prompt` (no loss; may hold one image placeholder) + `completion`."""

    prompt: str
    completion: str
    image: Path | None = None
    weight: float = 1.0  # sampling weight (curation's entity-aware meta["sample_weight"])
    record_id: str = ""
    source: str = ""  # the record's provenance (curriculum mixtures by source)
    tier: str = "general"  # rarity tier of its linked entities (curriculum.example_tier)


@dataclass
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    image: Path | None = None
    weight: float = 1.0
    source: str = ""
    tier: str = "general"


@dataclass
class EncodeStats:
    examples: int = 0
    with_image: int = 0
    truncated: int = 0
    skipped_no_target: int = 0
    images_dropped: int = 0  # image records given to a text-only model (trained on their text)


def load_image(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def _image_token_count_of_size(loaded: LoadedModel, height: int, width: int) -> int:
    processor = loaded.processor.image_processor
    return processor.get_number_of_image_patches(height, width, {}) // processor.merge_size**2


def _image_token_count(loaded: LoadedModel, path: Path) -> int:
    with Image.open(path) as img:
        width, height = img.size
    return _image_token_count_of_size(loaded, height, width)


def encode_examples(
    loaded: LoadedModel, examples: list[TextExample], max_length: int, keep_completion: bool = False
) -> tuple[list[EncodedExample], EncodeStats]:
    """Tokenize prompt + completion, expand each image placeholder to the image's token count, mask the prompt out
    of the labels, and fit `max_length`: cut the tail, or with `keep_completion` (SFT) cut the prompt's start so the
    target survives (up to half the budget; image prompts are always cut at the tail, never through the image).
    Examples left without target tokens are skipped."""
    tokenizer = loaded.tokenizer
    image_token = loaded.processor.image_token if loaded.is_vision else None
    image_token_id = tokenizer.convert_tokens_to_ids(image_token) if image_token else None
    stats = EncodeStats()
    encoded: list[EncodedExample] = []
    for example in examples:
        image = example.image if loaded.is_vision else None
        if example.image is not None and image is None:
            stats.images_dropped += 1
        prompt_ids = tokenizer(example.prompt, add_special_tokens=False).input_ids
        if image is not None:
            if prompt_ids.count(image_token_id) != 1:
                raise ValueError(f"an image example needs exactly one {image_token} in its prompt: {example.prompt!r}")
            at = prompt_ids.index(image_token_id)
            n = _image_token_count(loaded, image)
            if at + n >= max_length:
                raise ValueError(f"max_length {max_length} cannot hold the {n} image tokens of {image}")
            prompt_ids = prompt_ids[:at] + [image_token_id] * n + prompt_ids[at + 1 :]
        completion_ids = tokenizer(example.completion, add_special_tokens=False).input_ids
        if len(prompt_ids) + len(completion_ids) > max_length:
            stats.truncated += 1
            if keep_completion and image is None:
                completion_ids = completion_ids[: max(max_length // 2, max_length - len(prompt_ids))]
                prompt_ids = prompt_ids[max(0, len(prompt_ids) + len(completion_ids) - max_length) :]
        input_ids = (prompt_ids + completion_ids)[:max_length]
        labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:max_length]
        if all(label == IGNORE_INDEX for label in labels):
            stats.skipped_no_target += 1
            continue
        encoded.append(EncodedExample(input_ids, labels, image, example.weight, example.source, example.tier))
        stats.examples += 1
        stats.with_image += image is not None
    return encoded, stats


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def _rope_index_fn(model: Any):
    """The multimodal (M-RoPE) position function of a Qwen-VL family model, unwrapped from PEFT; None for others."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(getattr(inner, "model", None), "get_rope_index", None)


class TokenCountingCollator:
    """Builds a batch from encoded examples, adds pixel values for the examples that have images, counts tokens.

    Padded (`packing=False`): rows padded (right) to the longest. Packed (`packing=True`): the batch's examples are
    packed first-fit into rows as wide as its longest example, end to end, through transformers'
    `DataCollatorWithFlattening` (a row's leftover room is one pad segment without labels)
    (position ids restart at 0 for each example, and each example's first label is masked so no loss crosses a
    boundary); the models' attention then reads the example boundaries from the position ids and keeps attention
    within each example. What that collator lacks for vision-language rows is added here: pixel values and image
    grids in row order, and the M-RoPE positions of Qwen-VL models (computed per example, so each example's
    image and text positions are the same as when it is alone) under a first row of text positions that marks the
    boundaries.

    In distributed runs a VLM batch without images gets one extra example holding only a blank image (no labels, so
    no loss): every rank then runs the vision tower and produces gradients in the same order, which DeepSpeed ZeRO
    and DDP need (a rank skipping the vision tower makes their gradient all-reduces disagree).
    """

    def __init__(self, loaded: LoadedModel, packing: bool = False):
        self.loaded = loaded
        self.packing = packing
        self.pad_id = loaded.tokenizer.pad_token_id
        self.tokens = 0
        self.target_tokens = 0
        self._blank: tuple[EncodedExample, Image.Image] | None = None
        self._rope_index = _rope_index_fn(loaded.model) if loaded.is_vision else None

    def _blank_row(self) -> tuple[EncodedExample, Image.Image]:
        if self._blank is None:
            processor = self.loaded.processor
            side = processor.image_processor.patch_size * processor.image_processor.merge_size
            image = Image.new("RGB", (side, side))
            n = _image_token_count_of_size(self.loaded, side, side)
            tokenizer = self.loaded.tokenizer
            ids = [tokenizer.convert_tokens_to_ids(VISION_START)] + [processor.image_token_id] * n
            ids.append(tokenizer.convert_tokens_to_ids(VISION_END))
            self._blank = (EncodedExample(ids, [IGNORE_INDEX] * len(ids)), image)
        return self._blank

    def _padded(self, batch: list[EncodedExample]) -> dict[str, torch.Tensor]:
        width = max(len(ex.input_ids) for ex in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ex in enumerate(batch):
            n = len(ex.input_ids)
            input_ids[row, :n] = torch.tensor(ex.input_ids)
            labels[row, :n] = torch.tensor(ex.labels)
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def _rows(self, batch: list[EncodedExample]) -> list[list[EncodedExample]]:
        """First-fit decreasing: the batch's examples packed into rows as wide as its longest example; each row's
        leftover room becomes one pad segment (no labels, positions restarting at 0, so it attends only to itself)."""
        width = max(len(ex.input_ids) for ex in batch)
        rows: list[list[EncodedExample]] = []
        room: list[int] = []
        for ex in sorted(batch, key=lambda e: -len(e.input_ids)):
            n = len(ex.input_ids)
            fit = next((i for i, r in enumerate(room) if n <= r), None)
            if fit is None:
                rows.append([ex])
                room.append(width - n)
            else:
                rows[fit].append(ex)
                room[fit] -= n
        for row, left in zip(rows, room, strict=True):
            if left:
                row.append(EncodedExample([self.pad_id] * left, [IGNORE_INDEX] * left))
        return rows

    def _packed(self, rows: list[list[EncodedExample]]) -> dict[str, torch.Tensor]:
        from transformers import DataCollatorWithFlattening

        flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
        flat = [flatten([{"input_ids": ex.input_ids, "labels": ex.labels} for ex in row], return_tensors="pt")
                for row in rows]
        out = {key: torch.cat([f[key] for f in flat], dim=0) for key in ("input_ids", "labels", "position_ids")}
        # transformers builds the per-example mask from position ids only without a KV cache; models whose config
        # says use_cache would otherwise open one in forward and attend across the examples.
        out["use_cache"] = False
        return out

    def _mrope_positions(self, rows: list[list[EncodedExample]], grids: torch.Tensor | None) -> torch.Tensor:
        """(4, rows, width) positions for packed VLM rows: text positions (restarting per example), then each
        example's own 3D M-RoPE positions."""
        image_id = self.loaded.processor.image_token_id
        merge = self.loaded.processor.image_processor.merge_size
        at = 0
        per_row = []
        for row in rows:
            pieces = []
            for ex in row:
                ids = torch.tensor([ex.input_ids])
                types = (ids == image_id).long()
                n_images = int(bool(types.any()))  # an example holds at most one image
                own = grids[at : at + n_images] if n_images and grids is not None else None
                at += n_images
                if own is not None and self._rope_index is not None:
                    if int((own.prod(-1) // merge**2).sum()) != int(types.sum()):
                        raise RuntimeError("image tokens of an example do not match its image grid")
                    positions, _ = self._rope_index(ids, types, image_grid_thw=own)
                else:
                    positions = torch.arange(ids.shape[1]).view(1, 1, -1).expand(3, 1, -1)
                pieces.append(torch.cat([torch.arange(ids.shape[1]).view(1, 1, -1), positions], dim=0))
            per_row.append(torch.cat(pieces, dim=-1))
        return torch.cat(per_row, dim=1)

    def __call__(self, batch: list[EncodedExample]) -> dict[str, torch.Tensor]:
        real_tokens = sum(len(ex.input_ids) for ex in batch)  # non-padding tokens of the real examples
        blank = None
        if self.loaded.is_vision and not any(ex.image is not None for ex in batch) and _distributed():
            blank, blank_image = self._blank_row()
            batch = [*batch, blank]
        rows = self._rows(batch) if self.packing else None
        if rows is not None:
            batch = [ex for row in rows for ex in row]  # images in the order their tokens appear
        images = [blank_image if ex is blank else load_image(ex.image) for ex in batch
                  if ex is blank or ex.image is not None]
        out = self._packed(rows) if rows is not None else self._padded(batch)
        input_ids, labels = out["input_ids"], out["labels"]
        if self.loaded.is_vision:
            processor = self.loaded.processor
            image_mask = input_ids == processor.image_token_id
            out["mm_token_type_ids"] = image_mask.long()
            grids = None
            if images:
                pixels = processor.image_processor(images=images, return_tensors="pt")
                grids = pixels["image_grid_thw"]
                expected = int((grids.prod(-1) // processor.image_processor.merge_size**2).sum())
                if expected != int(image_mask.sum()):
                    raise RuntimeError(f"image tokens in batch {int(image_mask.sum())} != image features {expected}")
                out["pixel_values"] = pixels["pixel_values"]
                out["image_grid_thw"] = grids
            if rows is not None and self._rope_index is not None:
                out["position_ids"] = self._mrope_positions(rows, grids)
        self.tokens += real_tokens
        self.target_tokens += int((labels != IGNORE_INDEX).sum())
        return out


def training_device() -> str | None:
    """Where this process trains: its own GPU under torchrun (LOCAL_RANK), so ranks do not all load onto cuda:0
    first; None (load_model's default) on CPU or without a launcher."""
    if not torch.cuda.is_available():
        return None
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"


def deepspeed_stage(stage_cfg: TrainStageConfig, cluster_stage: int = 0) -> int:
    """The stage section's ZeRO stage wins; else the cluster's."""
    return stage_cfg.deepspeed_stage or cluster_stage


def training_arguments(
    stage_cfg: TrainStageConfig,
    out_dir: Path,
    zero_stage: int = 0,
    checkpoint_dir: Path | None = None,
    **overrides: Any,
):
    """HF TrainingArguments for one stage: CPU-safe (no bf16, no gradient checkpointing on CPU), checkpoints every
    `checkpoint_every` steps into `checkpoint_dir` (default `<out_dir>/trainer`) keeping the last `checkpoint_keep`,
    loss logged every `logging_steps`, HF reporting off (medfoundry's LiveMetricsCallback streams to MLflow)."""
    from transformers import TrainingArguments

    from medfoundry.training.checkpoints import checkpoint_arguments
    from medfoundry.training.deepspeed import build_deepspeed_config, prepare_cpu_deepspeed

    on_gpu = torch.cuda.is_available()
    if zero_stage:
        prepare_cpu_deepspeed()
    kwargs: dict[str, Any] = dict(
        output_dir=str(checkpoint_dir or Path(out_dir) / TRAINER_DIR),
        max_steps=stage_cfg.max_steps,
        per_device_train_batch_size=stage_cfg.batch_size,
        gradient_accumulation_steps=stage_cfg.gradient_accumulation_steps,
        learning_rate=stage_cfg.learning_rate,
        warmup_steps=stage_cfg.warmup_ratio,
        lr_scheduler_type="linear",
        seed=stage_cfg.seed,
        data_seed=stage_cfg.seed,
        logging_steps=stage_cfg.logging_steps,
        **checkpoint_arguments(stage_cfg),
        report_to="none",
        use_cpu=not on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        remove_unused_columns=False,
        dataloader_num_workers=0,
        gradient_checkpointing=stage_cfg.gradient_checkpointing,
        disable_tqdm=True,
        deepspeed=build_deepspeed_config(zero_stage) if zero_stage else None,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def apply_lora(loaded: LoadedModel) -> None:
    """Wrap the language model's attention projections in LoRA adapters (merged back by `merge_lora`)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=r".*language_model.*\.(q|k|v|o)_proj|.*layers.*\.(q|k|v|o)_proj"
    )
    loaded.model = get_peft_model(loaded.model, config)


def merge_lora(loaded: LoadedModel) -> None:
    if hasattr(loaded.model, "merge_and_unload"):
        loaded.model = loaded.model.merge_and_unload()


def loss_curve(log_history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(int(row["step"]), float(row["loss"])) for row in log_history if "loss" in row]


def finish(
    loaded: LoadedModel,
    out_dir: Path,
    metrics: dict[str, Any],
    curves: dict[str, list] | None = None,
    trainer: Any = None,
) -> dict:
    """Save the model with `save_model`, write train_metrics.json, and log step curves to the active MLflow run.

    With a `trainer`, the weights come from its accelerator (gathered on every rank for DeepSpeed ZeRO-3) and only
    the main process writes."""
    out_dir = Path(out_dir)
    loaded.model.eval()
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise FloatingPointError(f"training produced a non-finite {key}: {value}")
    state_dict = None
    if trainer is not None and trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
        state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)  # ZeRO-3 partitions the weights
    if trainer is not None and not trainer.is_world_process_zero():
        return metrics
    save_model(loaded, out_dir, state_dict=state_dict)
    payload = {**metrics, "curves": curves or {}}
    (out_dir / METRICS_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
    streamed = next((cb.logged for cb in _callbacks(trainer) if isinstance(cb, LiveMetricsCallback)), set())
    _log_to_mlflow(curves or {}, streamed)
    # Checkpoints are for resuming an unfinished stage; the finished model does not ship them.
    shutil.rmtree(out_dir / TRAINER_DIR, ignore_errors=True)
    if trainer is not None:
        shutil.rmtree(trainer.args.output_dir, ignore_errors=True)
    return metrics


def _callbacks(trainer: Any) -> list:
    return list(trainer.callback_handler.callbacks) if trainer is not None else []


def _log_to_mlflow(curves: dict[str, list], streamed: set[str] = frozenset()) -> None:
    """Log the curves not already streamed while training, and a figure of all of them."""
    try:
        import mlflow
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return
    if mlflow.active_run() is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, points in curves.items():
        if name in streamed:
            continue
        for step, value in points:
            mlflow.log_metric(name, value, step=step)
    if curves:
        fig, ax = plt.subplots(figsize=(5, 3))
        for name, points in curves.items():
            ax.plot([s for s, _ in points], [v for _, v in points], marker="o", label=name)
        ax.set_xlabel("step")
        ax.legend()
        fig.tight_layout()
        mlflow.log_figure(fig, "training_curves.png")
        plt.close(fig)


def reweight_from_feature_store(profile, examples: list[TextExample]) -> str:
    """Replace example weights with the sample weights curation published to Feast (a point-in-time
    get_historical_features lookup), when the workspace has a published store; returns where weights came from."""
    if not profile.curation.feast or not examples:
        return "records"
    from medfoundry.curation.features import is_published, training_weights
    from medfoundry.workspace import Workspace

    workdir = Workspace.resolve(profile.workspace).root / "feast"
    if not is_published(workdir):
        return "records"
    frame = training_weights(sorted({e.record_id for e in examples}), workdir, feast_config=profile.feast)
    found = frame["sample_weight"].dropna().to_dict()
    if not found:
        return "records"
    for example in examples:
        weight = float(found.get(example.record_id, example.weight))
        example.weight = weight if math.isfinite(weight) and weight > 0 else example.weight
    return "feast"


def resume_settings(dataset_dir: Path, base_model: str | Path) -> dict[str, str]:
    """What besides the stage section a checkpoint must have been made with to be resumed from: the dataset's
    content hash (its manifest) and the starting model's content."""
    from medfoundry.data.records import read_manifest
    from medfoundry.training.checkpoints import folder_fingerprint

    path = Path(base_model)
    return {
        "dataset_hash": str(read_manifest(Path(dataset_dir)).get("content_hash", "")),
        "base_model": folder_fingerprint(path) if path.is_dir() else str(base_model),
    }


def sample_weight(record) -> float:
    """Curation's entity-aware sampling weight of a record (1.0 when it has none)."""
    weight = float(record.meta.get("sample_weight", 1.0) or 0.0)
    return weight if math.isfinite(weight) and weight > 0 else 1.0


def _trainer_class(sampler: torch.utils.data.Sampler):
    """HF Trainer that draws examples with `sampler` (an order fixed by seed and epoch, so a resumed run sees the
    same batches as one that never stopped) and resumes every weight exactly."""
    from transformers import Trainer

    from medfoundry.training.checkpoints import with_exact_resume

    class SampledTrainer(with_exact_resume(Trainer)):
        def _get_train_sampler(self, train_dataset=None):
            return sampler

    return SampledTrainer


def train_causal_lm(
    loaded: LoadedModel,
    encoded: list[EncodedExample],
    stage_cfg: TrainStageConfig,
    out_dir: Path,
    zero_stage: int = 0,
    checkpoint_dir: Path | None = None,
    resume_settings: dict[str, Any] | None = None,
):
    """Run HF Trainer steps on encoded examples (mixed image/no-image batches), drawn in proportion to their
    weights, resuming from the newest complete checkpoint in `checkpoint_dir` (default `<out_dir>/trainer`) made
    with the same stage section and `resume_settings`; return (metrics, curves, trainer)."""
    if not encoded:
        raise ValueError("no training examples: the dataset has no usable records for this stage")
    if stage_cfg.use_lora and zero_stage == 3:
        raise ValueError("use_lora with deepspeed_stage 3 is not supported: use ZeRO-1/2 with LoRA")
    if stage_cfg.use_lora:
        apply_lora(loaded)
    loaded.model.train()
    collator = TokenCountingCollator(loaded, packing=stage_cfg.packing)
    weights = [ex.weight for ex in encoded]
    live = LiveMetricsCallback(collator, count_parameters(loaded.model))
    callbacks: list[Any] = [live]
    overrides: dict[str, Any] = {}
    sampler: torch.utils.data.Sampler = EpochSeededSampler(weights, stage_cfg.seed)
    planned = []
    if stage_cfg.curriculum:
        if zero_stage:
            raise ValueError("a curriculum that freezes modules is not supported with DeepSpeed: set deepspeed_stage 0")
        per_step = stage_cfg.batch_size * stage_cfg.gradient_accumulation_steps * int(os.environ.get("WORLD_SIZE", 1))
        planned = curriculum.plan(encoded, stage_cfg.curriculum, per_step)
        sampler = curriculum.CurriculumSampler(planned, per_step, stage_cfg.seed)
        overrides["max_steps"] = sum(p.steps for p in planned)
        callbacks.append(curriculum.CurriculumCallback(planned, loaded.model, live))
    args = training_arguments(stage_cfg, out_dir, zero_stage, checkpoint_dir, **overrides)
    resume = prepare_resume(
        Path(args.output_dir), {"stage": stage_cfg.model_dump(), "examples": len(encoded), **(resume_settings or {})}
    )
    trainer = _trainer_class(sampler)(
        model=loaded.model, args=args, train_dataset=encoded, data_collator=collator, callbacks=callbacks
    )
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if stage_cfg.use_lora:
        merge_lora(loaded)
    curve = loss_curve(trainer.state.log_history)
    runtime = float(result.metrics.get("train_runtime", 0.0)) or 1e-9
    tokens = torch.tensor([collator.tokens, collator.target_tokens], dtype=torch.float64)
    if _distributed():  # tokens trained on by all ranks together
        torch.distributed.all_reduce(tokens)
    collator.tokens, collator.target_tokens = int(tokens[0]), int(tokens[1])
    metrics = {
        "steps": int(trainer.state.global_step),
        "loss_first": curve[0][1] if curve else float("nan"),
        "loss_last": curve[-1][1] if curve else float("nan"),
        "final_loss": curve[-1][1] if curve else float("nan"),
        "train_tokens": collator.tokens,
        "target_tokens": collator.target_tokens,
        "tokens_per_s": collator.tokens / runtime,
        "train_runtime_s": runtime,
        "num_parameters": count_parameters(loaded.model),
        "weighted_sampling": len(set(weights)) > 1,
        "resumed_from_step": checkpoint_step(resume),
        "packing": stage_cfg.packing,
        "curriculum_phases": len(planned),
        # Kish effective sample size of the sampling weights (= examples when uniform)
        "effective_examples": sum(weights) ** 2 / sum(w * w for w in weights),
    }
    curves: dict[str, list] = {"train_loss": curve}
    if planned:
        metrics["curriculum_steps"] = ",".join(f"{p.phase.name}:{p.steps}" for p in planned)
        curves[curriculum.PHASE_METRIC] = [(step, float(callbacks[1].phase_at(step))) for step, _ in curve]
    return metrics, curves, trainer
