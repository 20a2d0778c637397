"""The recipe's stages: one entry point each, called by the KFP components (components/<stage>/component.py).

`run_stage` is the only thing a component calls. It parses the profile, opens the stage's nested MLflow run under the
pipeline's parent run, calls the stage function, logs the figures it returns, and tags the run with the stage's key
figure (shown in the end-of-run table). Stage functions only connect the library's modules; they hold no logic of
their own beyond choosing inputs and outputs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medfoundry.config import Profile, profile_hash
from medfoundry.config.profile import parse_profile
from medfoundry.data.records import read_manifest
from medfoundry.workspace import Workspace

log = logging.getLogger("medfoundry.stages")

KEY_FIGURE_TAG = "medfoundry.key_figure"
SUMMARY_FILE = "stage_summary.json"


@dataclass(frozen=True)
class StageContext:
    profile: Profile
    parent_run_id: str
    stage: str

    @property
    def workspace(self) -> Workspace:
        return Workspace.resolve(self.profile.workspace)


StageFn = Callable[..., dict[str, Any]]
STAGES: dict[str, StageFn] = {}
# The metric each stage is judged by at a glance, with its display format.
KEY_FIGURES: dict[str, tuple[str, str]] = {}


def stage(name: str, key_figure: str, fmt: str = "{:,.0f}") -> Callable[[StageFn], StageFn]:
    def register(fn: StageFn) -> StageFn:
        STAGES[name] = fn
        KEY_FIGURES[name] = (key_figure, fmt)
        return fn

    return register


def run_stage(
    name: str,
    profile_yaml: str,
    parent_run_id: str,
    paths: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one stage inside its nested MLflow run; return the stage's figures.

    `paths` are the KFP artifact paths (inputs and outputs), `params` plain values from upstream tasks. An empty
    `parent_run_id` (the cacheable data stages) means: the parent run of the KFP run named by $MEDFOUNDRY_PIPELINE_RUN_ID.
    """
    import os

    import mlflow

    from medfoundry import tracking
    from medfoundry.cluster.kfp_settings import PIPELINE_RUN_ENV

    profile = parse_profile(yaml.safe_load(profile_yaml), source="pipeline profile")
    if not parent_run_id:
        pipeline_run_id = os.environ.get(PIPELINE_RUN_ENV, "")
        parent = tracking.pipeline_parent_run(profile, pipeline_run_id)
        if parent is None:
            raise RuntimeError(
                f"stage {name}: no MLflow parent run for pipeline run {pipeline_run_id!r} (${PIPELINE_RUN_ENV}); "
                "the start-tracking step opens it before the data stages run"
            )
        parent_run_id = parent.info.run_id
    fn = STAGES[name]
    ctx = StageContext(profile=profile, parent_run_id=parent_run_id, stage=name)
    with tracking.stage_run(profile, parent_run_id, name):
        figures = fn(ctx, **{k: Path(v) for k, v in (paths or {}).items()}, **(params or {}))
        tracking.log_metrics(figures)
        key, fmt = KEY_FIGURES[name]
        if key in figures:
            value = figures[key]
            shown = fmt.format(value) if isinstance(value, int | float) else str(value)
            mlflow.set_tag(KEY_FIGURE_TAG, f"{key}={shown}")
        strings = {k: str(v) for k, v in figures.items() if isinstance(v, str)}
        if strings:
            mlflow.set_tags({f"medfoundry.{k}": v for k, v in strings.items()})
    return figures


def _write_summary(out_dir: Path, figures: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(figures, indent=2, sort_keys=True, default=str))


# --------------------------------------------------------------------------------------------------- data stages


@stage("ingest", "records")
def ingest(ctx: StageContext, raw_data: Path) -> dict[str, Any]:
    from medfoundry.data.ingest import ingest_sources

    return ingest_sources(ctx.profile, raw_data)


@stage("validate", "kept")
def validate(ctx: StageContext, raw_data: Path, validated_data: Path) -> dict[str, Any]:
    from medfoundry.data.validation import validate_dataset

    return validate_dataset(raw_data, validated_data, stage="ingest")


@stage("curate", "kept")
def curate(ctx: StageContext, validated_data: Path, curated_data: Path) -> dict[str, Any]:
    from medfoundry.curation.curate import curate as curate_dataset
    from medfoundry.storage import open_storage

    figures = curate_dataset(ctx.profile, [validated_data], curated_data)
    store = open_storage(
        ctx.profile.storage.uri or str(ctx.workspace.store),
        endpoint_url=ctx.profile.storage.endpoint_url,
        region=ctx.profile.storage.region,
    )
    key = store.put_dir_versioned(curated_data, "datasets/curated")
    figures["dataset_uri"] = store.url(key)
    figures["dataset_hash"] = read_manifest(curated_data).get("content_hash", "")
    return figures


