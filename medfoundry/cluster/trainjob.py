"""Distributed training on a cluster: one Kubeflow Trainer TrainJob per training stage.

The pipeline step that owns a training stage builds the TrainJob from the profile's `cluster` section, submits it,
reports each status change and fails with the job's own reason. Every node runs
`torchrun --no-python medfoundry <args>`; Kubeflow Trainer's torch runtime supplies the rendezvous (PET_* variables),
and the stage code picks DeepSpeed up from the profile, so the same stage runs in-process locally.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfoundry.cluster.kfp_settings import CACHE_MOUNT, CACHE_PVC, step_image

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
KIND = "TrainJob"
# The entry of spec.runtimePatches this project owns (Trainer merges one patch per manager).
PATCH_MANAGER = "medfoundry.io/pipeline"
# Training pods need S3 and MLflow, not the Kubernetes API: the chart's ServiceAccount for them has no RBAC.
TRAINING_SERVICE_ACCOUNT = "medfoundry-training"
NON_ROOT_UID = 10001
TRAINING_STAGES = ("pretrain", "sft", "rl")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class TrainJobFailed(RuntimeError):
    """The TrainJob ended without completing; `reason` is the controller's condition reason."""

    def __init__(self, name: str, reason: str, message: str = "") -> None:
        self.name = name
        self.reason = reason
        self.message = message
        super().__init__(f"TrainJob {name} failed: {reason}" + (f": {message}" if message else ""))


class TrainJobTimeout(TrainJobFailed):
    """The TrainJob did not finish within the step's time limit (it is deleted so it frees its GPUs)."""


@dataclass(frozen=True)
class TrainJobStatus:
    name: str
    phase: str  # Pending | Created | Suspended | Running | Complete | Failed
    reason: str = ""
    message: str = ""
    progress: int | None = None
    conditions: list[dict[str, Any]] = field(default_factory=list, compare=False)

    @property
    def finished(self) -> bool:
        return self.phase in ("Complete", "Failed")


def _cluster_section(profile: Any) -> Any:
    return getattr(profile, "cluster", profile)


def _deepspeed_stage(profile: Any, stage: str) -> int:
    section = getattr(profile, stage, None)
    per_stage = getattr(section, "deepspeed_stage", 0) or 0
    return int(per_stage or _cluster_section(profile).deepspeed_stage)


KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
SIDECAR_OPT_OUT = {"sidecar.istio.io/inject": "false"}


def _env(profile: Any, secret: str, mlflow_run_id: str | None = None) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]
    storage = getattr(profile, "storage", None)
    if storage is not None and storage.endpoint_url:
        env += [
            {"name": "AWS_ENDPOINT_URL", "value": storage.endpoint_url},
            {"name": "MLFLOW_S3_ENDPOINT_URL", "value": storage.endpoint_url},
        ]
    if storage is not None and storage.region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": storage.region})
    feast = getattr(profile, "feast", None)
    if feast is not None and feast.uses_postgres:  # training reads sample weights through feast.url's ${PGPASSWORD}
        env.append({"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": feast.password_secret, "key": "password"}}})
    tracking = getattr(profile, "tracking", None)
    if tracking is not None and tracking.uri:
        env.append({"name": "MLFLOW_TRACKING_URI", "value": tracking.uri})
    if mlflow_run_id:
        # Rank 0 logs its curves into the stage's nested run while it trains (medfoundry.training.cli).
        env.append({"name": "MLFLOW_RUN_ID", "value": mlflow_run_id})
    env += [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "TOKENIZERS_PARALLELISM", "value": "false"}]
    return env


