"""Distributed training on a cluster: one Kubeflow Trainer TrainJob per training stage.

The pipeline step that owns a training stage builds the TrainJob from the profile's `cluster` section, submits it,
reports each status change and fails with the job's own reason. Every node runs
`torchrun --no-python medfoundry <args>`; Kubeflow Trainer's torch runtime supplies the rendezvous (PET_* variables),
and the stage code picks DeepSpeed up from the profile, so the same stage runs in-process locally.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    inputs and collects outputs.
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


def check_same_namespace(trainjob_namespace: str, namespace_file: str = POD_NAMESPACE_FILE) -> None:
    """Refuse to launch from another namespace than the TrainJob's: a PersistentVolumeClaim is visible only in its own
    namespace, so the job would mount a different (or no) cache claim than the one this step staged its inputs on."""
    from pathlib import Path

    path = Path(namespace_file)
    if not path.is_file():
        return  # not in a pod (tests, a laptop): nothing to compare
    own = path.read_text().strip()
    if own and own != trainjob_namespace:
        raise TrainJobFailed(
            "-", "WrongNamespace",
            f"this step runs in namespace {own!r} but cluster.namespace is {trainjob_namespace!r}: the TrainJob could "
            "not see the inputs staged on this step's cache claim. Run the pipeline in the TrainJob's namespace "
            "(Kubeflow profile namespace) or set cluster.namespace to it (docs/deploy.md step 5)",
        )


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
    import contextlib
    import os

    if not os.environ.get("MLFLOW_RUN_ID") or os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()
    import mlflow

    return mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"])