# ----------------------------------------------------------------------------------------------- training stages


@stage("pretrain", "final_loss", "{:.3f}")
def pretrain(ctx: StageContext, curated_data: Path, model: Path) -> dict[str, Any]:
    from medfoundry.models.loading import build_base_model

    base_dir = model.parent / f"{model.name}-base"
    build_base_model(ctx.profile.model, _corpus_texts(curated_data), base_dir)
    return _train(ctx, "pretrain", curated_data, base_dir, model)


@stage("sft", "final_loss", "{:.3f}")
def sft(ctx: StageContext, curated_data: Path, base_model: Path, model: Path) -> dict[str, Any]:
    return _train(ctx, "sft", curated_data, base_model, model)


@stage("rl", "mean_reward", "{:.3f}")
def rl(ctx: StageContext, curated_data: Path, base_model: Path, model: Path) -> dict[str, Any]:
    return _train(ctx, "grpo", curated_data, base_model, model)


def _train(ctx: StageContext, trainer: str, data: Path, base_model: Path, out: Path) -> dict[str, Any]:
    """Run a trainer in this process (local) or as a Kubeflow Trainer TrainJob (cluster.mode: kubernetes)."""
    from medfoundry import tracking

    tracking.log_dataset_input(data, context="training")
    if ctx.profile.cluster.mode == "kubernetes":
        return _train_on_cluster(ctx, trainer, data, base_model, out)
    if trainer == "grpo":
        from medfoundry.training.grpo import run_grpo

        return run_grpo(ctx.profile, data, base_model, out)
    if trainer == "pretrain":
        from medfoundry.training.pretrain import run_pretrain as run
    else:
        from medfoundry.training.sft import run_sft as run
    return run(ctx.profile, data, base_model, out, _checkpoint_dir(ctx, trainer))


def _checkpoint_dir(ctx: StageContext, trainer: str) -> Path:
    """Where a local stage keeps its checkpoints: in the workspace, per stage and profile, so a rerun of the stage
    (a new KFP output folder) resumes where a killed one stopped. Checkpoints of another dataset or starting model
    are not resumed from (`medfoundry.training.checkpoints.prepare_resume`)."""
    from medfoundry.config import profile_hash

    return ctx.workspace.root / "checkpoints" / trainer / profile_hash(ctx.profile)[:16]


def _train_on_cluster(
    ctx: StageContext, trainer: str, data: Path, base_model: Path, out: Path
) -> dict[str, Any]:
    """Stage inputs where the TrainJob reads them (the shared cache claim, or the object store when the job runs in
    another namespace: `cluster.trainjob_inputs`), run `medfoundry train <trainer>` as a TrainJob on nodes x GPUs,
    stream its status into the step's log, and collect the trained model. A failed job fails the step with the
    job's reason (TrainJobFailed)."""
    import os

    import mlflow

    from medfoundry.cluster.kfp_settings import CACHE_MOUNT, CACHE_PVC
    from medfoundry.cluster.trainjob import (
        CLAIM,
        build_trainjob,
        input_staging,
        stage_inputs,
        submit_and_wait,
    )
    from medfoundry.training.common import METRICS_FILE

    how = input_staging(ctx.profile)
    run_tag = mlflow.get_run(ctx.parent_run_id).data.tags.get("medfoundry.pipeline_run_id", ctx.parent_run_id)
    name = f"mf-{trainer}-{run_tag}".lower()[:63].rstrip("-")
    cache_dir = Path(os.environ.get("MEDFOUNDRY_CACHE_DIR", CACHE_MOUNT))
    staged = stage_inputs(ctx.profile, name, data, base_model, how, cache_dir)
    stage_run_id = mlflow.active_run().info.run_id
    # The pod streams its curves into this stage's nested run; with claim staging a preempted pod's replacement
    # resumes from the checkpoints under the job's --out folder (same folder, same settings).
    args = ["train", trainer, "--profile", staged.profile, "--data", staged.data, "--model", staged.model,
            "--mlflow-run-id", stage_run_id, "--out", staged.out]
    cluster = ctx.profile.cluster
    manifest = build_trainjob(
        ctx.profile, ctx.stage, args, name, mlflow_run_id=stage_run_id, cache_pvc=CACHE_PVC if how == CLAIM else None
    )
    mlflow.set_tag("medfoundry.trainjob_inputs", how)
    status = submit_and_wait(
        manifest,
        namespace=cluster.namespace,
        timeout_s=cluster.trainjob_timeout_hours * 3600,
        poll_s=cluster.trainjob_poll_seconds,
        on_status=lambda s: log.warning("TrainJob %s: %s %s", name, s.phase, s.message or ""),
    )
    mlflow.set_tag("medfoundry.trainjob", f"{name}: {status.phase}")
    staged.collect(out)
    return json.loads((out / METRICS_FILE).read_text())


