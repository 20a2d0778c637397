"""The recipe compiled for the production-7b profile, read back from its IR: every task has CPU/memory requests and
limits and a retry policy, TrainJob launchers run on the CPU image, and the data stages' cache key holds no
run-specific value (before: every task took the MLflow parent run id, so the cache could never hit)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

DATA_STAGES = ("ingest", "validate", "curate")
LAUNCHERS = ("pretrain", "sft", "rl")


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    from medfoundry.config import load_profile
    from medfoundry.pipeline.compiler import compile_pipeline

    path = compile_pipeline("medical-mllm-recipe", Path(tmp_path_factory.mktemp("ir")), load_profile("production-7b"))
    return list(yaml.safe_load_all(path.read_text()))[0]


def _all_tasks(spec):
    """Every executing task of the pipeline, sub-DAGs (the gate's condition branch) included."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    for dag in dags:
        for name, task in dag["tasks"].items():
            if "dag" not in spec["components"][task["componentRef"]["name"]]:
                yield name, task


def test_every_task_has_requests_limits_and_retries(ir):
    tasks = dict(_all_tasks(ir))
    assert set(tasks) >= {"start-tracking", *DATA_STAGES, *LAUNCHERS, "evaluate", "register", "gate", "promote"}
    for name, task in tasks.items():
        executor = ir["components"][task["componentRef"]["name"]]["executorLabel"]
        resources = ir["deploymentSpec"]["executors"][executor]["container"].get("resources", {})
        for key in ("resourceCpuRequest", "resourceMemoryRequest", "resourceCpuLimit", "resourceMemoryLimit"):
            assert resources.get(key), f"{name}: no {key}"
        assert task.get("retryPolicy", {}).get("maxRetryCount", 0) >= 1, f"{name}: no retry policy"


def test_trainjob_launchers_run_on_the_cpu_image(ir):
    executors = ir["deploymentSpec"]["executors"]
    for stage in LAUNCHERS:
        assert "/medfoundry-cpu:" in executors[f"exec-{stage}"]["container"]["image"]
    assert "/medfoundry-gpu:" in executors["exec-evaluate"]["container"]["image"]


def test_data_stage_cache_keys_hold_no_run_specific_input(ir):
    tasks = ir["root"]["dag"]["tasks"]
    for stage in DATA_STAGES:
        parameters = tasks[stage].get("inputs", {}).get("parameters", {})
        assert set(parameters) == {"profile"}, f"{stage} takes {sorted(parameters)}"
        assert tasks[stage].get("cachingOptions", {}).get("enableCache") is True
    assert "start-tracking" in tasks["ingest"]["dependentTasks"]  # the parent run exists before they look it up
