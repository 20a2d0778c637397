"""Feature definitions for curated datasets: per-entity and per-record features.

The parquet sources are written by `medfoundry.curation.features.write_feature_sources`; their folder comes from
$MEDFOUNDRY_FEAST_DATA (default: ./data beside this file). Keep only definitions in this folder: `feast apply`
imports every .py file here.
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32, Int64, String

DATA_DIR = Path(os.environ.get("MEDFOUNDRY_FEAST_DATA", Path(__file__).resolve().parent / "data"))
ENTITY_FILE = "entity_features.parquet"
SAMPLE_FILE = "sample_features.parquet"
PROMPT_FILE = "prompt_pass_rates.parquet"
TTL = timedelta(days=3650)  # curated datasets are versioned, not streamed: a feature row stays valid

medical_entity = Entity(
    name="medical_entity",
    join_keys=["entity_id"],
    value_type=ValueType.STRING,
    description="A node of the Medical Entity Tree (ICD-10-CM, HPO, drugs, diseases)",
)
sample = Entity(
    name="sample",
    join_keys=["record_id"],
    value_type=ValueType.STRING,
    description="A record of a curated dataset",
)
rl_prompt = Entity(
    name="rl_prompt",
    join_keys=["prompt_id"],
    value_type=ValueType.STRING,
    description="A candidate RL prompt (a held-back record's id or an agentic task's id)",
)

entity_source = FileSource(
    name="entity_features_source",
    path=str(DATA_DIR / ENTITY_FILE),
    timestamp_field="event_timestamp",
)
sample_source = FileSource(
    name="sample_features_source",
    path=str(DATA_DIR / SAMPLE_FILE),
    timestamp_field="event_timestamp",
)

entity_features = FeatureView(
    name="entity_features",
    entities=[medical_entity],
    ttl=TTL,
    schema=[
        Field(name="name", dtype=String),
        Field(name="kind", dtype=String),
        Field(name="frequency", dtype=Int64, description="mentions in the curated dataset"),
        Field(name="record_count", dtype=Int64, description="records mentioning the entity"),
        Field(name="rarity_tier", dtype=String, description="uncovered | sparse | common | frequent"),
        Field(name="depth", dtype=Int64, description="depth in the entity tree"),
        Field(
            name="coverage", dtype=Float32, description="share of the entity's subtree mentioned in the data"
        ),
        Field(name="rare", dtype=Int64, description="1 for a rare disease"),
    ],
    source=entity_source,
    online=True,
)

sample_features = FeatureView(
    name="sample_features",
    entities=[sample],
    ttl=TTL,
    schema=[
        Field(name="quality", dtype=Float32),
        Field(name="sample_weight", dtype=Float32),
        Field(name="entity_ids", dtype=Array(String)),
        Field(name="source", dtype=String),
        Field(name="modality", dtype=String),
        Field(name="kind", dtype=String),
        Field(name="split", dtype=String),
    ],
    source=sample_source,
    online=True,
)

prompt_pass_rate_source = FileSource(
    name="prompt_pass_rates_source",
    path=str(DATA_DIR / PROMPT_FILE),
    timestamp_field="event_timestamp",
)

prompt_pass_rates = FeatureView(
    name="prompt_pass_rates",
    entities=[rl_prompt],
    ttl=TTL,
    schema=[
        Field(name="pass_rate", dtype=Float32, description="share of the policy's k samples that were correct and safe"),
        Field(name="in_band", dtype=Int64, description="1 when the pass rate lies in the prompt pool's band"),
        Field(name="band_low", dtype=Float32),
        Field(name="band_high", dtype=Float32),
        Field(name="samples", dtype=Int64, description="k: samples drawn per prompt"),
    ],
    source=prompt_pass_rate_source,
    online=True,
)

training_service = FeatureService(
    name="training_weights", features=[sample_features[["sample_weight", "quality"]]]
)
