"""`medfoundry pipelines upload` and `submit` against a fake Kubeflow Pipelines REST API (v2beta1) served by kmock.

The fake implements only the endpoints kfp.Client calls here (healthz, pipelines list/upload, versions
list/upload, experiments, runs) with in-memory state; kfp.Client itself (sync) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import kmock as kmocklib
import pytest
import yaml

from medfoundry.cluster.pipelines import pipeline_version_name, submit_pipeline, upload_pipeline
from medfoundry.images import image_tag

PIPELINE = "medical-mllm-recipe"
API = "/apis/v2beta1"


class FakeKFP:
    """In-memory pipelines, versions, experiments and runs, shaped like the KFP v2beta1 API's JSON."""

    def __init__(self) -> None:
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, list[dict]] = {}
        self.packages: dict[str, bytes] = {}
        self.experiments: list[dict] = []
        self.runs: list[dict] = []

    @staticmethod
    def _name_filter(request) -> str | None:
        raw = request.params.get("filter")
        if not raw:
            return None
        [predicate] = json.loads(raw)["predicates"]
        assert predicate["key"] == "display_name" and predicate["operation"] in (1, "EQUALS")
        return predicate.get("stringValue", predicate.get("string_value"))

    @staticmethod
    def _uploaded_file(request) -> bytes:
        body = request.body
        assert b'name="uploadfile"' in body, "the package must arrive as the multipart field 'uploadfile'"
        return body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]

    def _new_version(self, pipeline_id: str, name: str, package: bytes) -> dict:
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": uuid.uuid4().hex,
            "display_name": name,
            "name": name,
        }
        self.versions[pipeline_id].append(version)
        self.packages[version["pipeline_version_id"]] = package
        return version

    def list_pipelines(self, request):
        name = self._name_filter(request)
        found = [p for p in self.pipelines.values() if name is None or p["display_name"] == name]
        return {"pipelines": found, "total_size": len(found)} if found else {}

    def upload_pipeline(self, request):
        name = request.params["name"]
        assert all(p["display_name"] != name for p in self.pipelines.values()), "pipeline uploaded twice"
        pipeline = {"pipeline_id": uuid.uuid4().hex, "display_name": name, "name": name}
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        self.versions[pipeline["pipeline_id"]] = []
        # The KFP backend names the first version after the pipeline.
        self._new_version(pipeline["pipeline_id"], name, self._uploaded_file(request))
        return pipeline

    def upload_version(self, request):
        pipeline_id = request.params["pipelineid"]
        name = request.params["name"]
        assert all(v["display_name"] != name for v in self.versions[pipeline_id]), "version uploaded twice"
        return self._new_version(pipeline_id, name, self._uploaded_file(request))

    def list_versions(self, request):
        pipeline_id = request.url.path.split("/")[-2]
        name = self._name_filter(request)
        found = [v for v in self.versions.get(pipeline_id, []) if name is None or v["display_name"] == name]
        return {"pipeline_versions": found, "total_size": len(found)} if found else {}

    def list_experiments(self, request):
        name = self._name_filter(request)
        found = [e for e in self.experiments if e["display_name"] == name]
        return {"experiments": found, "total_size": len(found)} if found else {}

    def create_experiment(self, request):
        experiment = {"experiment_id": uuid.uuid4().hex, "display_name": request.data["display_name"]}
        self.experiments.append(experiment)
        return experiment

    def create_run(self, request):
        run = {**request.data, "run_id": uuid.uuid4().hex}
        self.runs.append(run)
        return run

    def install(self, kmock) -> None:
        kmock["get", f"{API}/healthz"] << {"multi_user": False}
        kmock["get", f"{API}/pipelines"] << self.list_pipelines
        kmock["post", f"{API}/pipelines/upload"] << self.upload_pipeline
        kmock["post", f"{API}/pipelines/upload_version"] << self.upload_version
        kmock["get", re.compile(rf"{API}/pipelines/[^/]+/versions")] << self.list_versions
        kmock["get", f"{API}/experiments"] << self.list_experiments
        kmock["post", f"{API}/experiments"] << self.create_experiment
        kmock["post", f"{API}/runs"] << self.create_run


@pytest.fixture
def kfp_api(kmock):
    fake = FakeKFP()
    fake.install(kmock)
    return fake, str(kmock.url).rstrip("/")


@pytest.fixture
def package(tmp_path):
    path = tmp_path / "medical-mllm-recipe.yaml"
    path.write_text(yaml.safe_dump({"pipelineInfo": {"name": PIPELINE}, "schemaVersion": "2.1.0"}))
    return path


def _client(host):
    import kfp

    return kfp.Client(host=host)