def _corpus_texts(dataset_dir: Path):
    from medfoundry.data.records import read_records

    for record in read_records(dataset_dir):
        yield " ".join(filter(None, [record.text, record.question, record.reasoning, record.answer]))
        if record.options:
            yield " ".join(record.options.values())


# --------------------------------------------------------------------------------------------- release stages


EVAL_METRICS_FILE = "metrics.json"


@stage("evaluate", "heldout/accuracy", "{:.3f}")
def evaluate(
    ctx: StageContext, curated_data: Path, model: Path, eval_results: Path, report_html: Path
) -> dict[str, Any]:
    import shutil

    from medfoundry.evaluation.recipe import evaluate_model

    figures = evaluate_model(ctx.profile, model, curated_data, eval_results)
    (eval_results / EVAL_METRICS_FILE).write_text(json.dumps(figures, indent=2, sort_keys=True))
    html = next(iter(sorted(eval_results.rglob("*.html"))), None)
    if html is not None:
        report_html.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(html, report_html)
    return figures


@stage("register", "version", "{}")
def register(
    ctx: StageContext, model: Path, curated_data: Path, raw_data: Path, eval_results: Path
) -> dict[str, Any]:
    import mlflow

    from medfoundry import tracking
    from medfoundry.release.registry import register_model_version

    parent = mlflow.get_run(ctx.parent_run_id)
    eval_metrics = json.loads((eval_results / EVAL_METRICS_FILE).read_text())
    lineage = {
        "pipeline_run_id": parent.data.tags.get(tracking.PIPELINE_RUN_TAG, ""),
        "mlflow_parent_run_id": ctx.parent_run_id,
        "dataset_hash": read_manifest(curated_data).get("content_hash", ""),
        "raw_dataset_hash": read_manifest(raw_data).get("content_hash", ""),
        "base_model": ctx.profile.model.source,
        "config_hash": profile_hash(ctx.profile),
        "profile": ctx.profile.name,
        "git_sha": tracking.git_sha(),
    }
    from medfoundry.evaluation.runner import load_item_scores

    info = register_model_version(
        model,
        ctx.profile.tracking.registered_model,
        lineage=lineage,
        metrics={k: v for k, v in eval_metrics.items() if isinstance(v, int | float)},
        item_scores=load_item_scores(eval_results),
    )
    return {"version": str(info.version), "model_name": info.name}


def decide_gate(profile_yaml: str, parent_run_id: str, model_version: str, eval_results: str) -> bool:
    """Evaluate the promotion gate for a registered candidate; record the decision on the pipeline's parent run."""
    import mlflow

    from medfoundry import tracking
    from medfoundry.evaluation.runner import load_item_scores
    from medfoundry.release.gates import baseline, evaluate_gate
    from medfoundry.release.registry import item_scores

    profile = parse_profile(yaml.safe_load(profile_yaml), source="pipeline profile")
    tracking.configure(profile)
    candidate = json.loads((Path(eval_results) / EVAL_METRICS_FILE).read_text())
    champion = baseline(profile.tracking.registered_model, profile.gitops.environment, exclude_version=model_version)
    decision = evaluate_gate(
        profile.gates,
        candidate,
        champion.metrics if champion else None,
        load_item_scores(Path(eval_results)),
        item_scores(champion) if champion else None,
    )
    client = mlflow.MlflowClient()
    client.set_tag(parent_run_id, "medfoundry.gate", "passed" if decision.passed else "refused")
    client.set_tag(parent_run_id, "medfoundry.gate_reasons", "; ".join(decision.reasons)[:4900])
    client.log_text(parent_run_id, json.dumps(decision.to_dict(), indent=2), "gate_decision.json")
    return decision.passed


@stage("promote", "alias", "{}")
def promote(ctx: StageContext, model_version: str = "") -> dict[str, Any]:
    from medfoundry.release.promote import promote_model

    result = promote_model(
        ctx.profile, ctx.profile.tracking.registered_model, model_version, gate_checked=True
    )
    return {"alias": result.env, "version": model_version, "gitops_commit": result.commit or ""}
