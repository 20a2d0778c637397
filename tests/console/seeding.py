"""Put registered model versions (LoggedModel, linked metrics, per-item scores) and run records into a workspace,
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
    lo, hi = bootstrap_ci(frame["score"].tolist(), n_resamples=200)
    metrics = {
        "heldout/accuracy": float(frame["score"].mean()), "heldout/ci95_lo": lo, "heldout/ci95_hi": hi,
        "heldout/n": float(len(frame)), "heldout/unparseable_rate": 0.0,
        **{f"heldout/rarity/{t}": float(g["score"].mean()) for t, g in frame.groupby("rarity")},
        "heldout/rare/score": float(frame.loc[frame["rarity"] == "rare", "score"].mean()),
    }
    with mlflow.start_run(run_name=f"register-{pipeline_run_id}", tags={
        tracking.STAGE_TAG: "register", tracking.PIPELINE_RUN_TAG: pipeline_run_id,
    }) as run:
        info = register_model_version(
            model_dir, profile.tracking.registered_model,
            {"pipeline_run_id": pipeline_run_id, "dataset_hash": f"sha256-{pipeline_run_id}", "git_sha": "0" * 40},
            metrics, run_id=run.info.run_id, item_scores={"heldout": dict(zip(ids, frame["score"].tolist(), strict=True))},
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


def register_many(workspace: Path, count: int, model_dir: Path) -> None:
    """`count` versions registered as the pipeline registers them (LoggedModel, linked metrics, lineage tags, per-item
    scores), the newest holding the candidate alias and the one before champion and dev."""
    from medfoundry.release.registry import set_alias

    name = tiny_profile(workspace).tracking.registered_model
    for i in range(count):
        register_scored_version(workspace, f"seed-{i:04d}", scored(32, 0.3 + 0.4 * i / count, seed=i), model_dir)
    for alias in ("champion", "dev"):
        set_alias(name, alias, str(count - 1))
