"""Put registered model versions (with the evaluate stage's per-item predictions) and run records into a workspace,
through the same MLflow registry API and run-record format the pipeline uses. The browser tests and the page
benchmark use it; the full-recipe browser test produces real ones instead."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def tiny_profile(workspace: Path):
    from medfoundry.config import load_profile

    return load_profile("tiny", {"workspace": str(workspace)})


def register_scored_version(workspace: Path, pipeline_run_id: str, correct: list[int], model_dir: Path) -> str:
    """One registered version whose held-out predictions score `correct` (0/1 per item, ids item-0..n-1); returns the
    version number."""
    import mlflow
    import pandas as pd

    from medfoundry import tracking
    from medfoundry.evaluation.metrics import bootstrap_ci
    from medfoundry.release.registry import register_model_version

    profile = tiny_profile(workspace)
    tracking.configure(profile)
    ids = [f"item-{i}" for i in range(len(correct))]
    tiers = ["rare" if i % 4 == 0 else "common" for i in range(len(correct))]
    frame = pd.DataFrame({"id": ids, "score": [float(c) for c in correct], "rarity": tiers})
    with mlflow.start_run(run_name=f"evaluate-{pipeline_run_id}", tags={
        tracking.STAGE_TAG: "evaluate", tracking.PIPELINE_RUN_TAG: pipeline_run_id,
    }):
        mlflow.log_table(frame, artifact_file="eval/heldout/predictions.json")
    lo, hi = bootstrap_ci(frame["score"].tolist(), n_resamples=200)
    metrics = {
        "heldout/accuracy": float(frame["score"].mean()), "heldout/ci95_lo": lo, "heldout/ci95_hi": hi,
        "heldout/n": float(len(frame)),
        **{f"heldout/rarity/{t}": float(g["score"].mean()) for t, g in frame.groupby("rarity")},
        "heldout/rare/score": float(frame.loc[frame["rarity"] == "rare", "score"].mean()),
    }
    with mlflow.start_run(run_name=f"register-{pipeline_run_id}", tags={
        tracking.STAGE_TAG: "register", tracking.PIPELINE_RUN_TAG: pipeline_run_id,
    }) as run:
        info = register_model_version(
            model_dir, profile.tracking.registered_model,
            {"pipeline_run_id": pipeline_run_id, "dataset_hash": f"sha256-{pipeline_run_id}", "git_sha": "0" * 40},
            metrics, run_id=run.info.run_id,
        )
    return info.version


def scored(n: int, accuracy: float, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(x) for x in rng.random(n) < accuracy]


def write_run_records(workspace: Path, count: int) -> None:
    """`count` finished run records as `medfoundry run` writes them (the runs page reads only these files)."""
    from medfoundry.pipeline.local import LocalRun
    from medfoundry.workspace import Workspace

    runs = Workspace.resolve(str(workspace)).runs
    now = time.time()
    for i in range(count):
        started = now - (count - i) * 600
        LocalRun(
            run_id=time.strftime("%Y%m%d-%H%M%S", time.gmtime(started)) + f"-{i:06x}", pipeline="medical-mllm-recipe",
            profile="tiny", workspace=str(workspace), status="SUCCEEDED" if i % 7 else "FAILED", started=started,
            finished=started + 180 + i % 60, model_name="medfoundry-medvlm", model_version=str(i % 200 + 1),
            gate="passed" if i % 3 else "refused", error="" if i % 7 else "RuntimeError: stage sft failed",
        ).save(runs)


def register_many(workspace: Path, count: int) -> None:
    """`count` versions of the tiny profile's model with lineage and metric tags (no weights: the models page reads
    only the registry), the newest three holding the candidate, champion and dev aliases."""
    from mlflow import MlflowClient

    from medfoundry import tracking
    from medfoundry.release.registry import LINEAGE_PREFIX, METRIC_PREFIX

    profile = tiny_profile(workspace)
    tracking.configure(profile)
    client = MlflowClient()
    name = profile.tracking.registered_model
    client.create_registered_model(name)
    for i in range(count):
        accuracy = 0.3 + 0.4 * i / count
        tags = {
            f"{LINEAGE_PREFIX}pipeline_run_id": f"seed-{i:04d}", f"{LINEAGE_PREFIX}git_sha": f"{i:040x}",
            f"{LINEAGE_PREFIX}dataset_hash": f"{i:064x}", f"{METRIC_PREFIX}heldout/accuracy": repr(accuracy),
            f"{METRIC_PREFIX}heldout/ci95_lo": repr(accuracy - 0.05), f"{METRIC_PREFIX}heldout/ci95_hi": repr(accuracy + 0.05),
        }
        client.create_model_version(name, source=f"s3://medfoundry-models/{name}/{i}", tags=tags)
    for alias, version in (("candidate", count), ("champion", count - 1), ("dev", count - 1)):
        client.set_registered_model_alias(name, alias, str(version))