def build_trainjob(
    profile: Any,
    stage: str,
    args: list[str],
    name: str,
    *,
    service_account: str = TRAINING_SERVICE_ACCOUNT,
    cache_pvc: str | None = CACHE_PVC,
    mlflow_run_id: str | None = None,
) -> dict[str, Any]:
    """A TrainJob manifest that runs `medfoundry <args>` on nodes x GPUs from the profile's cluster section,
    e.g. args `["train", "sft", "--data", "/cache/runs/<id>/data", "--model", ..., "--out", ..., "--profile", ...]`.

    `profile` is a Profile (its storage/tracking sections add S3 and MLflow settings) or a bare ClusterConfig.
    The cache volume (ReadWriteMany, mounted at /cache as in pipeline steps) is where the launching step stages
    inputs and collects outputs; with object-store staging (`cache_pvc=None`) the job mounts no claim at all.
    """
    if not _DNS_LABEL.match(name) or len(name) > 63:
        raise ValueError(f"TrainJob name {name!r} must be a DNS label (a-z, 0-9, '-', at most 63 characters)")
    if not args:
        raise ValueError("args must name the medfoundry command each training process runs")
    cluster = _cluster_section(profile)
    gpus = cluster.gpus_per_node
    image = step_image(cluster, "gpu" if gpus else "cpu")
    resources: dict[str, Any] = {"requests": {"cpu": "2", "memory": "8Gi"}}
    if gpus:
        resources = {
            "requests": {"cpu": str(4 * gpus), "memory": f"{32 * gpus}Gi", "nvidia.com/gpu": str(gpus)},
            "limits": {"nvidia.com/gpu": str(gpus)},
        }
    labels = {
        "app.kubernetes.io/part-of": "medfoundry",
        "app.kubernetes.io/component": "training",
        "medfoundry.io/stage": stage,
        "medfoundry.io/deepspeed-stage": str(_deepspeed_stage(profile, stage)),
    }
    if cluster.kueue_queue:
        labels[KUEUE_QUEUE_LABEL] = cluster.kueue_queue
    pod_labels = {"app.kubernetes.io/part-of": "medfoundry", "medfoundry.io/stage": stage}
    pod_metadata: dict[str, Any] = {"labels": pod_labels}
    if cluster.disable_sidecar_injection:
        pod_metadata["annotations"] = dict(SIDECAR_OPT_OUT)
    pod_spec: dict[str, Any] = {
        "serviceAccountName": service_account,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NON_ROOT_UID,
            "runAsGroup": NON_ROOT_UID,
            "fsGroup": NON_ROOT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "node",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        # NCCL needs far more shared memory than the container default of 64 MiB.
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}, {"name": "tmp", "emptyDir": {}}],
    }
    if cache_pvc:
        pod_spec["containers"][0]["volumeMounts"].append({"name": "cache", "mountPath": CACHE_MOUNT})
        pod_spec["volumes"].append({"name": "cache", "persistentVolumeClaim": {"claimName": cache_pvc}})
    if cluster.node_selector:
        pod_spec["nodeSelector"] = dict(cluster.node_selector)
    if cluster.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in cluster.tolerations]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": cluster.namespace, "labels": labels},
        "spec": {
            "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": cluster.training_runtime},
            "trainer": {
                "image": image,
                "command": ["torchrun", "--no-python", "medfoundry"],
                "args": [str(a) for a in args],
                "numNodes": cluster.nodes,
                "numProcPerNode": max(gpus, 1),
                "resourcesPerNode": resources,
                "env": _env(profile, cluster.storage_secret, mlflow_run_id),
            },
            "runtimePatches": [
                {
                    "manager": PATCH_MANAGER,
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {
                                        "name": "node",
                                        "template": {
                                            "spec": {
                                                "template": {
                                                    # The platform's NetworkPolicies admit medfoundry pods.
                                                    "metadata": pod_metadata,
                                                    "spec": pod_spec,
                                                }
                                            }
                                        },
                                    }
                                ]
                            }
                        }
                    },
                }
            ],
        },
    }


POD_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
CLAIM, OBJECT_STORE = "claim", "object-store"


def input_staging(profile: Any, namespace_file: str | None = None) -> str:
    """How a TrainJob gets its inputs: on the launching step's cache claim (CLAIM) or through the object store
    (OBJECT_STORE). A claim is visible only in its own namespace, so `auto` uses the object store when this step runs
    in another namespace than the TrainJob's (e.g. a Kubeflow profile namespace)."""
    cluster = _cluster_section(profile)
    choice = cluster.trainjob_inputs
    if choice == "auto":
        path = Path(namespace_file or POD_NAMESPACE_FILE)
        own = path.read_text().strip() if path.is_file() else ""  # not in a pod (tests, a laptop): same namespace
        choice = OBJECT_STORE if own and own != cluster.namespace else CLAIM
    uri = profile.storage.uri
    if choice == OBJECT_STORE and not uri.startswith("s3://"):
        raise TrainJobFailed(
            "-", "NoObjectStore",
            f"the TrainJob in namespace {cluster.namespace!r} reads its inputs from the object store, but storage.uri is "
            f"{uri or '(empty)'!r}: set storage.uri to s3://<bucket>, or run the pipeline in namespace "
            f"{cluster.namespace!r} with cluster.trainjob_inputs: claim (docs/deploy.md)",
        )
    return choice


@dataclass(frozen=True)
class StagedInputs:
    """Where the TrainJob finds what the launching step staged (paths on the claim, or s3:// URIs)."""

    data: str
    model: str
    profile: str
    out: str
    collect: Callable[[Path], None]  # copies the job's --out into the step's output folder


def stage_inputs(profile: Any, name: str, data: Path, base_model: Path, how: str, cache_dir: Path) -> StagedInputs:
    """Put a training stage's dataset, starting model and profile where its TrainJob `name` reads them."""
    import shutil
    import tempfile

    if how == CLAIM:
        work = cache_dir / "trainjobs" / name
        shutil.copytree(data, work / "data", dirs_exist_ok=True)
        shutil.copytree(base_model, work / "base", dirs_exist_ok=True)
        (work / "profile.yaml").write_text(profile.to_yaml())
        return StagedInputs(
            str(work / "data"), str(work / "base"), str(work / "profile.yaml"), str(work / "out"),
            lambda out: shutil.copytree(work / "out", out, dirs_exist_ok=True),
        )
    from medfoundry.storage import open_storage

    # Run-specific prefix (the job name holds the KFP run id): a retried step overwrites the same objects.
    store = open_storage(profile.storage.uri, endpoint_url=profile.storage.endpoint_url, region=profile.storage.region)
    prefix = f"trainjobs/{name}"
    store.put_dir(data, f"{prefix}/data")
    store.put_dir(base_model, f"{prefix}/base")
    with tempfile.TemporaryDirectory() as tmp:
        profile_file = Path(tmp) / "profile.yaml"
        profile_file.write_text(profile.to_yaml())
        store.put_file(profile_file, f"{prefix}/profile.yaml")
    return StagedInputs(
        store.url(f"{prefix}/data"), store.url(f"{prefix}/base"), store.url(f"{prefix}/profile.yaml"),
        store.url(f"{prefix}/out"), lambda out: store.get_dir(f"{prefix}/out", out),
    )


