"""Continual pretraining: next-token loss on the curated corpus, images with their captions and reports.

Examples (train split only; holdout records are never trained on here):
  - every record with text: the image (if any and the model sees images) then the text, loss on the text;
  - QA records: "Question ... Options ... Answer ..." as plain text (instruction data mixed into pretraining).
Examples are drawn in proportion to curation's entity-aware `meta["sample_weight"]` (uniform when absent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medfoundry.config import Profile
from medfoundry.data.records import Record, read_records
from medfoundry.models.loading import LoadedModel, load_model
from medfoundry.models.tokenizer import VISION_END, VISION_START
from medfoundry.training.common import (
    TextExample,
    deepspeed_stage,
    encode_examples,
    finish,
    resume_settings,
    reweight_from_feature_store,
    sample_weight,
    train_causal_lm,
    training_device,
)
from medfoundry.training.curriculum import example_tier
from medfoundry.training.qa import is_qa, record_image


def pretrain_text(record: Record) -> str:
    if not is_qa(record):
        return record.text.strip()
    parts = [record.text.strip()] if record.text.strip() else []
    parts.append(f"Question: {record.question}")
    if record.options:
        parts.append("\n".join(f"{k}. {v}" for k, v in record.options.items()))
    answer = f"Answer: {record.answer}"
    parts.append(f"{answer}. {record.reasoning}" if record.reasoning else answer)
    return "\n".join(parts)


def pretrain_examples(loaded: LoadedModel, dataset_dir: Path) -> tuple[list[TextExample], int]:
    """(examples, records skipped for having no text)."""
    examples, empty = [], 0
    image_prompt = f"{VISION_START}{loaded.processor.image_token}{VISION_END}" if loaded.is_vision else ""
    for record in read_records(dataset_dir):
        if record.split != "train":
            continue
        text = pretrain_text(record)
        if not text:
            empty += 1
            continue
        image = record_image(record, dataset_dir)
        prompt = image_prompt if image is not None and loaded.is_vision else ""
        examples.append(
            TextExample(
                prompt,
                text + loaded.tokenizer.eos_token,
                image,
                sample_weight(record),
                record.id,
                record.source,
                example_tier(record.entities),
            )
        )
    return examples, empty


def run_pretrain(
    profile: Profile, dataset_dir: Path, base_model: str | Path, out_dir: Path, checkpoint_dir: Path | None = None
) -> dict[str, Any]:
    """Continue pretraining `base_model` (folder, s3://, hf id) on `dataset_dir`; save to `out_dir`; return metrics
    (loss_first/last, final_loss, steps, train_tokens, tokens_per_s, examples, ...)."""
    cfg = profile.pretrain
    loaded = load_model(base_model, profile.model, device=training_device())
    examples, empty = pretrain_examples(loaded, Path(dataset_dir))
    weights_from = reweight_from_feature_store(profile, examples)
    encoded, stats = encode_examples(loaded, examples, min(cfg.max_length, profile.model.max_length))
    zero_stage = deepspeed_stage(cfg, profile.cluster.deepspeed_stage)
    settings = resume_settings(dataset_dir, base_model)
    metrics, curves, trainer = train_causal_lm(loaded, encoded, cfg, Path(out_dir), zero_stage, checkpoint_dir, settings)
    metrics.update(
        examples=stats.examples,
        examples_with_image=stats.with_image,
        truncated=stats.truncated,
        skipped_empty=empty,
        weights_from=weights_from,
        images_dropped=stats.images_dropped,
    )
    return finish(loaded, Path(out_dir), metrics, curves, trainer)
