"""What the trainers share: tokenized examples with images, the collator, HF TrainingArguments from a profile
section, and finishing a run (save, metrics file, MLflow)."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from medfoundry.config.training import TrainStageConfig
from medfoundry.models.loading import LoadedModel, count_parameters, save_model
from medfoundry.models.tokenizer import VISION_END, VISION_START

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


@dataclass
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    image: Path | None = None
    weight: float = 1.0


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
        encoded.append(EncodedExample(input_ids, labels, image, example.weight))
        stats.examples += 1
        stats.with_image += image is not None
    return encoded, stats


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


class TokenCountingCollator:
    """Pads a batch (right), adds pixel values for the examples that have images, counts tokens seen.

    In distributed runs a VLM batch without images gets one extra row holding only a blank image (no labels, so no
    loss): every rank then runs the vision tower and produces gradients in the same order, which DeepSpeed ZeRO and
    DDP need (a rank skipping the vision tower makes their gradient all-reduces disagree).
    """

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.pad_id = loaded.tokenizer.pad_token_id
        self.tokens = 0
        self.target_tokens = 0
        self._blank: tuple[EncodedExample, Image.Image] | None = None

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

    def __call__(self, batch: list[EncodedExample]) -> dict[str, torch.Tensor]:
        images = [load_image(ex.image) for ex in batch if ex.image is not None]
        counted = len(batch)
        if self.loaded.is_vision and not images and _distributed():
            blank, blank_image = self._blank_row()
            batch, images = [*batch, blank], [blank_image]
        width = max(len(ex.input_ids) for ex in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ex in enumerate(batch):
            n = len(ex.input_ids)
            input_ids[row, :n] = torch.tensor(ex.input_ids)
            labels[row, :n] = torch.tensor(ex.labels)
            attention_mask[row, :n] = 1
        out = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if self.loaded.is_vision:
            processor = self.loaded.processor
            image_mask = input_ids == processor.image_token_id
            out["mm_token_type_ids"] = image_mask.long()
            if images:
                pixels = processor.image_processor(images=images, return_tensors="pt")
                expected = int((pixels["image_grid_thw"].prod(-1) // processor.image_processor.merge_size**2).sum())
                if expected != int(image_mask.sum()):
                    raise RuntimeError(f"image tokens in batch {int(image_mask.sum())} != image features {expected}")
                out["pixel_values"] = pixels["pixel_values"]
                out["image_grid_thw"] = pixels["image_grid_thw"]
        self.tokens += int(attention_mask[:counted].sum())
        self.target_tokens += int((labels != IGNORE_INDEX).sum())
        return out


def deepspeed_stage(stage_cfg: TrainStageConfig, cluster_stage: int = 0) -> int:
    """The stage section's ZeRO stage wins; else the cluster's."""
    return stage_cfg.deepspeed_stage or cluster_stage


def training_arguments(stage_cfg: TrainStageConfig, out_dir: Path, zero_stage: int = 0, **overrides: Any):
    """HF TrainingArguments for one stage: CPU-safe (no bf16, no gradient checkpointing on CPU), no checkpoints,
    loss logged every step, reporting off (medfoundry logs to the active MLflow run itself)."""
    from transformers import TrainingArguments

    from medfoundry.training.deepspeed import build_deepspeed_config, prepare_cpu_deepspeed

    on_gpu = torch.cuda.is_available()
    if zero_stage:
        prepare_cpu_deepspeed()
    kwargs: dict[str, Any] = dict(
        output_dir=str(Path(out_dir) / TRAINER_DIR),
        max_steps=stage_cfg.max_steps,
        per_device_train_batch_size=stage_cfg.batch_size,
        gradient_accumulation_steps=stage_cfg.gradient_accumulation_steps,
        learning_rate=stage_cfg.learning_rate,
        warmup_steps=stage_cfg.warmup_ratio,
        lr_scheduler_type="linear",
        seed=stage_cfg.seed,
        data_seed=stage_cfg.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        remove_unused_columns=False,
        dataloader_num_workers=0,
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
    shutil.rmtree(out_dir / TRAINER_DIR, ignore_errors=True)  # the Trainer's scratch folder is not part of the model
    save_model(loaded, out_dir, state_dict=state_dict)
    payload = {**metrics, "curves": curves or {}}
    (out_dir / METRICS_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
    _log_to_mlflow(curves or {})
    return metrics


def _log_to_mlflow(curves: dict[str, list]) -> None:
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


def sample_weight(record) -> float:
    """Curation's entity-aware sampling weight of a record (1.0 when it has none)."""
    weight = float(record.meta.get("sample_weight", 1.0) or 0.0)
    return weight if math.isfinite(weight) and weight > 0 else 1.0


def _trainer_class(weights: list[float], seed: int):
    """HF Trainer that draws examples in proportion to `weights` (with replacement, when they are not uniform)."""
    from transformers import Trainer

    class WeightedSamplingTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            if len(set(weights)) <= 1:
                return super()._get_train_sampler(train_dataset)
            generator = torch.Generator().manual_seed(seed)
            return torch.utils.data.WeightedRandomSampler(weights, len(weights), replacement=True, generator=generator)

    return WeightedSamplingTrainer


def train_causal_lm(
    loaded: LoadedModel,
    encoded: list[EncodedExample],
    stage_cfg: TrainStageConfig,
    out_dir: Path,
    zero_stage: int = 0,
):
    """Run HF Trainer steps on encoded examples (mixed image/no-image batches), drawn in proportion to their
    weights; return (metrics, curves, trainer)."""
    if not encoded:
        raise ValueError("no training examples: the dataset has no usable records for this stage")
    if stage_cfg.use_lora and zero_stage == 3:
        raise ValueError("use_lora with deepspeed_stage 3 is not supported: use ZeRO-1/2 with LoRA")
    if stage_cfg.use_lora:
        apply_lora(loaded)
    loaded.model.train()
    collator = TokenCountingCollator(loaded)
    weights = [ex.weight for ex in encoded]
    trainer = _trainer_class(weights, stage_cfg.seed)(
        model=loaded.model,
        args=training_arguments(stage_cfg, out_dir, zero_stage),
        train_dataset=encoded,
        data_collator=collator,
    )
    result = trainer.train()
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
        # Kish effective sample size of the sampling weights (= examples when uniform)
        "effective_examples": sum(weights) ** 2 / sum(w * w for w in weights),
    }
    return metrics, {"train_loss": curve}, trainer
