"""The whole recipe through kfp.local on the tiny profile, exactly as `make demo` runs it, checked in MLflow."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest

from medfoundry.release.registry import version_by_alias
from pipelines.medical_mllm_recipe import STAGES

LINEAGE_TAGS = {"pipeline_run_id", "dataset_hash", "raw_dataset_hash", "base_model", "config_hash", "git_sha"}


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("recipe")
    env = {**os.environ, "MEDFOUNDRY_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(
        [sys.executable, "-m", "medfoundry.cli", "run", "medical-mllm-recipe", "--profile", "tiny"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    return home, result


def test_recipe_runs_end_to_end(recipe_run):
    home, result = recipe_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    for stage in STAGES:
        assert stage in out
    assert "promotion gate: passed" in out
    assert "candidate, dev" in out  # the tiny profile promotes to dev; `champion` is production's alias


def test_mlflow_has_parent_nine_stage_runs_and_a_promoted_model(recipe_run, monkeypatch):
    home, result = recipe_run
    assert result.returncode == 0
    uri = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("medical-mllm-recipe")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(c.data.tags["medfoundry.stage"] for c in children) == sorted(STAGES)
    assert all(c.info.status == "FINISHED" for c in children)
    assert parent.data.tags["medfoundry.gate"] == "passed"
    by_stage = {c.data.tags["medfoundry.stage"]: c for c in children}
    # Real work happened: data came in, training moved the loss, evaluation scored items.
    assert by_stage["ingest"].data.metrics["records"] > 100
    assert by_stage["pretrain"].data.metrics["final_loss"] > 0
    assert by_stage["evaluate"].data.metrics["heldout/n"] > 0
    assert by_stage["rl"].data.metrics["rubric_coverage"] >= 0.8  # of the tiny profile's own RL rows (#13)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert version_by_alias("medfoundry-medvlm", "champion") is None
    champion = version_by_alias("medfoundry-medvlm", "dev")
    assert champion is not None
    version = client.get_model_version("medfoundry-medvlm", champion.version)
    assert {"candidate", "dev"} <= set(version.aliases)
    # Lineage MLflow understands: the version is a LoggedModel carrying the evaluation metrics, and the training
    # runs list the curated dataset as an input whose digest is its content hash.
    linked = {m.key: m.value for m in mlflow.get_logged_model(champion.model_id).metrics}
    assert linked["heldout/accuracy"] == by_stage["evaluate"].data.metrics["heldout/accuracy"]
    for stage in ("pretrain", "sft", "rl"):
        (dataset_input,) = client.get_run(by_stage[stage].info.run_id).inputs.dataset_inputs
        assert champion.lineage["dataset_hash"].startswith(dataset_input.dataset.digest), stage
        assert {t.key: t.value for t in dataset_input.tags}["medfoundry.content_hash"] == champion.lineage["dataset_hash"]
    assert LINEAGE_TAGS <= set(champion.lineage), f"missing lineage tags: {LINEAGE_TAGS - set(champion.lineage)}"
    assert champion.lineage["pipeline_run_id"] == parent.data.tags["medfoundry.pipeline_run_id"]
    assert all(value for key, value in champion.lineage.items() if key in LINEAGE_TAGS)


def test_runs_command_lists_the_run(recipe_run):
    home, result = recipe_run
    env = {**os.environ, "MEDFOUNDRY_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    listed = subprocess.run(
        [sys.executable, "-m", "medfoundry.cli", "runs"], capture_output=True, text=True, env=env, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert "SUCCEEDED" in listed.stdout and "promote" in listed.stdout
