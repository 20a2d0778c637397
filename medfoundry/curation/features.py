"""Feast features of a curated dataset: per-entity (frequency, rarity tier, depth, coverage) and per-record
(quality, sample weight, entity ids, source, modality).

    store = publish_features(dataset_dir, workdir)     # parquet sources + apply + materialize
    weights = training_weights(record_ids, workdir)    # offline store (point-in-time join)
    rows = lookup_entities(["HP:0001250"], workdir)   # online store (sqlite, or PostgreSQL per profile)

The feature definitions live in the repo's `feature_store/` folder (also usable with the `feast` CLI); here the
same definitions are applied with a RepoConfig whose parquet sources sit in `workdir` and whose registry and online
store are sqlite files there too, or (profile `feast.registry: sql`, `feast.online_store: postgres`) the chart's
PostgreSQL database.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from medfoundry.data.records import read_records

REPO_ENV = "MEDFOUNDRY_FEATURE_REPO"
DATA_ENV = "MEDFOUNDRY_FEAST_DATA"
ENTITY_FILE = "entity_features.parquet"
SAMPLE_FILE = "sample_features.parquet"
ENTITY_FEATURES = ["name", "kind", "frequency", "record_count", "rarity_tier", "depth", "coverage", "rare"]
SAMPLE_FEATURES = ["quality", "sample_weight", "entity_ids", "source", "modality", "kind", "split"]
PROMPT_FILE = "prompt_pass_rates.parquet"
PROMPT_FEATURES = ["pass_rate", "in_band", "band_low", "band_high", "samples"]
CURATION_VIEWS = ["entity_features", "sample_features"]
_STAMP_FILE = "materialized_at.json"


def feature_repo() -> Path:
    """The folder holding feature_store.yaml and the definitions ($MEDFOUNDRY_FEATURE_REPO overrides)."""
    configured = os.environ.get(REPO_ENV)
    path = Path(configured) if configured else Path(__file__).resolve().parents[2] / "feature_store"
    if not (path / "feature_store.yaml").exists():
        raise FileNotFoundError(f"no Feast repo at {path} (set ${REPO_ENV} to the feature_store/ folder)")
    return path


def rarity_tier(frequency: int, sparse_threshold: int) -> str:
    if frequency == 0:
        return "uncovered"
    if frequency <= sparse_threshold:
        return "sparse"
    if frequency <= 10 * max(sparse_threshold, 1):
        return "common"
    return "frequent"


def write_feature_sources(
    dataset_dir: Path, data_dir: Path, sparse_threshold: int = 2, timestamp: datetime | None = None
) -> dict[str, Path]:
    """Write entity and sample feature parquet files for the dataset at `dataset_dir` into `data_dir`.

    Entity rows cover every entity mentioned in the dataset plus the tree's entities listed in coverage.json
    (frequency 0 = uncovered), so rarity tiers include what the data misses.
    """
    import pandas as pd

    stamp = timestamp or datetime.now(UTC)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    mentions: Counter[str] = Counter()
    records_with: Counter[str] = Counter()
    entity_info: dict[str, dict[str, Any]] = {}
    samples = []
    for record in read_records(dataset_dir):
        ids = []
        for mention in record.entities:
            mentions[mention.id] += 1
            ids.append(mention.id)
            entity_info.setdefault(
                mention.id, {"name": mention.name, "kind": mention.kind, "rare": mention.rare}
            )
        for entity_id in set(ids):
            records_with[entity_id] += 1
        samples.append(
            {
                "record_id": record.id,
                "event_timestamp": stamp,
                "quality": float(record.meta.get("quality", 1.0)),
                "sample_weight": float(record.meta.get("sample_weight", 1.0)),
                "entity_ids": sorted(set(ids)),
                "source": record.source,
                "modality": record.modality or "",
                "kind": record.kind,
                "split": record.split,
            }
        )
    coverage_entities = _coverage_entities(dataset_dir)
    for entity_id, info in coverage_entities.items():
        entity_info[entity_id] = {**entity_info.get(entity_id, {}), **info}  # the tree's depth, tier, parents
    children = defaultdict(list)
    for entity_id, info in entity_info.items():
        for parent in info.get("parents", []) or []:
            children[parent].append(entity_id)
    entities = []
    for entity_id, info in sorted(entity_info.items()):
        frequency = mentions.get(entity_id, 0)
        subtree = [entity_id, *children.get(entity_id, [])]
        covered = sum(1 for e in subtree if mentions.get(e, 0) > 0)
        entities.append(
            {
                "entity_id": entity_id,
                "event_timestamp": stamp,
                "name": str(info.get("name", "")),
                "kind": str(info.get("kind", "")),
                "frequency": int(frequency),
                "record_count": int(records_with.get(entity_id, 0)),
                "rarity_tier": str(info.get("tier") or rarity_tier(frequency, sparse_threshold)),
                "depth": int(info.get("depth", -1) if info.get("depth") is not None else -1),
                "coverage": float(covered / len(subtree)),
                "rare": int(bool(info.get("rare", False))),
            }
        )
    entity_frame = pd.DataFrame(entities, columns=["entity_id", "event_timestamp", *ENTITY_FEATURES])
    sample_frame = pd.DataFrame(samples, columns=["record_id", "event_timestamp", *SAMPLE_FEATURES])
    for frame in (entity_frame, sample_frame):
        frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    entity_frame = entity_frame.astype(
        {"frequency": "int64", "record_count": "int64", "depth": "int64", "rare": "int64"}
    )
    entity_frame["coverage"] = entity_frame["coverage"].astype("float32")
    sample_frame = sample_frame.astype({"quality": "float32", "sample_weight": "float32"})
    paths = {"entities": data_dir / ENTITY_FILE, "samples": data_dir / SAMPLE_FILE}
    entity_frame.to_parquet(paths["entities"], index=False)
    sample_frame.to_parquet(paths["samples"], index=False)
    return paths


def _coverage_entities(dataset_dir: Path) -> dict[str, dict[str, Any]]:
    """Entities listed in the dataset's coverage.json (id -> name, kind, depth, tier, parents) when present."""
    path = Path(dataset_dir) / "coverage.json"
    if not path.exists():
        return {}
    coverage = json.loads(path.read_text())
    out: dict[str, dict[str, Any]] = {}
    for row in coverage.get("entities", []) or []:
        if isinstance(row, dict) and row.get("id"):
            out[row["id"]] = row
    return out


