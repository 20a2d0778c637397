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
    resume_settings,
    reweight_from_feature_store,
    sample_weight,
    train_causal_lm,
    training_device,
)
from medfoundry.training.curriculum import example_tier
from medfoundry.training.qa import is_qa, qa_messages, record_image, sft_target
from medfoundry.training.reasoning import ReasoningReport, Trace, build_traces, load_fact_source, write_report

REASONING_REPORT = "reasoning_report.json"


def sft_examples(
    loaded: LoadedModel, dataset_dir: Path, reasoning_format: str, traces: dict[str, Trace] | None = None
) -> list[TextExample]:
    """One chat example per training QA record; with `structured`, only records that have a verified trace."""
    examples = []
    for record in read_records(dataset_dir):
        if record.split != "train" or not is_qa(record):
            continue
        if reasoning_format == "structured" and record.id not in (traces or {}):
            continue
        image = record_image(record, dataset_dir)
        prompt_messages = qa_messages(record, reasoning=reasoning_format != "plain")
        if image is not None and loaded.is_vision:
            prompt_messages = attach_image(prompt_messages)  # the collator loads the pixels
        if reasoning_format == "structured":
            target = f"<think>{traces[record.id].render()}</think><answer>{(record.answer or '').strip()}</answer>"
        else:
            target = sft_target(record, reasoning_format)
        prompt = render(loaded, prompt_messages, add_generation_prompt=True)
        full = render(loaded, [*prompt_messages, {"role": "assistant", "content": target}], add_generation_prompt=False)
        if not full.startswith(prompt):
            raise RuntimeError(f"{loaded.family}: the chat template renders the prompt differently inside a full chat")
        examples.append(
            TextExample(
                prompt,
                full[len(prompt) :],
                image,
                sample_weight(record),
                record.id,
                record.source,
                example_tier(record.entities),
            )
        )
    return examples


def run_sft(
    profile: Profile, dataset_dir: Path, model_dir: str | Path, out_dir: Path, checkpoint_dir: Path | None = None
) -> dict[str, Any]:
    """Fine-tune `model_dir` on the dataset's training QA records; save to `out_dir`; return metrics."""
    cfg = profile.sft
    loaded = load_model(model_dir, profile.model, device=training_device())
    traces, report = None, None
    if cfg.reasoning_format == "structured":
        records = [r for r in read_records(Path(dataset_dir)) if r.split == "train" and is_qa(r)]
        traces, report = build_traces(records, cfg.teacher, load_fact_source(profile))
    examples = sft_examples(loaded, Path(dataset_dir), cfg.reasoning_format, traces)
    if not examples:
        raise ValueError(f"{dataset_dir}: no QA records with split 'train' for SFT")
    weights_from = reweight_from_feature_store(profile, examples)
    encoded, stats = encode_examples(
        loaded, examples, min(cfg.max_length, profile.model.max_length), keep_completion=True
    )
    zero_stage = deepspeed_stage(cfg, profile.cluster.deepspeed_stage)
    settings = resume_settings(dataset_dir, model_dir)
    metrics, curves, trainer = train_causal_lm(loaded, encoded, cfg, Path(out_dir), zero_stage, checkpoint_dir, settings)
    metrics.update(
        examples=stats.examples,
        examples_with_image=stats.with_image,
        truncated=stats.truncated,
        skipped_no_target=stats.skipped_no_target,
        weights_from=weights_from,
        images_dropped=stats.images_dropped,
    )
    if report is not None:
        metrics.update(report.figures())
        _log_reasoning_report(report, Path(out_dir))
    return finish(loaded, Path(out_dir), metrics, curves, trainer)


def _log_reasoning_report(report: ReasoningReport, out_dir: Path) -> None:
    """Every rejected or skipped trace with its reason, next to the model and in the active MLflow run."""
    import mlflow

    out_dir.mkdir(parents=True, exist_ok=True)
    write_report(report, out_dir / REASONING_REPORT)
    if mlflow.active_run() is not None:
        mlflow.log_artifact(str(out_dir / REASONING_REPORT))
