"""`medfoundry serve` as a real process loading models:/NAME@champion from a sqlite registry; `medfoundry query`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from typer.testing import CliRunner

KEY = "cli-key"


def test_serve_registry_model_and_query(tiny_model_dir, tmp_path, free_port):
    import mlflow
    from pydicom.data import get_testdata_file

    from medfoundry.cli import app
    from medfoundry.release import registry

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        experiment = mlflow.create_experiment("serve", artifact_location=(tmp_path / "art").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = registry.register_model_version(tiny_model_dir, "medvlm", {"base_model": "tiny"}, {"heldout/accuracy": 0.5})
        registry.set_alias("medvlm", "champion", info.version)
    finally:
        mlflow.set_tracking_uri(previous_uri)

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MEDFOUNDRY_API_KEY": KEY, "MEDFOUNDRY_HOME": str(tmp_path / "ws")}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "medfoundry.cli", "serve", "--model", "models:/medvlm@champion", "--port", str(port),
         "--max-new-tokens", "8"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.5)
        assert f"Uvicorn running on http://127.0.0.1:{port}" in (tmp_path / "serve.log").read_text()

        runner = CliRunner()
        dicom = get_testdata_file("CT_small.dcm")
        result = runner.invoke(app, ["query", "Which organ is shown?", "--image", dicom, "--endpoint", url, "--api-key", KEY])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["query", "Hi", "--endpoint", url, "--api-key", KEY, "--no-stream", "--max-tokens", "3"])
        assert result.exit_code == 0, result.output
        refused = runner.invoke(app, ["query", "Hi", "--endpoint", url, "--api-key", "wrong"])
        assert refused.exit_code == 1 and "403" in refused.output
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) is not None
        log.close()
    assert "Which organ" not in (tmp_path / "serve.log").read_text()  # prompts are not logged
