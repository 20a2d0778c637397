"""A promoted model KServe can load: real `mlflow server --serve-artifacts --artifacts-destination s3://...` on
SeaweedFS, promotion, KServe's own storage-initializer code (`kserve-storage`) downloading the storageUri into a
folder, and our model server loading that folder and answering one OpenAI chat request.

Before the fix, the storageUri of a version registered through the artifact proxy was
`file:///<cwd>/mlflow-artifacts%3A/...`, which no KServe pod can download.
"""

from __future__ import annotations

import filecmp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY

MLFLOW_BUCKET = "medfoundry-mlflow"
MODELS_BUCKET = "medfoundry-models"
CORPUS = ["The chest radiograph shows a right lower lobe pneumonia with a small pleural effusion."] * 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env(s3_server):
    """Credentials and endpoint as the chart gives them to MLflow, KServe's storage initializer and our steps."""
    saved = dict(os.environ)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_ENDPOINT_URL": s3_server,
            "MLFLOW_S3_ENDPOINT_URL": s3_server,
            "AWS_DEFAULT_REGION": "us-east-1",
            "S3_USE_HTTPS": "0",
        }
    )
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server)
    for bucket in (MLFLOW_BUCKET, MODELS_BUCKET):
        if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
            s3.create_bucket(Bucket=bucket)
    yield s3_server
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def mlflow_server(s3_env, tmp_path_factory):
    """`mlflow server` as the chart starts it: artifacts proxied to an S3 bucket; bound to 127.0.0.1."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--serve-artifacts", "--artifacts-destination", f"s3://{MLFLOW_BUCKET}",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("mlflow server did not become healthy in 120 s")
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from medfoundry.config import load_profile
    from medfoundry.models.loading import build_base_model

    out = tmp_path_factory.mktemp("roundtrip-model")
    build_base_model(load_profile("tiny").model, CORPUS, out)
    return out


def _profile(workspace: Path, tracking_uri: str, **overrides):
    from medfoundry import tracking
    from medfoundry.config import load_profile

    profile = load_profile(
        "tiny",
        {
            "workspace": str(workspace),
            "tracking.uri": tracking_uri,
            "tracking.artifacts_destination": f"s3://{MLFLOW_BUCKET}",
            **overrides,
        },
    )
    tracking.configure(profile)
    return profile


def _download_with_kserve(uri: str, out: Path) -> Path:
    from kserve_storage import Storage

    return Path(Storage.download(uri, str(out)))


def _same_files(a: Path, b: Path) -> bool:
    """Every file of `a` is in `b` with the same bytes (and `b` has nothing else but a publication marker)."""
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file() and p.name != ".complete")
    return all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def test_promoted_proxy_artifacts_download_with_kserve_and_serve(mlflow_server, tiny_model, workspace, tmp_path):
    from medfoundry.config.release import ServingConfig
    from medfoundry.release.promote import promote_model
    from medfoundry.release.registry import register_model_version
    from medfoundry.serving.model import MedVLMModel
    from medfoundry.serving.server import BackgroundServer, ServerSettings

    profile = _profile(workspace, mlflow_server)
    info = register_model_version(tiny_model, "roundtrip-medvlm", {"git_sha": "abc1234"}, {})
    assert (info.artifact_uri or info.source).startswith("mlflow-artifacts:")  # what --serve-artifacts hands out
    result = promote_model(profile, info.name, info.version, "dev", gate_checked=True)
    manifest = yaml.safe_load(result.manifest_path.read_text())
    uri = manifest["spec"]["predictor"]["model"]["storageUri"]
    assert uri.startswith(f"s3://{MLFLOW_BUCKET}/") and "mlflow-artifacts" not in uri, uri

    served = _download_with_kserve(uri, tmp_path / "mnt-models")
    assert _same_files(tiny_model, served)

    serving = ServingConfig(max_new_tokens=4)
    model = MedVLMModel("medvlm", str(served), serving)
    with BackgroundServer(model, ServerSettings(port=_free_port(), serving=serving)) as url:
        reply = httpx.post(
            f"{url}/openai/v1/chat/completions",
            json={"model": "medvlm", "messages": [{"role": "user", "content": "Any effusion?"}], "max_tokens": 4},
            timeout=60,
        )
        # KServe v1 is not offered (before: the route existed and answered 400 to every payload).
        v1 = httpx.post(f"{url}/v1/models/medvlm:predict", json={"instances": [{"text": "Any effusion?"}]}, timeout=10)
    assert v1.status_code == 404, v1.text
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert 1 <= body["usage"]["completion_tokens"] <= 4


def test_logged_model_source_maps_to_object_store(mlflow_server, tiny_model, workspace, tmp_path):
    """MLflow 3 registers a LoggedModel (`models:/m-<id>`) as the version's source: it resolves to the bucket too."""
    import mlflow

    from medfoundry.release.manifests import model_storage_uri
    from medfoundry.release.registry import get_version

    profile = _profile(workspace, mlflow_server)
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("roundtrip-logged-model")
    logged = client.create_logged_model(experiment_id=experiment_id, name="medvlm")
    client.log_model_artifacts(logged.model_id, str(tiny_model))
    client.create_registered_model("roundtrip-logged")
    mv = client.create_model_version("roundtrip-logged", source=f"models:/{logged.model_id}", model_id=logged.model_id)
    info = get_version("roundtrip-logged", mv.version)
    assert info.source == f"models:/{logged.model_id}"

    uri = model_storage_uri(info, profile)
    assert uri.startswith(f"s3://{MLFLOW_BUCKET}/") and logged.model_id in uri, uri
    assert _same_files(tiny_model, _download_with_kserve(uri, tmp_path / "mnt-models"))


