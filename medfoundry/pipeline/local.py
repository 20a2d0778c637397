"""Local (embedded) pipeline runs through kfp.local, and their per-stage status read back from MLflow."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medfoundry.cluster.kfp_settings import PIPELINE_RUN_ENV
from medfoundry.config import Profile
from medfoundry.workspace import Workspace


@dataclass
class StageStatus:
    stage: str
    status: str  # FINISHED | FAILED | RUNNING | SKIPPED | NOT RUN
    duration_s: float | None = None
    key_figure: str = ""
    run_id: str = ""


@dataclass
class LocalRun:
    run_id: str
    pipeline: str
    profile: str
    workspace: str
    status: str = "RUNNING"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    parent_run_id: str = ""
    error: str = ""
    tracking_uri: str = ""
    model_name: str = ""
    model_version: str = ""
    model_aliases: list[str] = field(default_factory=list)
    gate: str = ""
    # Set when the run was started in the background (console): its process group, log file, who started it, and
    # the KFP host for a cluster run.
    pid: int | None = None
    log_path: str = ""
    started_by: str = ""
    target: str = ""

    def save(self, runs_dir: Path) -> Path:
        path = runs_dir / f"{self.run_id}.json"
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> LocalRun:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def run_pipeline_locally(pipeline: str, profile: Profile, run_id: str | None = None) -> LocalRun:
    """Run a pipeline through kfp.local's SubprocessRunner in this environment; never raises for stage failures.

    `run_id` continues a run record the console created when it started this process (keeping its pid and log)."""
    from medfoundry.pipeline.compiler import pipeline_module

    module = pipeline_module(pipeline)
    workspace = Workspace.resolve(profile.workspace)
    # Stages run in subprocesses: pin the workspace and tracking store so all of them share one state.
    profile = profile.model_copy(update={"workspace": str(workspace.root)})
    # The pins below last for this run only: a caller that runs several pipelines in one process (tests, the
    # console's service) must not inherit one run's workspace or run id in the next.
    saved_env = {key: os.environ.get(key) for key in ("MEDFOUNDRY_HOME", PIPELINE_RUN_ENV)}
    try:
        return _run_pinned(module, profile, workspace, pipeline, run_id)
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_pinned(module: Any, profile: Profile, workspace: Workspace, pipeline: str, run_id: str | None) -> LocalRun:
    from kfp import local

    from medfoundry import tracking

    os.environ["MEDFOUNDRY_HOME"] = str(workspace.root)
    existing = workspace.runs / f"{run_id}.json" if run_id else None
    run = LocalRun.load(existing) if existing and existing.is_file() else LocalRun(
        run_id=run_id or new_run_id(), pipeline=pipeline, profile=profile.name, workspace=str(workspace.root)
    )
    run.tracking_uri = tracking.resolve_tracking_uri(profile)
    run.save(workspace.runs)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workspace.pipeline_root))
    # Data stages find the parent MLflow run through this, as on a cluster through the pod's KFP run-id label.
    os.environ[PIPELINE_RUN_ENV] = run.run_id
    try:
        module.pipeline(profile=profile.to_yaml(), pipeline_run_id=run.run_id)
        run.status = "SUCCEEDED"
    except Exception as err:  # noqa: BLE001 - a failed stage is a result to report, not a crash
        run.status = "FAILED"
        run.error = f"{type(err).__name__}: {err}".splitlines()[0][:500]
    run.finished = time.time()
    _attach_tracking(run, profile)
    run.save(workspace.runs)
    return run


def _attach_tracking(run: LocalRun, profile: Profile) -> None:
    import mlflow

    from medfoundry import tracking

    parent = tracking.pipeline_parent_run(profile, run.run_id)
    if parent is None:
        return
    client = mlflow.MlflowClient()
    run.parent_run_id = parent.info.run_id
    run.gate = parent.data.tags.get("medfoundry.gate", "")
    for child in tracking.stage_runs(parent.info.run_id):
        if child.data.tags.get(tracking.STAGE_TAG) == "register":
            run.model_name = child.data.tags.get("medfoundry.model_name", "")
            run.model_version = child.data.tags.get("medfoundry.version", "")
    if run.model_name and run.model_version:
        version = client.get_model_version(run.model_name, run.model_version)
        run.model_aliases = sorted(getattr(version, "aliases", []) or [])


def stage_statuses(run: LocalRun, stages: list[str]) -> list[StageStatus]:
    from medfoundry import tracking
    from medfoundry.pipeline.stages import KEY_FIGURE_TAG

    found: dict[str, Any] = {}
    if run.parent_run_id:
        for child in tracking.stage_runs(run.parent_run_id, tracking_uri=run.tracking_uri):
            found[child.data.tags.get(tracking.STAGE_TAG, child.info.run_name)] = child
    rows = []
    for name in stages:
        child = found.get(name)
        if child is None:
            skipped = name == "promote" and run.gate == "refused"
            rows.append(StageStatus(name, "SKIPPED (gate refused)" if skipped else "NOT RUN"))
            continue
        rows.append(
            StageStatus(
                stage=name,
                status=child.info.status,
                duration_s=child.data.metrics.get("duration_s"),
                key_figure=child.data.tags.get(KEY_FIGURE_TAG, ""),
                run_id=child.info.run_id,
            )
        )
    return rows


def list_runs(workspace: Workspace) -> list[LocalRun]:
    return sorted(
        (LocalRun.load(p) for p in workspace.runs.glob("*.json")), key=lambda r: r.started, reverse=True
    )