def _definitions(data_dir: Path) -> list[Any]:
    """Import the repo's definition modules with $MEDFOUNDRY_FEAST_DATA pointing at `data_dir`."""
    from feast import Entity, FeatureService, FeatureView

    repo = feature_repo()
    previous = os.environ.get(DATA_ENV)
    os.environ[DATA_ENV] = str(Path(data_dir).resolve())
    objects: list[Any] = []
    try:
        for path in sorted(repo.glob("*.py")):
            name = f"_medfoundry_feature_repo_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            for value in vars(module).values():
                if isinstance(value, Entity | FeatureView | FeatureService) and value not in objects:
                    objects.append(value)
    finally:
        if previous is None:
            os.environ.pop(DATA_ENV, None)
        else:
            os.environ[DATA_ENV] = previous
    return objects


def store_settings(workdir: Path, feast_config: Any = None) -> dict[str, Any]:
    """Registry and online store settings for RepoConfig: sqlite files under `workdir`, or the profile's PostgreSQL
    (`feast_config` is the profile's FeastConfig; None: sqlite). Parquet sources stay under `workdir` either way."""
    workdir = Path(workdir).resolve()
    settings: dict[str, Any] = {
        "registry": str(workdir / "registry.db"),
        "online_store": {"type": "sqlite", "path": str(workdir / "online_store.db")},
    }
    if feast_config is None or not feast_config.uses_postgres:
        return settings
    url = _database_url(feast_config.url)
    if feast_config.registry == "sql":
        settings["registry"] = {"registry_type": "sql", "path": url, "cache_ttl_seconds": 60}
    if feast_config.online_store == "postgres":
        from sqlalchemy.engine import make_url

        parts = make_url(url)
        settings["online_store"] = {
            "type": "postgres", "host": parts.host or "localhost", "port": parts.port or 5432,
            "database": parts.database, "db_schema": feast_config.online_schema, "user": parts.username,
            "password": parts.password or "",
            # Feast's own default is `require`, which the chart's PostgreSQL (no TLS) refuses; libpq's `prefer`
            # matches what the SQL registry's driver does with the same URL. ?sslmode= in the URL overrides it.
            "sslmode": parts.query.get("sslmode", "prefer"),
        }
    return settings


def _database_url(template: str) -> str:
    """The profile's feast.url with its ${VAR}s filled from the environment; a missing variable is a clear error."""
    from string import Template

    try:
        return Template(template).substitute(os.environ)
    except KeyError as err:
        raise ValueError(
            f"feast.url needs ${err.args[0]} in the environment (in the cluster: the Secret's password as PGPASSWORD)"
        ) from None


def open_store(workdir: Path, feast_config: Any = None):
    """A FeatureStore over the repo's definitions: parquet sources under `workdir`, registry and online store where
    the profile's `feast` section (`feast_config`) says (None: sqlite files under `workdir`)."""
    import yaml
    from feast import FeatureStore, RepoConfig

    workdir = Path(workdir).resolve()
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load((feature_repo() / "feature_store.yaml").read_text())
    config = RepoConfig(
        project=base.get("project", "medfoundry"),
        provider=base.get("provider", "local"),
        **store_settings(workdir, feast_config),
        offline_store={"type": "file"},
        entity_key_serialization_version=base.get("entity_key_serialization_version", 3),
        repo_path=str(workdir),
    )
    return FeatureStore(config=config)


def default_workdir() -> Path:
    """<workspace>/feast: where the pipeline publishes features and agent tools read them."""
    from medfoundry.workspace import Workspace

    return Workspace.resolve().sub("feast")