def _upload(host, *args, **kwargs):
    # kfp.Client talks to the fake from a worker thread: built on the event loop's thread, it would block the loop.
    return upload_pipeline(*args, client=_client(host), **kwargs)


pytestmark = [pytest.mark.kmock(cls=kmocklib.RawHandler), pytest.mark.filterwarnings("ignore::FutureWarning")]


def test_version_name_is_package_version_git_sha_and_profile_hash(monkeypatch):
    from medfoundry.config import load_profile, profile_hash

    monkeypatch.setenv("MEDFOUNDRY_GIT_SHA", "abcdef0123456789")
    production = load_profile("production-7b")
    assert pipeline_version_name(production) == f"{image_tag()}-{profile_hash(production)[:8]}"
    assert pipeline_version_name(production).startswith("0.1.0-abcdef0-")
    assert pipeline_version_name(load_profile("tiny")) != pipeline_version_name(production)
    assert pipeline_version_name(load_profile("production-7b")) == pipeline_version_name(production)


@pytest.mark.asyncio
async def test_first_upload_creates_the_pipeline_then_later_uploads_add_versions(kfp_api, package, monkeypatch):
    fake, host = kfp_api
    monkeypatch.setenv("MEDFOUNDRY_GIT_SHA", "1111111")
    first = await asyncio.to_thread(_upload, host, package, PIPELINE, version_name="0.1.0-1111111-aaaa")
    assert first.created_pipeline and first.created_version and first.version_name == "0.1.0-1111111-aaaa"
    [pipeline] = fake.pipelines.values()
    assert [v["display_name"] for v in fake.versions[pipeline["pipeline_id"]]] == [PIPELINE, "0.1.0-1111111-aaaa"]
    assert fake.packages[first.version_id] == package.read_bytes()

    later = await asyncio.to_thread(_upload, host, package, PIPELINE, version_name="0.1.0-2222222-aaaa")
    assert not later.created_pipeline and later.created_version
    assert later.pipeline_id == first.pipeline_id and later.version_name == "0.1.0-2222222-aaaa"
    assert len(fake.pipelines) == 1 and len(fake.versions[first.pipeline_id]) == 3

    again = await asyncio.to_thread(_upload, host, package, PIPELINE, version_name="0.1.0-2222222-aaaa")
    assert not again.created_version and again.version_id == later.version_id  # re-running is harmless
    assert len(fake.versions[first.pipeline_id]) == 3


def result_pipeline_id(fake) -> str:
    [pipeline] = fake.pipelines.values()
    return pipeline["pipeline_id"]


@pytest.mark.asyncio
async def test_submit_runs_the_version_compiled_for_its_profile(kfp_api, monkeypatch):
    """`pipelines upload` for one profile, then `submit` with another: the run must use a version compiled for the
    submitted profile (before, both were named <version>-<sha> and submit ran the upload's IR). Real compiles."""
    from typer.testing import CliRunner

    from medfoundry.cli import app

    fake, host = kfp_api
    monkeypatch.setenv("MEDFOUNDRY_GIT_SHA", "3333333")
    runner = CliRunner()
    uploaded = await asyncio.to_thread(
        runner.invoke, app, ["pipelines", "upload", "--profile", "tiny", "--host", host]
    )
    assert uploaded.exit_code == 0, uploaded.output
    assert "created pipeline and version" in uploaded.output
    again = await asyncio.to_thread(runner.invoke, app, ["pipelines", "upload", "--profile", "tiny", "--host", host])
    assert "version already present" in again.output

    from medfoundry.config import load_profile

    profile = load_profile("production-7b")
    result = await asyncio.to_thread(lambda: submit_pipeline(PIPELINE, profile, host=host, client=_client(host)))
    [run] = fake.runs
    assert run["pipeline_version_reference"] == {"pipeline_id": result_pipeline_id(fake), "pipeline_version_id": result.version_id}
    assert result.version_name == pipeline_version_name(profile)
    ran = fake.packages[result.version_id].decode()
    assert "nvidia.com/gpu" in ran and "resourceCpuRequest" in ran  # the production profile's cluster settings
    tiny_version = next(v for v in fake.versions[result_pipeline_id(fake)] if v["display_name"].endswith(
        pipeline_version_name(load_profile("tiny"))[-8:]))
    assert "nvidia.com/gpu" not in fake.packages[tiny_version["pipeline_version_id"]].decode()
    assert run["service_account"] == "medfoundry-pipeline"
    assert yaml.safe_load(run["runtime_config"]["parameters"]["profile"])["name"] == "production-7b"
    assert result.run_id == run["run_id"] and result.url.endswith(f"/#/runs/details/{run['run_id']}")
    assert [e["display_name"] for e in fake.experiments] == ["medfoundry"]
