"""MLflow tracking: one parent run per pipeline run, one nested run per stage, lineage for model versions.

The tracking URI is resolved once: MLFLOW_TRACKING_URI when set (a real server), else the profile's
`tracking.uri`, else a sqlite store in the workspace. Stage runs are found again by tags, so a stage executing in
its own process (a KFP task) attaches to the right parent run with nothing but the parent run id.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from medfoundry.config import Profile
from medfoundry.images import git_sha
from medfoundry.workspace import Workspace

STAGE_TAG = "medfoundry.stage"
PIPELINE_RUN_TAG = "medfoundry.pipeline_run_id"
PIPELINE_TAG = "medfoundry.pipeline"
CONTENT_HASH_TAG = "medfoundry.content_hash"
MLFLOW_DIGEST_MAX = 36


def resolve_tracking_uri(profile: Profile) -> str:
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or profile.tracking.uri
        or Workspace.resolve(profile.workspace).tracking_uri
    )


def configure(profile: Profile) -> str:
    """Point mlflow at the profile's store and experiment; return the tracking URI."""
    import mlflow

    uri = resolve_tracking_uri(profile)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri.startswith("sqlite:"):
        # A local sqlite store keeps artifacts in the workspace unless the experiment already has a location.
        artifact_root = Workspace.resolve(profile.workspace).artifact_root.as_uri()
        if mlflow.get_experiment_by_name(profile.tracking.experiment) is None:
            try:
                mlflow.create_experiment(profile.tracking.experiment, artifact_location=artifact_root)
            except Exception:  # noqa: BLE001 - a concurrent stage created it first
                pass
    mlflow.set_experiment(profile.tracking.experiment)
    return uri


def start_pipeline_run(profile: Profile, pipeline: str, pipeline_run_id: str) -> str:
    """Create the parent run for one pipeline run and return its MLflow run id."""
    import mlflow

    from medfoundry.config import profile_hash

    configure(profile)
    with mlflow.start_run(run_name=f"{pipeline}-{pipeline_run_id}") as run:
        mlflow.set_tags(
            {
                PIPELINE_TAG: pipeline,
                PIPELINE_RUN_TAG: pipeline_run_id,
                "medfoundry.profile": profile.name,
                "medfoundry.config_hash": profile_hash(profile),
                "medfoundry.git_sha": git_sha(),
            }
        )
        mlflow.log_text(profile.to_yaml(), "profile.yaml")
        _log_flat_params(profile.model_dump(mode="json"))
    return run.info.run_id


def _log_flat_params(data: dict, prefix: str = "") -> None:
    import mlflow

    flat: dict[str, Any] = {}

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{key}.{k}" if key else k)
        else:
            flat[key] = json.dumps(node) if isinstance(node, list | dict) else node

    walk(data, prefix)
    items = list(flat.items())
    for i in range(0, len(items), 100):
        mlflow.log_params(dict(items[i : i + 100]))


@contextmanager
def stage_run(profile: Profile, parent_run_id: str, stage: str) -> Iterator[Any]:
    """Open the nested MLflow run for `stage` under the pipeline's parent run (in this process)."""
    import mlflow

    configure(profile)
    parent = mlflow.get_run(parent_run_id)
    tags = {
        STAGE_TAG: stage,
        PIPELINE_RUN_TAG: parent.data.tags.get(PIPELINE_RUN_TAG, ""),
        "mlflow.parentRunId": parent_run_id,
    }
    started = time.time()
    with mlflow.start_run(
        run_name=stage, experiment_id=parent.info.experiment_id, tags=tags, nested=True
    ) as run:
        try:
            yield run
        finally:
            mlflow.log_metric("duration_s", round(time.time() - started, 3))


def log_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Log the numeric entries of a flat dict; names are sanitized to MLflow's allowed characters."""
    import mlflow

    numeric = {
        _metric_name(k): float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and v == v  # NaN != NaN
    }
    if numeric:
        mlflow.log_metrics(numeric)
    return numeric


def log_dataset_input(dataset_dir: Any, context: str, name: str = "curated", run_id: str | None = None) -> str | None:
    """Log a medfoundry dataset folder as an MLflow dataset input of the (active) run, with its manifest's content
    hash as the digest; returns the digest, or None when the folder has no content hash (nothing is logged).

    MLflow caps a digest at 36 characters: the sha256 content hash is cut to its first 36 hex digits (144 bits), and
    the whole hash is kept in the input's `medfoundry.content_hash` tag."""
    from pathlib import Path

    import mlflow
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from medfoundry.data.records import read_manifest

    manifest = read_manifest(Path(dataset_dir))
    digest = manifest.get("content_hash")
    if not digest:
        return None
    dataset = Dataset(
        name=name,
        digest=str(digest)[:MLFLOW_DIGEST_MAX],
        source_type="local",
        source=json.dumps({"uri": Path(dataset_dir).resolve().as_uri()}),
        profile=json.dumps({k: v for k, v in manifest.items() if isinstance(v, int | float | str) and k != "content_hash"}),
    )
    run_id = run_id or mlflow.active_run().info.run_id
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, context), InputTag(CONTENT_HASH_TAG, str(digest))]
    mlflow.MlflowClient().log_inputs(run_id, [DatasetInput(dataset, tags)])
    return dataset.digest


def _metric_name(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in key)


def pipeline_parent_run(profile: Profile, pipeline_run_id: str) -> Any | None:
    """The parent run `start_pipeline_run` opened for a pipeline run id, or None. Stage runs carry the same tag; the
    parent is the one run without a parent of its own."""
    import mlflow

    configure(profile)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(profile.tracking.experiment)
    if experiment is None or not pipeline_run_id:
        return None
    tagged = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{PIPELINE_RUN_TAG}` = '{pipeline_run_id}'"
    )
    parents = [r for r in tagged if "mlflow.parentRunId" not in r.data.tags]
    return parents[0] if parents else None


def stage_runs(parent_run_id: str, tracking_uri: str | None = None) -> list[Any]:
    """Nested stage runs of a pipeline run, in start order."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        max_results=200,
    )
    return sorted(runs, key=lambda r: r.info.start_time)
