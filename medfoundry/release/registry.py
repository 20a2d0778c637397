"""MLflow model registry: versions of MLflow Models (LoggedModel) with lineage, metrics and aliases (never stages).

Each registered candidate is an MLflow 3 LoggedModel: its weights are the model's artifacts (the experiment's
artifact store: a local folder or S3/MinIO), the evaluation figures are logged as metrics linked to it
(`mlflow.get_logged_model(model_id).metrics`), and the registered version's source is that model
(`models:/m-...`). `ModelVersionInfo.artifact_uri` is the model's artifact location, the storage URI a KServe
predictor pulls. The per-item scores of the evaluation (`item_scores.json`, what the gate pairs against the
champion) are an artifact of the version's run.

Version tags:
    lineage.<key>    pipeline run, dataset content hashes, base model, config hash, git sha, ...
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
LINEAGE_PREFIX = "lineage."
ITEM_SCORES_ARTIFACT = "eval/item_scores.json"
MODEL_TYPE = "medfoundry-vlm"
_LOGGED_MODEL_URI = re.compile(r"^models:/(?P<model_id>m-[0-9a-f]+)/?$")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


class RegistryError(LookupError):
    pass


@dataclass
class ModelVersionInfo:
    name: str
    version: str
    source: str  # the registered source: models:/<model_id> (the LoggedModel)
    run_id: str | None
    model_id: str | None = None
    artifact_uri: str = ""  # where the weights are: the LoggedModel's artifact location (local path or s3://...)
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
    # The sqlite store does not return ModelVersion.model_id: the source names the model as well.
    from_source = _LOGGED_MODEL_URI.match(mv.source or "")
    model_id = getattr(mv, "model_id", None) or (from_source["model_id"] if from_source else None)
    metrics: dict[str, float] = {}
    artifact_uri = mv.source
    if model_id:
        model = _client().get_logged_model(model_id)
        artifact_uri = model.artifact_location
        # Newest value per key (a metric logged twice keeps its latest figure).
        for metric in sorted(model.metrics or [], key=lambda m: (m.timestamp, m.step)):
            metrics[metric.key] = float(metric.value)
    return ModelVersionInfo(
        name=mv.name,
        version=str(mv.version),
        source=mv.source,
        run_id=mv.run_id or None,
        model_id=model_id,
        artifact_uri=artifact_uri,
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
    item_scores: dict[str, dict[str, float]] | None = None,
) -> ModelVersionInfo:
    """Log `model_dir` as an MLflow Model (LoggedModel) from the given (or active) run, link `metrics` to it,
    register a version of `name` whose source is that model, and point the `candidate` alias at it.

    `item_scores` ({benchmark: {item id: score}}) are kept with the version's run for paired gate comparisons.
    Without a run id and with no active run (outside the pipeline), a run named `register-<name>` is created in the
    current experiment.
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
    experiment_id = client.get_run(run_id).info.experiment_id

    tags = {f"{LINEAGE_PREFIX}{k}": str(v) for k, v in lineage.items() if v is not None}
    model = client.create_logged_model(experiment_id, name=name, source_run_id=run_id, tags=tags, model_type=MODEL_TYPE)
    try:
        client.log_model_artifacts(model.model_id, str(model_dir))
        linked = {
            key: float(value)
            for key, value in sorted(metrics.items())
            if not isinstance(value, bool) and isinstance(value, int | float) and not math.isnan(value)
        }
        if linked:
            # Logged on the run and linked to the model: `mlflow.get_logged_model(model_id).metrics` holds them.
            mlflow.log_metrics(linked, run_id=run_id, model_id=model.model_id, synchronous=True)
        if item_scores is not None:
            client.log_dict(run_id, item_scores, ITEM_SCORES_ARTIFACT)
    except Exception:
        client.finalize_logged_model(model.model_id, "FAILED")
        raise
    client.finalize_logged_model(model.model_id, "READY")
    try:
        client.get_registered_model(name)
    except Exception:  # noqa: BLE001 - mlflow raises RestException/MlflowException for a missing model
        try:
            client.create_registered_model(name, description="medfoundry medical VLM (registered by the pipeline)")
        except Exception:  # noqa: BLE001 - created concurrently by another stage
            client.get_registered_model(name)
    mv = client.create_model_version(
        name, source=f"models:/{model.model_id}", run_id=run_id, tags=tags, model_id=model.model_id
    )
    client.set_registered_model_alias(name, CANDIDATE, mv.version)
    return get_version(name, str(mv.version))


def item_scores(info: ModelVersionInfo) -> dict[str, dict[str, float]] | None:
    """The per-item evaluation scores kept with a version, or None when it has none (registered without them)."""
    if not info.run_id:
        return None
    import mlflow.artifacts

    try:
        return mlflow.artifacts.load_dict(f"runs:/{info.run_id}/{ITEM_SCORES_ARTIFACT}")
    except Exception:  # noqa: BLE001 - no such artifact
        return None


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
    """Local folder with the weights of a models:/ URI: a registered version (NAME@alias, NAME/VERSION) or a logged
    model (models:/m-...). Local artifact stores are used in place."""
    import mlflow.artifacts

    logged = _LOGGED_MODEL_URI.match(uri)
    location = _client().get_logged_model(logged["model_id"]).artifact_location if logged else resolve(uri).artifact_uri
    local = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(dst) if dst else None)
    return Path(local)
