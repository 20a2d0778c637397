"""Kubernetes settings for pipeline tasks (kfp-kubernetes), taken from the profile's `cluster` section.

The lead's pipeline calls `apply_kubernetes_settings(task, profile, stage_kind)` on every task. Local runs
(`cluster.mode: local`) get nothing, so the same pipeline compiles for kfp.local and for a cluster.
"""

from __future__ import annotations

from typing import Any, Literal

from medfoundry.images import component_image

StageKind = Literal["cpu", "gpu", "trainjob"]

# The chart's ReadWriteMany cache volume (tokenizers, extracted ontologies, HF and torch-extension caches).
CACHE_PVC = "medfoundry-cache"
CACHE_MOUNT = "/cache"
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
NON_ROOT_UID = 10001
# Data stages find their MLflow parent run through the KFP run id instead of taking the parent run id as an input,
# so their cache key holds only the profile and their input data. KFP labels every pod of a run with its id.
PIPELINE_RUN_ENV = "MEDFOUNDRY_PIPELINE_RUN_ID"
KFP_RUN_ID_FIELD = "metadata.labels['pipeline/runid']"


def step_image(cluster: Any, stage_kind: StageKind) -> str:
    """GPU steps get the GPU image; CPU steps and TrainJob launchers (which only wait on a job) the CPU image."""
    if stage_kind == "gpu":
        return cluster.gpu_image or component_image("gpu", cluster.image_registry)
    return cluster.image or component_image("cpu", cluster.image_registry)


def apply_kubernetes_settings(task: Any, profile: Any, stage_kind: StageKind = "cpu") -> Any:
    """Add the step's image, CPU/memory requests and limits, retry policy, Secrets as env, the cache PVC, labels and
    (for `gpu`) GPU limits, node selectors and tolerations.

    stage_kind: `cpu` for curation/evaluation/orchestration steps, `gpu` for steps that use a GPU inside the pipeline
    pod, `trainjob` for the CPU step that launches a TrainJob and waits for it (the GPUs belong to the TrainJob).
    """
    if stage_kind not in ("cpu", "gpu", "trainjob"):
        raise ValueError(f"stage_kind must be cpu, gpu or trainjob, got {stage_kind!r}")
    cluster = getattr(profile, "cluster", profile)
    if cluster.mode != "kubernetes":
        return task
    from kfp import kubernetes

    from medfoundry.config.sections import _default_step_resources

    task.set_container_image(step_image(cluster, stage_kind))
    resources = cluster.step_resources.get(stage_kind) or _default_step_resources()[stage_kind]
    task.set_cpu_request(resources.cpu_request).set_cpu_limit(resources.cpu_limit)
    task.set_memory_request(resources.memory_request).set_memory_limit(resources.memory_limit)
    if cluster.step_retries:
        task.set_retry(cluster.step_retries, backoff_duration=cluster.step_retry_backoff, backoff_factor=2.0)
    kubernetes.use_field_path_as_env(task, env_name=PIPELINE_RUN_ENV, field_path=KFP_RUN_ID_FIELD)
    kubernetes.use_secret_as_env(task, secret_name=cluster.storage_secret, secret_key_to_env={k: k for k in S3_KEYS})
    feast = getattr(profile, "feast", None)
    if feast is not None and feast.uses_postgres:  # feast.url's ${PGPASSWORD}
        kubernetes.use_secret_as_env(task, secret_name=feast.password_secret, secret_key_to_env={"password": "PGPASSWORD"})
    cache_pvc = getattr(cluster, "cache_pvc", CACHE_PVC)
    if cache_pvc:
        kubernetes.mount_pvc(task, pvc_name=cache_pvc, mount_path=CACHE_MOUNT)
        task.set_env_variable("MEDFOUNDRY_CACHE_DIR", CACHE_MOUNT)
        task.set_env_variable("HF_HOME", f"{CACHE_MOUNT}/huggingface")
    kubernetes.set_security_context(task, run_as_user=NON_ROOT_UID, run_as_non_root=True)
    kubernetes.set_image_pull_policy(task, "IfNotPresent")
    kubernetes.add_pod_label(task, "app.kubernetes.io/part-of", "medfoundry")
    kubernetes.add_pod_label(task, "medfoundry.io/stage-kind", stage_kind)
    if stage_kind == "gpu" and cluster.gpus_per_node:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(cluster.gpus_per_node)
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory")
    if stage_kind == "gpu":
        for key, value in cluster.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for toleration in cluster.tolerations:
            kubernetes.add_toleration(
                task,
                key=toleration.get("key"),
                operator=toleration.get("operator"),
                value=toleration.get("value"),
                effect=toleration.get("effect"),
            )
    return task
