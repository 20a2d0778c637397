"""TrainJob manifests from cluster profiles, and submission / status streaming / failure against kmock's in-memory
Kubernetes API. The kubernetes client is synchronous, so it runs in a thread while the test plays the controller."""

from __future__ import annotations

import asyncio

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


async def _controller(kmock, name, statuses, step_s=0.15):
    """Plays the Trainer controller: waits for the TrainJob, then writes each status in turn."""
    key = _key(kmock, name)
    for _ in range(200):
        if key in kmock.objects:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the TrainJob was never created")
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
