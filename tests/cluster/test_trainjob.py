"""TrainJob manifests from cluster profiles, and submission / status streaming / failure against kmock's in-memory
Kubernetes API. The kubernetes client is synchronous, so it runs in a thread while the test plays the controller."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from medfoundry.cluster import trainjob
from medfoundry.cluster.crds import shared_crd_dir, validate_custom_resource
from medfoundry.cluster.trainjob import TrainJobFailed, TrainJobTimeout, build_trainjob, submit_and_wait
from medfoundry.config import load_profile
from medfoundry.images import is_versioned_image

NAMESPACE = "medfoundry"
ARGS = ["train", "sft", "--profile", "production-7b"]


@pytest.fixture
def production():
    return load_profile("production-7b")


def test_trainjob_from_the_production_profile(production):
    manifest = build_trainjob(production, "sft", ARGS, "mf-sft-0001")
    trainer = manifest["spec"]["trainer"]
    assert manifest["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert manifest["spec"]["runtimeRef"]["name"] == "torch-distributed"
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 8)
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "8"}
    assert trainer["command"] == ["torchrun", "--no-python", "medfoundry"] and trainer["args"] == ARGS
    assert is_versioned_image(trainer["image"]) and "medfoundry-gpu:" in trainer["image"]
    env = {e["name"]: e for e in trainer["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "medfoundry-s3",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.medfoundry.svc:5000"
    # Training reads sample weights from the chart's Feast on PostgreSQL (feast.url's ${PGPASSWORD}).
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "medfoundry-postgresql", "key": "password"}
    assert manifest["metadata"]["labels"]["medfoundry.io/deepspeed-stage"] == "3"
    [patch] = manifest["spec"]["runtimePatches"]
    [node] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"name": "cache", "persistentVolumeClaim": {"claimName": "medfoundry-cache"}} in pod["volumes"]
    assert {"name": "cache", "mountPath": "/cache"} in pod["containers"][0]["volumeMounts"]
    assert node["template"]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "medfoundry"


def test_trainjob_matches_the_crd_schema(production):
    crds = shared_crd_dir()
    if crds is None:
        pytest.skip("../shared/k8s-crds not found: CRD schema check skipped")
    manifest = build_trainjob(production, "pretrain", ARGS, "mf-pretrain-0001")
    assert validate_custom_resource(manifest, crds) == []
    manifest["spec"]["trainer"]["numNode"] = 2  # a typo the API server would silently drop
    assert validate_custom_resource(manifest, crds) == [
        "spec/trainer: Additional properties are not allowed ('numNode' was unexpected)"
    ]


def test_cpu_profile_gets_the_cpu_image_and_no_gpu_limits():
    manifest = build_trainjob(load_profile("tiny"), "sft", ["train", "sft"], "mf-tiny")
    trainer = manifest["spec"]["trainer"]
    assert "medfoundry-cpu:" in trainer["image"] and "limits" not in trainer["resourcesPerNode"]
    assert trainer["numProcPerNode"] == 1


@pytest.mark.parametrize("name", ["SFT", "1job", "job_1", "x" * 64, "job-"])
def test_invalid_names_are_refused(production, name):
    with pytest.raises(ValueError, match="DNS label"):
        build_trainjob(production, "sft", ARGS, name)


# --- against kmock's Kubernetes emulator -------------------------------------------------------------------------


def _api_client(kmock):
    from kubernetes import client

    return client.ApiClient(client.Configuration(host=str(kmock.url).rstrip("/")))


def _key(kmock, name):
    return (kmock.resource(f"{trainjob.GROUP}/{trainjob.VERSION}/{trainjob.PLURAL}"), NAMESPACE, name)


async def _created(kmock, name):
    """The TrainJob's key once the code under test has created it (up to 2 min: importing the kubernetes client is
    slow on a loaded machine)."""
    key = _key(kmock, name)
    for _ in range(6000):
        if key in kmock.objects:
            return key
        await asyncio.sleep(0.02)
    raise AssertionError("the TrainJob was never created")


async def _controller(kmock, name, statuses, step_s=0.15):
    """Plays the Trainer controller: waits for the TrainJob, then writes each status in turn."""
    key = await _created(kmock, name)
    for status in statuses:
        await asyncio.sleep(step_s)
        kmock.objects[key].patch({"status": status})


def _cond(type_, reason, message=""):
    return {"type": type_, "status": "True", "reason": reason, "message": message}


CREATED = {"conditions": [_cond("Created", "JobSetCreated")]}
RUNNING = {
    "conditions": [_cond("Created", "JobSetCreated")],
    "jobsStatus": [{"name": "node", "active": 2, "ready": 2, "succeeded": 0, "failed": 0, "suspended": 0}],
    "trainerStatus": {"progressPercentage": 40},
}


@pytest.fixture
def trainjob_api(kmock):
    kmock.resources[f"{trainjob.GROUP}/{trainjob.VERSION}/{trainjob.PLURAL}"] = {
        "kind": "TrainJob",
        "namespaced": True,
        "verbs": ["create", "get", "list", "watch", "delete"],
    }
    return kmock


@pytest.mark.asyncio
async def test_submit_streams_status_until_complete(trainjob_api, production):
    kmock = trainjob_api
    manifest = build_trainjob(production, "sft", ARGS, "mf-sft-ok")
    complete = {
        "conditions": [_cond("Created", "JobSetCreated"), _cond("Complete", "JobSetCompleted", "all nodes done")],
        "jobsStatus": [{"name": "node", "active": 0, "succeeded": 2}],
    }
    seen = []
    controller = asyncio.create_task(_controller(kmock, "mf-sft-ok", [CREATED, RUNNING, complete]))
    final = await asyncio.to_thread(
        submit_and_wait, manifest, NAMESPACE, _api_client(kmock), timeout_s=20, poll_s=0.03, on_status=seen.append
    )
    await controller
    assert final.phase == "Complete" and final.reason == "JobSetCompleted"
    assert [s.phase for s in seen] == ["Pending", "Created", "Running", "Complete"]
    assert seen[2].progress == 40
    stored = kmock.objects[_key(kmock, "mf-sft-ok")]
    assert stored["spec"] == manifest["spec"]  # what reached the API server is the manifest we built
    assert len(kmock[kmock.resource("trainer.kubeflow.org/v1alpha1/trainjobs")]["post"]) == 1


@pytest.mark.asyncio
async def test_failure_raises_the_jobs_reason(trainjob_api, production):
    kmock = trainjob_api
    manifest = build_trainjob(production, "rl", ARGS, "mf-rl-bad")
    failed = {"conditions": [_cond("Created", "JobSetCreated"), _cond("Failed", "JobSetFailed", "node-1 exited 137")]}
    seen = []
    controller = asyncio.create_task(_controller(kmock, "mf-rl-bad", [RUNNING, failed]))
    with pytest.raises(TrainJobFailed) as info:
        await asyncio.to_thread(
            submit_and_wait, manifest, NAMESPACE, _api_client(kmock), timeout_s=20, poll_s=0.03, on_status=seen.append
        )
    await controller
    assert info.value.reason == "JobSetFailed" and info.value.message == "node-1 exited 137"
    assert "mf-rl-bad failed: JobSetFailed: node-1 exited 137" in str(info.value)
    assert seen[-1].phase == "Failed"


@pytest.mark.asyncio
async def test_timeout_deletes_the_job(trainjob_api, production):
    kmock = trainjob_api
    manifest = build_trainjob(production, "pretrain", ARGS, "mf-pretrain-slow")
    with pytest.raises(TrainJobTimeout, match="not finished after 0.3s"):
        await asyncio.to_thread(submit_and_wait, manifest, NAMESPACE, _api_client(kmock), timeout_s=0.3, poll_s=0.05)
    assert kmock.objects[_key(kmock, "mf-pretrain-slow")].deleted
    assert len(kmock[kmock.resource("trainer.kubeflow.org/v1alpha1/trainjobs")]["delete"]) == 1


@pytest.mark.asyncio
async def test_a_retried_step_attaches_to_the_existing_job(trainjob_api, production):
    kmock = trainjob_api
    manifest = build_trainjob(production, "sft", ARGS, "mf-sft-retry")
    done = {"conditions": [_cond("Complete", "JobSetCompleted")]}
    kmock.objects[_key(kmock, "mf-sft-retry")] = {**manifest, "status": done}
    final = await asyncio.to_thread(submit_and_wait, manifest, NAMESPACE, _api_client(kmock), timeout_s=5, poll_s=0.03)
    assert final.phase == "Complete"


@pytest.mark.asyncio
async def test_a_job_deleted_underneath_fails_the_step(trainjob_api, production):
    kmock = trainjob_api
    manifest = build_trainjob(production, "sft", ARGS, "mf-sft-gone")

    async def delete_it():
        key = _key(kmock, "mf-sft-gone")
        while key not in kmock.objects:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        kmock.objects[key].delete()

    deleter = asyncio.create_task(delete_it())
    with pytest.raises(TrainJobFailed, match="Deleted"):
        await asyncio.to_thread(submit_and_wait, manifest, NAMESPACE, _api_client(kmock), timeout_s=10, poll_s=0.03)
    await deleter


# --- the pipeline step that launches and watches a TrainJob (stages._train_on_cluster), end to end ---------------


@pytest.fixture
def cluster_step(trainjob_api, workspace, tmp_path, monkeypatch):
    """A production-7b stage context on a sqlite MLflow store, a kubeconfig pointing at kmock, the cache claim in a
    temp folder, and a small dataset and base model to stage (through the claim)."""
    return _cluster_step(trainjob_api, workspace, tmp_path, monkeypatch, {"cluster.trainjob_inputs": "claim"})


def _cluster_step(trainjob_api, workspace, tmp_path, monkeypatch, overrides):
    from medfoundry import tracking
    from medfoundry.pipeline.stages import StageContext

    kubeconfig = tmp_path / "kubeconfig"
    server = str(trainjob_api.url).rstrip("/")
    kubeconfig.write_text(
        f"apiVersion: v1\nkind: Config\ncurrent-context: kmock\nclusters: [{{name: kmock, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: kmock, context: {cluster: kmock, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("MEDFOUNDRY_CACHE_DIR", str(tmp_path / "cache"))
    profile = load_profile(
        "production-7b",
        {"workspace": str(workspace), "tracking.uri": f"sqlite:///{workspace / 'mlflow.db'}",
         "cluster.trainjob_poll_seconds": 0.05, "cluster.kueue_queue": "gpu-queue", **overrides},
    )
    parent = tracking.start_pipeline_run(profile, "medical-mllm-recipe", "kfp-run-0042")
    data, base = tmp_path / "data", tmp_path / "base"
    for folder, name in ((data, "records.jsonl"), (base, "config.json")):
        folder.mkdir()
        (folder / name).write_text("{}\n")
    return StageContext(profile=profile, parent_run_id=parent, stage="sft"), data, base, tmp_path / "out"


def _launch(ctx, data, base, out):
    """What run_stage does around a training stage: the nested run, then the launcher."""
    from medfoundry import tracking
    from medfoundry.pipeline.stages import _train_on_cluster

    with tracking.stage_run(ctx.profile, ctx.parent_run_id, ctx.stage) as run:
        return run.info.run_id, _train_on_cluster(ctx, "sft", data, base, out)


def _job_name():
    return "mf-sft-kfp-run-0042"


async def _trainer(kmock, statuses, write_metrics: dict | None = None):
    """Plays Kubeflow Trainer and the training pods: when the job appears, writes the model and metrics to the
    `--out` folder on the shared claim (as rank 0 would), then walks the statuses."""
    import json
    from pathlib import Path

    key = await _created(kmock, _job_name())
    args = kmock.objects[key]["spec"]["trainer"]["args"]
    out = Path(args[args.index("--out") + 1])
    if write_metrics is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_metrics.json").write_text(json.dumps(write_metrics))
        (out / "model.safetensors").write_bytes(b"\0" * 8)
    for status in statuses:
        await asyncio.sleep(0.05)
        kmock.objects[key].patch({"status": status})


DONE = {"conditions": [_cond("Created", "JobSetCreated"), _cond("Complete", "JobSetCompleted")]}


@pytest.mark.asyncio
async def test_train_on_cluster_stages_inputs_runs_the_job_and_collects_the_model(trainjob_api, cluster_step):
    import mlflow

    ctx, data, base, out = cluster_step
    metrics = {"final_loss": 1.25, "steps": 3}
    trainer = asyncio.create_task(_trainer(trainjob_api, [DONE], write_metrics=metrics))
    stage_run_id, figures = await asyncio.to_thread(_launch, ctx, data, base, out)
    await trainer
    assert figures == metrics and (out / "model.safetensors").is_file()  # collected from the claim
    job = trainjob_api.objects[_key(trainjob_api, _job_name())]
    env = {e["name"]: e.get("value") for e in job["spec"]["trainer"]["env"]}
    # Curves go to the stage's nested run while training (before: no MLFLOW_RUN_ID, nothing reported).
    assert env["MLFLOW_RUN_ID"] == stage_run_id and env["MLFLOW_TRACKING_URI"] == ctx.profile.tracking.uri
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    [patch] = job["spec"]["runtimePatches"]
    pod = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    args = job["spec"]["trainer"]["args"]
    staged = args[args.index("--data") + 1]
    assert (Path(staged) / "records.jsonl").is_file()  # inputs staged on the claim the job mounts
    assert mlflow.get_run(stage_run_id).data.tags["medfoundry.trainjob"] == f"{_job_name()}: Complete"


@pytest.mark.asyncio
async def test_train_on_cluster_fails_the_step_with_the_jobs_reason(trainjob_api, cluster_step):
    ctx, data, base, out = cluster_step
    failed = {"conditions": [_cond("Failed", "JobSetFailed", "node-0 OOMKilled")]}
    trainer = asyncio.create_task(_trainer(trainjob_api, [RUNNING, failed]))
    with pytest.raises(TrainJobFailed, match="node-0 OOMKilled"):
        await asyncio.to_thread(_launch, ctx, data, base, out)
    await trainer
    assert not out.exists()


@pytest.mark.asyncio
async def test_train_on_cluster_times_out_and_deletes_the_job(trainjob_api, cluster_step):
    ctx, data, base, out = cluster_step
    ctx.profile.cluster.trainjob_timeout_hours = 0.3 / 3600
    with pytest.raises(TrainJobTimeout):
        await asyncio.to_thread(_launch, ctx, data, base, out)
    assert trainjob_api.objects[_key(trainjob_api, _job_name())].deleted


@pytest.mark.asyncio
async def test_a_retried_launcher_reattaches_to_its_finished_job(trainjob_api, cluster_step, tmp_path):
    import json

    ctx, data, base, out = cluster_step
    manifest = build_trainjob(ctx.profile, "sft", ARGS, _job_name())
    trainjob_api.objects[_key(trainjob_api, _job_name())] = {**manifest, "status": DONE}
    done_out = tmp_path / "cache" / "trainjobs" / _job_name() / "out"
    done_out.mkdir(parents=True)
    (done_out / "train_metrics.json").write_text(json.dumps({"final_loss": 0.5}))
    _, figures = await asyncio.to_thread(_launch, ctx, data, base, out)
    assert figures == {"final_loss": 0.5}
    posts = trainjob_api[trainjob_api.resource("trainer.kubeflow.org/v1alpha1/trainjobs")]["post"]
    assert len(posts) == 1  # the create was answered 409 and the step attached to the existing job


# --- TrainJob inputs through the object store (a launching step in another namespace than the job) ---------------


@pytest.fixture
def step_in_profile_namespace(trainjob_api, workspace, tmp_path, monkeypatch, s3_env):
    """The launching step runs in a Kubeflow profile namespace (`kubeflow-user`) while the TrainJob runs in
    `medfoundry`; storage is SeaweedFS. The profile leaves `cluster.trainjob_inputs` at `auto`."""
    own = tmp_path / "pod-namespace"
    own.write_text("kubeflow-user\n")
    monkeypatch.setattr(trainjob, "POD_NAMESPACE_FILE", str(own))
    overrides = {"cluster.trainjob_inputs": "auto", "storage.uri": "s3://trainjob-staging", "storage.endpoint_url": s3_env}
    ctx, data, base, out = _cluster_step(trainjob_api, workspace, tmp_path, monkeypatch, overrides)
    (data / "images").mkdir()
    (data / "images" / "scan.png").write_bytes(b"\x89PNG-not-really")
    return ctx, data, base, out


async def _pod(kmock, metrics: dict):
    """Plays Kubeflow Trainer and rank 0 of the training pod: runs the pod-side entry (`pod_paths`, what
    `medfoundry train` wraps its work in) on the TrainJob's own args against SeaweedFS, checks it found the staged
    inputs, writes a model and metrics to its --out, then marks the job complete."""
    import json

    key = await _created(kmock, _job_name())
    args = kmock.objects[key]["spec"]["trainer"]["args"]

    def arg(flag):
        return args[args.index(flag) + 1]

    def train():
        with trainjob.pod_paths(arg("--data"), arg("--model"), arg("--out"), arg("--profile")) as paths:
            found = {
                "records": (paths.data / "records.jsonl").read_text(),
                "image": (paths.data / "images" / "scan.png").is_file(),
                "model": (Path(paths.model) / "config.json").is_file(),
                "profile": load_profile(paths.profile).name,
            }
            paths.out.mkdir(parents=True, exist_ok=True)
            (paths.out / "train_metrics.json").write_text(json.dumps(metrics))
            (paths.out / "model.safetensors").write_bytes(b"\0" * 8)
        return found

    found = await asyncio.to_thread(train)
    kmock.objects[key].patch({"status": DONE})
    return found


@pytest.mark.asyncio
async def test_a_job_in_another_namespace_reads_its_inputs_from_the_object_store(trainjob_api, step_in_profile_namespace):
    """Before: a launching step in another namespace than its TrainJob was refused (WrongNamespace)."""
    import mlflow

    ctx, data, base, out = step_in_profile_namespace
    metrics = {"final_loss": 0.75, "steps": 2}
    pod = asyncio.create_task(_pod(trainjob_api, metrics))
    stage_run_id, figures = await asyncio.to_thread(_launch, ctx, data, base, out)
    found = await pod
    # The pod found every staged input: dataset (with its images), starting model, profile.
    assert found == {"records": "{}\n", "image": True, "model": True, "profile": "production-7b"}
    # The step collected the pod's upload from the object store.
    assert figures == metrics and (out / "model.safetensors").read_bytes() == b"\0" * 8
    assert mlflow.get_run(stage_run_id).data.tags["medfoundry.trainjob_inputs"] == "object-store"

    job = trainjob_api.objects[_key(trainjob_api, _job_name())]
    args = job["spec"]["trainer"]["args"]
    prefix = f"s3://trainjob-staging/trainjobs/{_job_name()}"
    staged = {flag: args[args.index(flag) + 1] for flag in ("--data", "--model", "--profile", "--out")}
    assert staged == {"--data": f"{prefix}/data", "--model": f"{prefix}/base", "--profile": f"{prefix}/profile.yaml",
                      "--out": f"{prefix}/out"}
    [patch] = job["spec"]["runtimePatches"]
    pod_spec = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    volumes = pod_spec["spec"]["volumes"]
    assert not [v for v in volumes if "persistentVolumeClaim" in v]  # no claim from another namespace
    assert {m["mountPath"] for m in pod_spec["spec"]["containers"][0]["volumeMounts"]} == {"/dev/shm", "/tmp"}
    env = {e["name"]: e for e in job["spec"]["trainer"]["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": ctx.profile.cluster.storage_secret, "key": key}
    assert env["AWS_ENDPOINT_URL"]["value"] == ctx.profile.storage.endpoint_url


def test_object_store_staging_without_an_object_store_is_refused_with_the_fix(tmp_path, monkeypatch):
    own = tmp_path / "pod-namespace"
    own.write_text("kubeflow-user")
    monkeypatch.setattr(trainjob, "POD_NAMESPACE_FILE", str(own))
    profile = load_profile("production-7b", {"storage.uri": "", "cluster.trainjob_inputs": "auto"})
    with pytest.raises(TrainJobFailed, match="storage.uri is '\\(empty\\)'.*s3://<bucket>"):
        trainjob.input_staging(profile)
    assert trainjob.input_staging(load_profile("production-7b", {"cluster.trainjob_inputs": "auto"})) == "object-store"
    own.write_text("medfoundry")  # the step runs in the job's namespace: the claim is visible to the job
    assert trainjob.input_staging(load_profile("production-7b", {"cluster.trainjob_inputs": "auto"})) == "claim"
    assert trainjob.input_staging(load_profile("production-7b")) == "object-store"  # the shipped profile's choice


def test_the_pod_entry_uploads_nothing_when_training_fails(s3_env, tmp_path):
    from medfoundry.storage import open_storage

    store = open_storage("s3://trainjob-staging", endpoint_url=s3_env)
    store.put_file(_write(tmp_path / "d" / "records.jsonl", "{}\n"), "failing/data/records.jsonl")
    with pytest.raises(RuntimeError, match="out of memory"):
        with trainjob.pod_paths("s3://trainjob-staging/failing/data", "tiny", "s3://trainjob-staging/failing/out",
                                "tiny") as paths:
            paths.out.mkdir(parents=True)
            (paths.out / "partial.bin").write_bytes(b"x")
            raise RuntimeError("out of memory")
    assert store.list("failing/out") == []


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_each_rank_places_its_model_on_its_own_gpu(monkeypatch):
    """Before: every rank moved its model to "cuda", i.e. cuda:0."""
    import torch

    from medfoundry.models import loading

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert loading.default_device() == "cuda:5"
    monkeypatch.delenv("LOCAL_RANK")
    assert loading.default_device() == "cuda:0"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loading.default_device() == "cpu"