@dataclass(frozen=True)
class PodPaths:
    data: Path
    model: str
    profile: str
    out: Path


@contextlib.contextmanager
def pod_paths(data: str, model: str, out: str, profile: str) -> Iterator[PodPaths]:
    """Inside a TrainJob pod: s3:// inputs (object-store staging) downloaded to a private folder, and an s3:// --out
    uploaded by rank 0 once training succeeded. Local paths (claim staging, laptops) pass through unchanged."""
    import os
    import tempfile

    from medfoundry.storage import fetch, open_storage

    with tempfile.TemporaryDirectory(prefix="medfoundry-trainjob-") as tmp:
        local = Path(tmp)
        if profile.startswith("s3://"):
            folder, _, file_name = profile.rpartition("/")
            profile = str(open_storage(folder).get_file(file_name, local / file_name))
        if model.startswith("s3://"):
            model = str(fetch(model, local / "model"))
        out_dir = local / "out" if out.startswith("s3://") else Path(out)
        yield PodPaths(fetch(data, local / "data"), model, profile, out_dir)
        if out.startswith("s3://") and os.environ.get("RANK", "0") == "0":
            open_storage(out).put_dir(out_dir, "")


def status_of(obj: dict[str, Any]) -> TrainJobStatus:
    """Summarize a TrainJob object's status conditions into one phase."""
    name = obj.get("metadata", {}).get("name", "?")
    status = obj.get("status") or {}
    conditions = list(status.get("conditions") or [])
    true = {c.get("type"): c for c in conditions if c.get("status") == "True"}
    progress = (status.get("trainerStatus") or {}).get("progressPercentage")
    for phase in ("Failed", "Complete", "Suspended"):
        if phase in true:
            cond = true[phase]
            return TrainJobStatus(name, phase, cond.get("reason", ""), cond.get("message", ""), progress, conditions)
    if any(job.get("active") for job in status.get("jobsStatus") or []):
        return TrainJobStatus(name, "Running", "", "", progress, conditions)
    if "Created" in true:
        cond = true["Created"]
        return TrainJobStatus(name, "Created", cond.get("reason", ""), cond.get("message", ""), progress, conditions)
    return TrainJobStatus(name, "Pending", "", "", progress, conditions)


def _custom_objects_api(api_client: Any = None) -> Any:
    from kubernetes import client, config

    if api_client is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            import os

            # The client reads $KUBECONFIG once at import; read it when the step runs.
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        api_client = client.ApiClient()
    return client.CustomObjectsApi(api_client)


def submit_and_wait(
    manifest: dict[str, Any],
    namespace: str | None = None,
    api_client: Any = None,
    timeout_s: float = 7 * 24 * 3600,
    poll_s: float = 10.0,
    on_status: Callable[[TrainJobStatus], None] | None = None,
) -> TrainJobStatus:
    """Create the TrainJob (or attach to one of the same name, for retried steps), report every status change
    through `on_status`, and return the final status. Raises TrainJobFailed with the job's reason on failure and
    TrainJobTimeout (after deleting the job) when it runs past `timeout_s`.
    """
    from kubernetes.client.exceptions import ApiException

    api = _custom_objects_api(api_client)
    name = manifest["metadata"]["name"]
    namespace = namespace or manifest["metadata"].get("namespace") or "default"
    body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    except ApiException as err:
        if err.status != 409:
            raise
    deadline = time.monotonic() + timeout_s
    last: TrainJobStatus | None = None
    while True:
        try:
            obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as err:
            if err.status == 404:
                raise TrainJobFailed(name, "Deleted", "the TrainJob was deleted before it finished") from None
            raise
        current = status_of(obj)
        if current != last:
            if on_status is not None:
                on_status(current)
            last = current
        if current.phase == "Failed":
            raise TrainJobFailed(name, current.reason or "Failed", current.message)
        if current.phase == "Complete":
            return current
        if time.monotonic() >= deadline:
            try:
                api.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Foreground"
                )
            except ApiException as err:
                if err.status != 404:
                    raise
            raise TrainJobTimeout(name, "Timeout", f"not finished after {timeout_s:g}s (last phase {current.phase})")
        time.sleep(poll_s)


def trainjob_tracking_run() -> Any:
    """Inside a TrainJob: on rank 0 with $MLFLOW_RUN_ID, the stage's MLflow run resumed (curves land in it while
    training); otherwise a context that does nothing."""
    import os

    if not os.environ.get("MLFLOW_RUN_ID") or os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()
    import mlflow

    return mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"])