def publish_features(
    dataset_dir: Path, workdir: Path | None = None, sparse_threshold: int = 2, feast_config: Any = None
) -> dict[str, Any]:
    """Write the parquet sources, apply the definitions and materialize them into the online store."""
    workdir = Path(workdir or default_workdir()).resolve()
    stamp = datetime.now(UTC).replace(microsecond=0)
    paths = write_feature_sources(dataset_dir, workdir / "data", sparse_threshold, stamp)
    store = open_store(workdir, feast_config)
    store.apply(_definitions(workdir / "data"))
    store.materialize(
        start_date=stamp - timedelta(days=1), end_date=stamp + timedelta(seconds=1), feature_views=CURATION_VIEWS
    )
    (workdir / _STAMP_FILE).write_text(
        json.dumps({"timestamp": stamp.isoformat(), "dataset": str(dataset_dir)})
    )
    import pandas as pd

    return {
        "feast_entities": int(len(pd.read_parquet(paths["entities"], columns=["entity_id"]))),
        "feast_samples": int(len(pd.read_parquet(paths["samples"], columns=["record_id"]))),
        "feast_workdir": str(workdir),
    }


def is_published(workdir: Path) -> bool:
    """Whether `publish_features` has applied and materialized a feature store in `workdir`."""
    return (Path(workdir) / _STAMP_FILE).is_file()


def training_weights(
    record_ids: list[str], workdir: Path | None = None, at: datetime | None = None, feast_config: Any = None
):
    """Sample weight and quality per record id from the offline store (point-in-time join at `at`, default now)."""
    import pandas as pd

    when = at or datetime.now(UTC) + timedelta(seconds=1)
    entity_df = pd.DataFrame({"record_id": list(record_ids), "event_timestamp": pd.Timestamp(when)})
    store = open_store(workdir or default_workdir(), feast_config)
    job = store.get_historical_features(
        entity_df=entity_df, features=["sample_features:sample_weight", "sample_features:quality"]
    )
    frame = job.to_df()
    return frame[["record_id", "sample_weight", "quality"]].set_index("record_id").reindex(list(record_ids))


def lookup_entities(entity_ids: list[str], workdir: Path | None = None, feast_config: Any = None) -> list[dict[str, Any]]:
    """Online features of entities (name, kind, frequency, rarity tier, depth, coverage); unknown ids give None."""
    rows = _online_rows("entity_features", "entity_id", entity_ids, ENTITY_FEATURES, workdir, feast_config)
    for row in rows:
        row["found"] = row["name"] is not None
    return rows


def _online_rows(
    view: str, join_key: str, ids: list[str], names: list[str], workdir: Path | None, feast_config: Any = None
) -> list[dict[str, Any]]:
    """One dict per id with the view's online features (None where the id is unknown)."""
    store = open_store(workdir or default_workdir(), feast_config)
    response = store.get_online_features(
        features=[f"{view}:{name}" for name in names], entity_rows=[{join_key: key} for key in ids]
    ).to_dict()
    return [{join_key: key, **{name: response[name][i] for name in names}} for i, key in enumerate(ids)]


def publish_prompt_pass_rates(
    measured: list[dict[str, Any]], band: tuple[float, float], samples: int, workdir: Path | None = None,
    feast_config: Any = None,
) -> int:
    """Store the prompt pool's per-prompt pass rate and band (rows of `PromptPool.measured`) as the
    `prompt_pass_rates` feature view of the same store curation publishes to; returns the number of prompts."""
    import pandas as pd

    workdir = Path(workdir or default_workdir()).resolve()
    stamp = datetime.now(UTC).replace(microsecond=0)
    frame = pd.DataFrame(
        [
            {"prompt_id": str(row["id"]), "event_timestamp": stamp, "pass_rate": float(row["pass_rate"]),
             "in_band": int(bool(row["in_band"])), "band_low": float(band[0]), "band_high": float(band[1]),
             "samples": int(samples)}
            for row in measured
        ],
        columns=["prompt_id", "event_timestamp", *PROMPT_FEATURES],
    )
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    frame = frame.astype({"pass_rate": "float32", "band_low": "float32", "band_high": "float32",
                          "in_band": "int64", "samples": "int64"})
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(data_dir / PROMPT_FILE, index=False)
    store = open_store(workdir, feast_config)
    store.apply(_definitions(data_dir))
    store.materialize(start_date=stamp - timedelta(days=1), end_date=stamp + timedelta(seconds=1),
                      feature_views=["prompt_pass_rates"])
    return len(frame)


def lookup_prompt_pass_rates(
    prompt_ids: list[str], workdir: Path | None = None, feast_config: Any = None
) -> list[dict[str, Any]]:
    """Online pass rate, band flag and band of RL prompts; unknown ids give None values."""
    return _online_rows("prompt_pass_rates", "prompt_id", prompt_ids, PROMPT_FEATURES, workdir, feast_config)
