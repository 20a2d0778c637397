"""The KServe InferenceService that promotion writes for one model version, and the object-store location of its
weights.

Promotion owns the model-specific fields (storageUri, model format/runtime, version labels and annotations) and the
serving settings of the profile's `gitops.predictor` (deployment mode, startup probe, scale metric, and resources when
the profile sets them); every other field of an existing overlay manifest (replicas, node selectors, tolerations, the
platform's resources) is kept as it is.

A registered version's source may be any location MLflow stores artifacts at: a local folder, an `mlflow-artifacts:`
URI served by a tracking server started with `--serve-artifacts`, `s3://...`, `runs:/<id>/<path>` or `models:/...`
(an MLflow 3 LoggedModel `models:/m-<id>` included). KServe's storage initializer downloads object-store URIs only,
so `model_storage_uri` turns every one of them into one: an object-store URI as it is, `mlflow-artifacts:` under the
server's artifacts destination, and anything else (a local folder) published as a copy into the profile's store.
"""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from medfoundry.config.release import GitOpsConfig
from medfoundry.release.registry import ModelVersionInfo

if TYPE_CHECKING:
    from medfoundry.config import Profile
    from medfoundry.config.sections import ModelConfig

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
MODEL_FORMAT = "medfoundry-vlm"
ANNOTATION_PREFIX = "medfoundry.io/"
MODEL_NAME = ANNOTATION_PREFIX + "model-name"
MODEL_VERSION = ANNOTATION_PREFIX + "model-version"
# Lineage keys copied onto the manifest so a cluster operator sees where the served weights came from.
_LINEAGE_ANNOTATIONS = ("git_sha", "config_hash", "dataset_hash", "pipeline_run_id", "base_model")
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
HUGGINGFACE_FORMAT = "huggingface"
READY_PATH = "/v2/health/ready"  # both our server and KServe's huggingface server answer it once loaded
PROBE_PERIOD_S = 10
# Startup budget: process start and engine warm-up, plus reading the weights from the storage initializer's volume
# onto the device at a conservative 50 MB/s (network-backed volumes, vLLM's own profiling run included).
STARTUP_BASE_S = 120
STARTUP_S_PER_GB = 20


def default_inference_service(gitops: GitOpsConfig, env: str) -> dict[str, Any]:
    """A complete InferenceService for an environment before any model is promoted (storageUri filled later)."""
    replicas = {"dev": (1, 1), "staging": (1, 2), "prod": (2, 4)}.get(env, (1, 1))
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": gitops.service_name,
            "labels": {"app.kubernetes.io/name": gitops.service_name, "app.kubernetes.io/part-of": "medfoundry"},
            "annotations": {},
        },
        "spec": {
            "predictor": {
                "minReplicas": replicas[0],
                "maxReplicas": replicas[1],
                "model": {
                    "modelFormat": {"name": MODEL_FORMAT},
                    "runtime": gitops.runtime,
                    "protocolVersion": "v2",
                    "storageUri": "",
                    "resources": {
                        "requests": {"cpu": "1", "memory": "4Gi"},
                        "limits": {"cpu": "2", "memory": "8Gi"},
                    },
                },
            }
        },
    }


def render_inference_service(
    info: ModelVersionInfo,
    env: str,
    gitops: GitOpsConfig,
    gate: str,
    existing: dict[str, Any] | None = None,
    storage_uri: str | None = None,
    model_cfg: ModelConfig | None = None,
) -> dict[str, Any]:
    """The overlay manifest serving `info` in `env`: `existing` (or the default) with the model fields and the
    serving settings of `gitops.predictor` set (deployment mode, runtime, resources, startup probe, scale metric).

    `storage_uri` is where KServe downloads the weights (`model_storage_uri`); None: `info.source` as it is.
    `model_cfg` (the profile's model section) sizes the startup probe when predictor.model_size_gb is not set."""
    manifest = copy.deepcopy(existing) if existing else default_inference_service(gitops, env)
    if manifest.get("kind") != KIND:
        manifest = default_inference_service(gitops, env)
    meta = manifest.setdefault("metadata", {})
    meta.setdefault("name", gitops.service_name)
    labels = meta.setdefault("labels", {}) or {}
    labels.update({"medfoundry.io/environment": env, "medfoundry.io/model-version": str(info.version)})
    meta["labels"] = labels
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith(ANNOTATION_PREFIX)
    }
    annotations.update(
        {
            MODEL_NAME: info.name,
            MODEL_VERSION: str(info.version),
            ANNOTATION_PREFIX + "model-uri": info.uri,
            ANNOTATION_PREFIX + "run-id": info.run_id or "",
            ANNOTATION_PREFIX + "gate": gate,
        }
    )
    for key in _LINEAGE_ANNOTATIONS:
        if info.lineage.get(key):
            annotations[ANNOTATION_PREFIX + key.replace("_", "-")] = info.lineage[key]
    predictor_cfg = gitops.predictor
    annotations[DEPLOYMENT_MODE] = predictor_cfg.deployment_mode
    meta["annotations"] = annotations
    predictor = manifest.setdefault("spec", {}).setdefault("predictor", {})
    predictor["scaleMetric"] = predictor_cfg.scale_metric
    predictor["scaleTarget"] = predictor_cfg.scale_target
    model = predictor.setdefault("model", {})
    model["storageUri"] = storage_uri or info.artifact_uri or info.source
    resources = copy.deepcopy(model.get("resources") or {})
    for part, key, value in (
        ("requests", "cpu", predictor_cfg.cpu_request), ("requests", "memory", predictor_cfg.memory_request),
        ("limits", "cpu", predictor_cfg.cpu_limit), ("limits", "memory", predictor_cfg.memory_limit),
    ):
        if value is not None:
            resources.setdefault(part, {})[key] = value
    if predictor_cfg.gpus:
        # KServe's huggingface server runs vLLM on GPUs; our own runtime stays for CPU serving.
        model["modelFormat"] = {"name": HUGGINGFACE_FORMAT}
        model["runtime"] = predictor_cfg.gpu_runtime
        model["args"] = [f"--model_name={gitops.service_name}", "--backend=vllm"] + (
            [f"--max_model_len={model_cfg.max_length}"] if model_cfg is not None else []
        )
        for part in ("requests", "limits"):
            resources.setdefault(part, {})["nvidia.com/gpu"] = str(predictor_cfg.gpus)
    else:
        model["modelFormat"] = {"name": MODEL_FORMAT}
        model["runtime"] = gitops.runtime
        model.pop("args", None)
    model["resources"] = resources
    model["startupProbe"] = {
        "httpGet": {"path": READY_PATH, "port": 8080},
        "periodSeconds": PROBE_PERIOD_S,
        "failureThreshold": math.ceil(startup_seconds(predictor_cfg.model_size_gb, model_cfg) / PROBE_PERIOD_S),
    }
    return manifest


