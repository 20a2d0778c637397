"""Curated dataset versions as the curate stage recorded them in MLflow: counts, removal reasons, coverage."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class DatasetVersion:
    run_id: str
    pipeline_run_id: str
    started: float
    kept: float | None
    removed: dict[str, float] = field(default_factory=dict)
    quarantined: dict[str, float] = field(default_factory=dict)
    coverage: dict[str, float] = field(default_factory=dict)
    dataset_hash: str = ""
    dataset_uri: str = ""
    plots: list[str] = field(default_factory=list)


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix) :]: v for k, v in sorted(metrics.items()) if k.startswith(prefix)}


def dataset_versions(limit: int = 50) -> list[DatasetVersion]:
    """Newest first: one entry per curate stage run."""
    from mlflow import MlflowClient

    from medfoundry import tracking

    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    found = client.search_runs(
        experiments, filter_string=f"tags.`{tracking.STAGE_TAG}` = 'curate'", max_results=limit,
        order_by=["attributes.start_time DESC"],
    )
    versions = []
    for run in found:
        metrics, tags = run.data.metrics, run.data.tags
        versions.append(
            DatasetVersion(
                run_id=run.info.run_id,
                pipeline_run_id=tags.get(tracking.PIPELINE_RUN_TAG, ""),
                started=run.info.start_time / 1000,
                kept=metrics.get("kept"),
                removed=_prefixed(metrics, "removed/"),
                quarantined=_prefixed(metrics, "quarantined/"),
                coverage=_prefixed(metrics, "coverage/"),
                dataset_hash=tags.get("medfoundry.dataset_hash", ""),
                dataset_uri=tags.get("medfoundry.dataset_uri", ""),
            )
        )
    return versions


def coverage_report(run_id: str) -> dict[str, Any]:
    """The curate stage's coverage.json, coverage per rarity class, and the names of its plot images."""
    import mlflow.artifacts
    from mlflow import MlflowClient

    client = MlflowClient()
    plots = [a.path for a in _walk(client, run_id, "") if a.path.endswith((".png", ".svg"))]
    try:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/curation/coverage.json")
        coverage = json.loads(text)
    except Exception:  # noqa: BLE001 - a run from before coverage was logged
        coverage = {}
    rarity = {
        str(k): float(v.get("coverage", 0.0)) for k, v in sorted((coverage.get("by_rarity") or {}).items())
        if isinstance(v, dict)
    }
    return {"coverage": coverage, "rarity_coverage": rarity, "plots": plots}


def _walk(client: Any, run_id: str, path: str, depth: int = 0) -> list[Any]:
    found = []
    for item in client.list_artifacts(run_id, path or None):
        if item.is_dir and depth < 3:
            found += _walk(client, run_id, item.path, depth + 1)
        elif not item.is_dir:
            found.append(item)
    return found


def artifact_file(run_id: str, path: str, dst: Path) -> Path:
    """Download one artifact of a run (a plot) to `dst`."""
    import mlflow.artifacts

    if ".." in Path(path).parts or path.startswith("/"):
        raise ValueError(f"{path!r}: not an artifact path")
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(dst)))
