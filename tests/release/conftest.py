"""A profile whose workspace (sqlite MLflow, GitOps repo) lives in the test's tmp dir."""

from __future__ import annotations

import shutil

import pytest

from medfoundry.config import load_profile


@pytest.fixture(scope="session")
def migrated_mlflow_db(tmp_path_factory):
    """An empty MLflow sqlite store, created once: schema migrations take seconds, copying the file does not."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def profile(workspace, migrated_mlflow_db):
    from medfoundry import tracking

    shutil.copyfile(migrated_mlflow_db, workspace / "mlflow.db")
    prof = load_profile(
        "tiny",
        {
            "workspace": str(workspace),
            "gates.min_scores": {"heldout": 0.3},
            "gates.max_regression": 0.02,
            "gates.max_hallucination_rate": 0.2,
            "gates.max_metrics": {},
        },
    )
    tracking.configure(prof)
    return prof


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2_vl"}')
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    return folder