def estimated_model_gb(model_cfg: ModelConfig | None) -> float:
    """Weights size from the model section: ~12 H^2 per decoder layer plus the embeddings, at the profile's dtype."""
    if model_cfg is None:
        return 1.0
    params = model_cfg.num_layers * 12 * model_cfg.hidden_size**2 + model_cfg.vocab_size * model_cfg.hidden_size
    return params * (4 if model_cfg.dtype == "float32" else 2) / 1e9


def startup_seconds(model_size_gb: float | None, model_cfg: ModelConfig | None) -> int:
    """How long the predictor may take to load before Kubernetes restarts it."""
    size = model_size_gb if model_size_gb is not None else estimated_model_gb(model_cfg)
    return STARTUP_BASE_S + math.ceil(STARTUP_S_PER_GB * size)


# URI schemes KServe's storage initializer downloads (kserve_storage.Storage.download).
KSERVE_SCHEMES = ("s3", "gs", "hdfs", "webhdfs", "https", "http", "hf", "pvc", "oci")
PUBLISHED_MODELS_PREFIX = "models"


class ModelStorageError(ValueError):
    """A registered version's weights have no location a KServe pod can download and none can be made."""


def artifact_location(source: str) -> str:
    """The artifact store URI behind `runs:/...` and `models:/...` (registered versions and MLflow 3 LoggedModels
    `models:/m-<id>`), resolved through the tracking server; any other URI or path as it is."""
    if source.startswith("models:/"):
        from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

        return artifact_location(ModelsArtifactRepository.get_underlying_uri(source))
    if source.startswith("runs:/"):
        from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

        return RunsArtifactRepository.get_underlying_uri(source)
    return source


def model_storage_uri(info: ModelVersionInfo, profile: Profile) -> str:
    """An object-store URI holding the weights of `info`, for the InferenceService's storageUri.

    - `s3://` (or another scheme KServe downloads): as it is;
    - `mlflow-artifacts:/<path>`: `<tracking.artifacts_destination>/<path>` (the server's `--artifacts-destination`);
    - a local folder (or a proxy URI with no destination configured): copied once to
      `<storage.uri>/models/<name>/<content hash>` when `storage.uri` is an object store;
    - a local folder with a local store (laptop runs): its file:// URI, which only a local server can load.
    """
    location = artifact_location(info.artifact_uri or info.source)
    scheme = urlparse(location).scheme
    if scheme in KSERVE_SCHEMES:
        return location
    if scheme == "mlflow-artifacts" and profile.tracking.artifacts_destination:
        path = urlparse(location).path.lstrip("/")
        return f"{profile.tracking.artifacts_destination.rstrip('/')}/{path}"
    store_uri = profile.storage.uri
    if urlparse(store_uri).scheme in KSERVE_SCHEMES:
        return _publish(info, location, profile)
    if scheme == "mlflow-artifacts":
        raise ModelStorageError(
            f"{info.uri} is stored at {location}, behind the MLflow server's artifact proxy, and the profile names "
            "neither tracking.artifacts_destination (the server's --artifacts-destination, e.g. s3://medfoundry-mlflow) "
            "nor an object store in storage.uri to publish it to: KServe cannot download it"
        )
    return location if scheme == "file" else Path(location).resolve().as_uri()


def _publish(info: ModelVersionInfo, location: str, profile: Profile) -> str:
    """Copy the weights at `location` to `<storage.uri>/models/<name>/<content hash>` (kept when already there)."""
    import mlflow.artifacts

    from medfoundry.storage import open_storage

    store = open_storage(profile.storage.uri, endpoint_url=profile.storage.endpoint_url, region=profile.storage.region)
    with tempfile.TemporaryDirectory(prefix="medfoundry-publish-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp))
        return store.url(store.put_dir_versioned(local, f"{PUBLISHED_MODELS_PREFIX}/{info.name}"))
