"""MLflow model registry: versions with lineage and metric tags, aliases (never stages), model download.

A registered version's weights are the artifacts of its MLflow run under `model/` (the run's artifact store: a
local folder or S3/MinIO), so `ModelVersionInfo.source` is the storage URI a KServe predictor pulls.

Version tags:
    lineage.<key>    pipeline run, dataset content hashes, base model, config hash, git sha, ...
    metric.<key>     evaluation figures ("heldout/accuracy", "heldout/ci95_lo", ...) the gate compares
    gate.<env>.*     the promotion decision for an environment (written by medfoundry.release.promote)

The tracking/registry URI is mlflow's current setting (medfoundry.tracking.configure sets it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATE = "candidate"
CHAMPION = "champion"
MODEL_ARTIFACT_PATH = "model"
LINEAGE_PREFIX = "lineage."
METRIC_PREFIX = "metric."
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


class RegistryError(LookupError):
    pass


@dataclass
class ModelVersionInfo:
    name: str
    version: str
    source: str  # where the weights are: the run's artifact URI of model/ (local path or s3://...)
    run_id: str | None
    aliases: list[str] = field(default_factory=list)
    lineage: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def _info(mv: Any) -> ModelVersionInfo:
    tags = dict(mv.tags or {})
    metrics = {}
    for key, value in tags.items():
        if key.startswith(METRIC_PREFIX):
            try:
                metrics[key[len(METRIC_PREFIX) :]] = float(value)
            except ValueError:
                continue
    return ModelVersionInfo(
        name=mv.name,
        version=str(mv.version),
        source=mv.source,
        run_id=mv.run_id or None,
        aliases=sorted(mv.aliases or []),
        lineage={k[len(LINEAGE_PREFIX) :]: v for k, v in tags.items() if k.startswith(LINEAGE_PREFIX)},
        metrics=metrics,
        tags=tags,
    )


def register_model_version(
    model_dir: Path,
    name: str,
    lineage: dict[str, str],
    metrics: dict[str, float],
    run_id: str | None = None,
) -> ModelVersionInfo:
    """Log `model_dir` as `model/` artifacts of the given (or active) run, register a version of `name` with
    lineage and metric tags, and point the `candidate` alias at it.

    Without a run id and with no active run (outside the pipeline), a run named `register-<name>` is created in the
    current experiment for the artifacts.
    """
    import mlflow

    model_dir = Path(model_dir)
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        raise ValueError(f"{model_dir}: not a model folder (missing or empty)")
    client = _client()
    if run_id is None and mlflow.active_run() is None:
        with mlflow.start_run(run_name=f"register-{name}") as run:
            run_id = run.info.run_id
    run_id = run_id or mlflow.active_run().info.run_id
    client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT_PATH)
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT_PATH}"

    tags = {f"{LINEAGE_PREFIX}{k}": str(v) for k, v in lineage.items() if v is not None}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            continue
        tags[f"{METRIC_PREFIX}{key}"] = repr(float(value))
    try:
        client.get_registered_model(name)
    except Exception:  # noqa: BLE001 - mlflow raises RestException/MlflowException for a missing model
        try:
            client.create_registered_model(name, description="medfoundry medical VLM (registered by the pipeline)")
        except Exception:  # noqa: BLE001 - created concurrently by another stage
            client.get_registered_model(name)
    mv = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
    client.set_registered_model_alias(name, CANDIDATE, mv.version)
    return get_version(name, str(mv.version))


def get_version(name: str, version: str) -> ModelVersionInfo:
    try:
        return _info(_client().get_model_version(name, str(version)))
    except Exception as err:  # noqa: BLE001
        raise RegistryError(f"model {name!r} has no version {version!r}") from err


def version_by_alias(name: str, alias: str) -> ModelVersionInfo | None:
    """The version an alias points at, or None when the model or the alias does not exist."""
    try:
        return _info(_client().get_model_version_by_alias(name, alias))
    except Exception:  # noqa: BLE001 - missing model or alias
        return None


def set_alias(name: str, alias: str, version: str | None) -> None:
    """Point `alias` at `version`; None deletes the alias."""
    client = _client()
    if version is None:
        try:
            client.delete_registered_model_alias(name, alias)
        except Exception:  # noqa: BLE001 - already absent
            pass
    else:
        client.set_registered_model_alias(name, alias, str(version))


def set_version_tags(name: str, version: str, tags: dict[str, str]) -> None:
    client = _client()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def resolve(uri: str) -> ModelVersionInfo:
    """`models:/NAME@alias` or `models:/NAME/VERSION` -> the registered version."""
    match = _MODELS_URI.match(uri)
    if not match:
        raise RegistryError(f"{uri!r} is not a models:/NAME@alias or models:/NAME/VERSION URI")
    name = match["name"]
    if match["alias"]:
        info = version_by_alias(name, match["alias"])
        if info is None:
            raise RegistryError(f"model {name!r} has no alias {match['alias']!r}")
        return info
    return get_version(name, match["version"])


def download_model(uri: str, dst: Path | None = None) -> Path:
    """Local folder with the weights of a models:/ URI (local artifact stores are used in place)."""
    import mlflow.artifacts

    info = resolve(uri)
    local = mlflow.artifacts.download_artifacts(artifact_uri=info.source, dst_path=str(dst) if dst else None)
    return Path(local)
