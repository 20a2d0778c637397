"""Supervised fine-tuning with structured reasoning on the training QA records.

Each QA record (kind "qa", split "train") becomes a chat: system + user turn (evaluation's prompt template, with the
record's image when it has one) and the assistant target "<think>{reasoning}</think><answer>{answer}</answer>"
(`profile.sft.reasoning_format: think_answer`) or the bare answer (`plain`). Loss is on the assistant turn only.
Examples are drawn in proportion to curation's entity-aware `meta["sample_weight"]` (uniform when absent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medfoundry.config import Profile
from medfoundry.data.records import read_records
from medfoundry.models.chat import attach_image, render
from medfoundry.models.loading import LoadedModel, load_model
from medfoundry.training.common import (
    TextExample,
    deepspeed_stage,
    encode_examples,
    finish,
    reweight_from_feature_store,
    sample_weight,
    train_causal_lm,
)
from medfoundry.training.qa import is_qa, qa_messages, record_image, sft_target


def sft_examples(loaded: LoadedModel, dataset_dir: Path, reasoning_format: str) -> list[TextExample]:
    examples = []
    for record in read_records(dataset_dir):
        if record.split != "train" or not is_qa(record):
            continue
        image = record_image(record, dataset_dir)
        prompt_messages = qa_messages(record, reasoning=reasoning_format == "think_answer")
        if image is not None and loaded.is_vision:
            prompt_messages = attach_image(prompt_messages)  # the collator loads the pixels
        target = sft_target(record, reasoning_format)
        prompt = render(loaded, prompt_messages, add_generation_prompt=True)
        full = render(loaded, [*prompt_messages, {"role": "assistant", "content": target}], add_generation_prompt=False)
        if not full.startswith(prompt):
            raise RuntimeError(f"{loaded.family}: the chat template renders the prompt differently inside a full chat")
        examples.append(TextExample(prompt, full[len(prompt) :], image, sample_weight(record), record.id))
    return examples


def run_sft(profile: Profile, dataset_dir: Path, model_dir: str | Path, out_dir: Path) -> dict[str, Any]:
    """Fine-tune `model_dir` on the dataset's training QA records; save to `out_dir`; return metrics."""
    cfg = profile.sft
    loaded = load_model(model_dir, profile.model)
    examples = sft_examples(loaded, Path(dataset_dir), cfg.reasoning_format)
    if not examples:
        raise ValueError(f"{dataset_dir}: no QA records with split 'train' for SFT")
    weights_from = reweight_from_feature_store(profile, examples)
    encoded, stats = encode_examples(
        loaded, examples, min(cfg.max_length, profile.model.max_length), keep_completion=True
    )
    metrics, curves, trainer = train_causal_lm(
        loaded, encoded, cfg, Path(out_dir), deepspeed_stage(cfg, profile.cluster.deepspeed_stage)
    )
    metrics.update(
        examples=stats.examples,
        examples_with_image=stats.with_image,
        truncated=stats.truncated,
        skipped_no_target=stats.skipped_no_target,
        weights_from=weights_from,
        images_dropped=stats.images_dropped,
    )
    return finish(loaded, Path(out_dir), metrics, curves, trainer)
