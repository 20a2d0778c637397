"""The KServe InferenceService that promotion writes for one model version, and its validation against the CRD.

Promotion owns the model-specific fields (storageUri, model format/runtime, version labels and annotations); every
other field of an existing overlay manifest (resources, replicas, probes set by the platform) is kept as it is.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from medfoundry.config.release import GitOpsConfig
from medfoundry.release.registry import ModelVersionInfo

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
MODEL_FORMAT = "medfoundry-vlm"
ANNOTATION_PREFIX = "medfoundry.io/"
MODEL_NAME = ANNOTATION_PREFIX + "model-name"
MODEL_VERSION = ANNOTATION_PREFIX + "model-version"
# Lineage keys copied onto the manifest so a cluster operator sees where the served weights came from.
_LINEAGE_ANNOTATIONS = ("git_sha", "config_hash", "dataset_hash", "pipeline_run_id", "base_model")


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
) -> dict[str, Any]:
    """The overlay manifest serving `info` in `env`: `existing` (or the default) with the model fields set."""
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
    meta["annotations"] = annotations
    model = manifest.setdefault("spec", {}).setdefault("predictor", {}).setdefault("model", {})
    model.setdefault("modelFormat", {"name": MODEL_FORMAT})
    model.setdefault("runtime", gitops.runtime)
    model["storageUri"] = storage_uri(info.artifact_uri or info.source)
    return manifest


def storage_uri(source: str) -> str:
    """KServe storageUri for an artifact location: object-store URIs as they are, local paths as file:// URIs."""
    if "://" in source:
        return source
    return Path(source).resolve().as_uri()
