"""Resolve what `--model` names into a local model folder and the training corpus recorded in its lineage."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CURATED_PREFIX = "datasets/curated"  # where the curate stage publishes datasets (content-addressed)


def resolve_model(uri: str, profile: Any = None) -> tuple[str, Path | None]:
    """(what `load_model` takes, training corpus folder or None).

    `models:/NAME@alias` and `models:/NAME/VERSION` are downloaded from the MLflow registry and their lineage's
    `dataset_uri` (or `dataset_hash`, looked up in the profile's storage) names the curated training dataset;
    `runs:/...` and other MLflow artifact URIs are downloaded; anything else is passed through to `load_model`.
    """
    if uri.startswith("models:/"):
        from medfoundry.release.registry import download_model, resolve

        info = resolve(uri)
        return str(download_model(uri)), _lineage_corpus(info.lineage, profile)
    if uri.startswith(("runs:/", "mlflow-artifacts:/")):
        import mlflow.artifacts

        return mlflow.artifacts.download_artifacts(artifact_uri=uri), None
    return uri, None


def _lineage_corpus(lineage: dict[str, str], profile: Any) -> Path | None:
    from medfoundry.storage import StorageError, fetch, open_storage
    from medfoundry.workspace import Workspace

    workspace = Workspace.resolve(profile.workspace if profile else "")
    target = lineage.get("dataset_uri")
    if not target and lineage.get("dataset_hash"):
        store_uri = (profile.storage.uri if profile else "") or str(workspace.store)
        target = open_storage(store_uri).url(f"{CURATED_PREFIX}/{lineage['dataset_hash'][:16]}")
    if not target:
        log.warning("model lineage names no training dataset: decontamination needs --decontam-corpus")
        return None
    try:
        endpoint = profile.storage.endpoint_url if profile else None
        return fetch(target, workspace.cache / "eval-corpus" / Path(target).name, endpoint_url=endpoint)
    except StorageError as err:
        log.warning("training dataset %s from the model's lineage is not available (%s): not decontaminating", target, err)
        return None
