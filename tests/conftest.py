"""Root fixtures: shared data, an isolated workspace per test, markers that skip with a visible reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_path() -> Path | None:
    configured = os.environ.get("MEDFOUNDRY_SHARED")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared"
    return path if (path / "data").is_dir() else None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = shared_path()
    if path is None:
        pytest.skip("../shared (or $MEDFOUNDRY_SHARED) not found: real-data test skipped")
    return path


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """An isolated MEDFOUNDRY_HOME; MLFLOW_TRACKING_URI is cleared so tests never touch a real server."""
    home = tmp_path / "ws"
    home.mkdir()
    monkeypatch.setenv("MEDFOUNDRY_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


def pytest_collection_modifyitems(config, items):
    run_slow = os.environ.get("MEDFOUNDRY_RUN_SLOW") == "1"
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - torch missing means no GPU either
        has_gpu = False
    skip_slow = pytest.mark.skip(reason="slow test: set MEDFOUNDRY_RUN_SLOW=1 to run")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