def test_local_artifacts_are_published_to_the_object_store(s3_env, tiny_model, workspace, tmp_path, monkeypatch):
    """A version whose artifacts sit in a local folder (sqlite tracking, no proxy) is copied into the profile's
    object store, content-addressed, so the storageUri is downloadable; a second promotion reuses the copy."""
    from medfoundry.release.manifests import model_storage_uri
    from medfoundry.release.registry import register_model_version

    profile = _profile(
        workspace, f"sqlite:///{workspace / 'mlflow.db'}",
        **{"storage.uri": f"s3://{MODELS_BUCKET}", "storage.endpoint_url": s3_env},
    )
    info = register_model_version(tiny_model, "local-medvlm", {}, {})
    local = info.artifact_uri or info.source
    assert "://" not in local or local.startswith("file://")
    uri = model_storage_uri(info, profile)
    assert uri.startswith(f"s3://{MODELS_BUCKET}/models/local-medvlm/"), uri
    assert model_storage_uri(info, profile) == uri
    assert _same_files(tiny_model, _download_with_kserve(uri, tmp_path / "mnt-models"))


def test_unreachable_locations_fail_clearly(workspace):
    from medfoundry.config import load_profile
    from medfoundry.release.manifests import ModelStorageError, model_storage_uri
    from medfoundry.release.registry import ModelVersionInfo

    profile = load_profile("tiny", {"workspace": str(workspace)})
    proxied = ModelVersionInfo("m", "3", "mlflow-artifacts:/1/abc/artifacts/model", "abc")
    with pytest.raises(ModelStorageError, match="artifacts_destination"):
        model_storage_uri(proxied, profile)
    # A laptop run with a local store keeps a file:// URI (only a local server can load it).
    local = ModelVersionInfo("m", "3", str(workspace / "mlruns" / "model"), "abc")
    assert model_storage_uri(local, profile) == (workspace / "mlruns" / "model").resolve().as_uri()
    assert model_storage_uri(ModelVersionInfo("m", "3", "s3://b/k/model", None), profile) == "s3://b/k/model"
