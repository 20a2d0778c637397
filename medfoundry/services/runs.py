"""Pipeline runs: validate a request, start it in the background (a local subprocess, or a KFP run when a KFP host is
configured), read status and logs, cancel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medfoundry.config import Profile, ProfileError
from medfoundry.pipeline.local import LocalRun, StageStatus, new_run_id
from medfoundry.workspace import Workspace

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
LOG_TAIL_BYTES = 16_384


class RunError(ValueError):
    """A run that cannot be started or changed; the message says why. Nothing was started or changed."""


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings (the CLI's --set) -> {dotted key: YAML-parsed value}."""
    import yaml

    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ProfileError(f"--set {item!r}: expected KEY=VALUE, e.g. pretrain.max_steps=2")
        try:
            parsed[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ProfileError(f"{key}: not a valid value ({err})", {key.strip(): "not a valid YAML value"}) from None
    return parsed


def resolve_profile(profile: str, overrides: dict[str, Any] | None = None) -> Profile:
    """The profile with overrides applied, validated by the profile schema (ProfileError names each bad field)."""
    from medfoundry.config import load_profile

    return load_profile(profile, overrides or {})


def pipelines() -> list[dict[str, Any]]:
    """Every pipeline this build ships with its stages and description (the local "versions" are the package's)."""
    from medfoundry import __version__
    from medfoundry.pipeline.compiler import PIPELINES, pipeline_module

    found = []
    for name in sorted(PIPELINES):
        module = pipeline_module(name)
        doc = (module.__doc__ or "").strip().splitlines()
        found.append(
            {"name": name, "stages": list(module.STAGES), "description": doc[0] if doc else "", "version": __version__}
        )
    return found


def cluster_pipelines(host: str) -> list[dict[str, Any]]:
    """Pipelines and their versions on a Kubeflow Pipelines host (kfp.Client)."""
    import kfp

    client = kfp.Client(host=host)
    found = []
    for pipeline in client.list_pipelines(page_size=100).pipelines or []:
        versions = client.list_pipeline_versions(pipeline.pipeline_id, page_size=20).pipeline_versions or []
        found.append(
            {"name": pipeline.display_name, "versions": [v.display_name for v in versions], "id": pipeline.pipeline_id}
        )
    return found


def start_run(
    workspace: Workspace,
    pipeline: str,
    profile: str,
    overrides: dict[str, Any],
    actor: str = "",
    kfp_host: str = "",
) -> LocalRun:
    """Validate, then start the run and return at once. Raises ProfileError (bad field) or RunError (bad pipeline or
    target) before anything starts. Locally the run goes on in `medfoundry run --run-id ...` in its own process group;
    with a KFP host it is submitted to the cluster."""
    from medfoundry.pipeline.compiler import PIPELINES

    if pipeline not in PIPELINES:
        raise RunError(f"unknown pipeline {pipeline!r}: available {', '.join(sorted(PIPELINES))}")
    resolved = resolve_profile(profile, overrides)
    if kfp_host:
        from medfoundry.cluster.pipelines import submit_pipeline

        submitted = submit_pipeline(pipeline, resolved, host=kfp_host, experiment="medfoundry", namespace=None)
        from medfoundry import tracking

        run = LocalRun(run_id=submitted.run_id, pipeline=pipeline, profile=resolved.name, workspace=str(workspace.root))
        # Stage runs carry the KFP run id (the pipeline's PIPELINE_JOB_ID placeholder) in the cluster's MLflow.
        run.started_by, run.target, run.tracking_uri = actor, kfp_host, tracking.resolve_tracking_uri(resolved)
        run.save(workspace.runs)
        return run
    if resolved.cluster.mode != "local":
        raise RunError(
            f"profile {resolved.name!r} targets a cluster (cluster.mode={resolved.cluster.mode}): configure a KFP host"
        )
    run = LocalRun(run_id=new_run_id(), pipeline=pipeline, profile=resolved.name, workspace=str(workspace.root))
    run.started_by = actor
    log_path = workspace.runs / f"{run.run_id}.log"
    run.log_path = str(log_path)
    command = [sys.executable, "-m", "medfoundry.cli", "run", pipeline, "--profile", profile, "--run-id", run.run_id]
    for key, value in overrides.items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    env = {**os.environ, "MEDFOUNDRY_HOME": str(workspace.root), "PYTHONUNBUFFERED": "1"}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    run.pid = proc.pid
    run.save(workspace.runs)
    return run


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap our own child so it does not linger as a zombie
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def get_run(workspace: Workspace, run_id: str) -> LocalRun:
    path = workspace.runs / f"{Path(run_id).name}.json"
    if not path.is_file():
        raise RunError(f"no run {run_id!r} in {workspace.runs}")
    run = LocalRun.load(path)
    if run.status == "RUNNING" and run.target:
        return _refresh_cluster_run(run, workspace)
    if run.status == "RUNNING" and run.pid and not _alive(run.pid):
        run = LocalRun.load(path)  # it may have written its result just now
        if run.status == "RUNNING":
            run.status, run.finished = "FAILED", time.time()
            run.error = run.error or "the run's process exited without a result (see the log)"
            run.save(workspace.runs)
    return run


# KFP v2 run states -> ours; anything else is still going.
_KFP_STATES = {"SUCCEEDED": "SUCCEEDED", "FAILED": "FAILED", "CANCELED": "CANCELLED", "SKIPPED": "CANCELLED"}


def _refresh_cluster_run(run: LocalRun, workspace: Workspace) -> LocalRun:
    """A run on Kubeflow Pipelines: its state from the API (unreachable: shown as it was last known)."""
    import kfp

    try:
        state = str(kfp.Client(host=run.target).get_run(run.run_id).state or "")
    except Exception:  # noqa: BLE001 - the cluster may be unreachable from here; keep the last known state
        return run
    if state.upper() in _KFP_STATES:
        run.status, run.finished = _KFP_STATES[state.upper()], time.time()
        run.save(workspace.runs)
    return run


def list_runs(workspace: Workspace, offset: int = 0, limit: int = 50) -> tuple[list[LocalRun], int]:
    """Newest first; (page, total). Only the run files are read, so the list stays fast with thousands of runs."""
    files = sorted(workspace.runs.glob("*.json"), key=lambda p: p.name, reverse=True)
    page = [get_run(workspace, p.stem) for p in files[offset : offset + limit]]
    return page, len(files)


def cancel_run(workspace: Workspace, run_id: str, actor: str = "") -> LocalRun:
    run = get_run(workspace, run_id)
    if run.status in TERMINAL:
        raise RunError(f"run {run_id} has already ended ({run.status})")
    if run.target:
        import kfp

        kfp.Client(host=run.target).terminate_run(run.run_id)
        run.status, run.finished, run.error = "CANCELLED", time.time(), f"cancelled by {actor or 'a user'}"
        run.save(workspace.runs)
        return run
    if not run.pid:
        raise RunError(f"run {run_id} was not started from here: cancel it where it runs")
    try:
        os.killpg(run.pid, signal.SIGTERM)  # the run and the stage subprocesses kfp.local started
    except ProcessLookupError:
        pass
    deadline = time.time() + 10
    while _alive(run.pid) and time.time() < deadline:
        time.sleep(0.2)
    if _alive(run.pid):
        os.killpg(run.pid, signal.SIGKILL)
    run = LocalRun.load(workspace.runs / f"{run.run_id}.json")
    run.status, run.finished = "CANCELLED", time.time()
    run.error = f"cancelled by {actor or 'a user'}"
    run.save(workspace.runs)
    return run


def read_log(run: LocalRun, tail_bytes: int | None = LOG_TAIL_BYTES) -> str:
    path = Path(run.log_path) if run.log_path else None
    if path is None or not path.is_file():
        return ""
    with path.open("rb") as fh:
        if tail_bytes is not None:
            fh.seek(max(0, path.stat().st_size - tail_bytes))
        return fh.read().decode("utf-8", errors="replace")


@dataclass
class RunDetail:
    run: LocalRun
    stages: list[StageStatus]
    mlflow_runs: dict[str, str]  # stage -> MLflow run id (parent under "pipeline")


def run_detail(run: LocalRun) -> RunDetail:
    """Per-stage status, live while the run goes on: stage runs are found by the pipeline-run tag in MLflow."""
    from medfoundry import tracking
    from medfoundry.pipeline.compiler import pipeline_module
    from medfoundry.pipeline.stages import KEY_FIGURE_TAG

    stages = list(pipeline_module(run.pipeline).STAGES)
    found: dict[str, Any] = {}
    parent_id = run.parent_run_id
    if run.tracking_uri:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=run.tracking_uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        if experiments:
            for found_run in client.search_runs(
                experiments, filter_string=f"tags.`{tracking.PIPELINE_RUN_TAG}` = '{run.run_id}'", max_results=200
            ):
                stage = found_run.data.tags.get(tracking.STAGE_TAG)
                if stage:
                    found[stage] = found_run
                elif "mlflow.parentRunId" not in found_run.data.tags:
                    parent_id = parent_id or found_run.info.run_id
    rows = []
    for name in stages:
        child = found.get(name)
        if child is None:
            waiting = "SKIPPED (gate refused)" if name == "promote" and run.gate == "refused" else "NOT RUN"
            rows.append(StageStatus(name, "PENDING" if run.status == "RUNNING" else waiting))
            continue
        rows.append(
            StageStatus(
                name, child.info.status, child.data.metrics.get("duration_s"),
                child.data.tags.get(KEY_FIGURE_TAG, ""), child.info.run_id,
            )
        )
    links = {row.stage: row.run_id for row in rows if row.run_id}
    if parent_id:
        links["pipeline"] = parent_id
    return RunDetail(run, rows, links)
