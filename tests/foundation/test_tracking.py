"""Tracking: one parent run per pipeline run, nested stage runs found again from another process's view."""

from __future__ import annotations

import mlflow
import pytest

from medfoundry import tracking
from medfoundry.config import load_profile
from medfoundry.pipeline import stages


@pytest.fixture
def profile(workspace):
    return load_profile("tiny")


def test_default_store_is_sqlite_in_the_workspace(profile, workspace):
    assert tracking.resolve_tracking_uri(profile) == f"sqlite:///{workspace.resolve() / 'mlflow.db'}"


def test_env_tracking_uri_wins(profile, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/other.db")
    assert tracking.resolve_tracking_uri(profile).endswith("other.db")


def test_parent_and_nested_stage_runs(profile, monkeypatch):
    parent_id = tracking.start_pipeline_run(profile, "medical-mllm-recipe", "run-123")

    def fake_stage(ctx, out):  # a registered stage function, as the pipeline calls it
        out.write_text("done")
        return {"records": 42, "note": "hello", "skipped": None}

    monkeypatch.setitem(stages.STAGES, "unit", fake_stage)
    monkeypatch.setitem(stages.KEY_FIGURES, "unit", ("records", "{:,.0f}"))
    import tempfile
    from pathlib import Path

    out = Path(tempfile.mkdtemp()) / "x.txt"
    figures = stages.run_stage("unit", profile.to_yaml(), parent_id, paths={"out": str(out)})
    assert figures["records"] == 42 and out.read_text() == "done"

    children = tracking.stage_runs(parent_id)
    assert [c.data.tags[tracking.STAGE_TAG] for c in children] == ["unit"]
    child = children[0]
    assert child.data.metrics["records"] == 42
    assert child.data.metrics["duration_s"] >= 0
    assert child.data.tags[stages.KEY_FIGURE_TAG] == "records=42"
    assert child.data.tags["medfoundry.note"] == "hello"
    assert child.data.tags[tracking.PIPELINE_RUN_TAG] == "run-123"
    parent = mlflow.get_run(parent_id)
    assert parent.data.tags["medfoundry.config_hash"]
    assert parent.data.params["sft.max_steps"] == str(profile.sft.max_steps)


def test_failed_stage_marks_its_run_failed(profile, monkeypatch):
    parent_id = tracking.start_pipeline_run(profile, "medical-mllm-recipe", "run-fail")

    def broken(ctx):
        raise RuntimeError("boom")

    monkeypatch.setitem(stages.STAGES, "broken", broken)
    monkeypatch.setitem(stages.KEY_FIGURES, "broken", ("x", "{}"))
    with pytest.raises(RuntimeError, match="boom"):
        stages.run_stage("broken", profile.to_yaml(), parent_id)
    (child,) = tracking.stage_runs(parent_id)
    assert child.info.status == "FAILED"
