"""Feast as the chart deploys it: the production profile's SQL registry and PostgreSQL online store, on a real
PostgreSQL server started by the test (fixture `postgres_server`). Curation applies and materializes into it; training's
reader gets the sample weights back through get_historical_features; nothing lands in local sqlite files."""

from __future__ import annotations

import pytest

from medfoundry.data.records import RECORDS, EntityMention, Record, write_jsonl

WEIGHTS = {"r-seizure": 3.5, "r-diabetes": 0.25, "r-plain": 1.0}


def _dataset(path):
    seizure = EntityMention(id="HP:0001250", name="Seizure", kind="phenotype", start=0, end=7, rare=True)
    records = [
        Record(id="r-seizure", source="user:notes.jsonl", kind="note", text="Seizure at night.", entities=[seizure],
               meta={"sample_weight": WEIGHTS["r-seizure"], "quality": 0.9}),
        Record(id="r-diabetes", source="user:notes.jsonl", kind="note", text="Type 2 diabetes.",
               meta={"sample_weight": WEIGHTS["r-diabetes"], "quality": 0.7}),
        Record(id="r-plain", source="user:notes.jsonl", kind="text", text="Routine visit.",
               meta={"sample_weight": WEIGHTS["r-plain"]}),
    ]
    path.mkdir(parents=True)
    write_jsonl(path / RECORDS, records)
    return path


def test_curation_writes_sql_registry_and_postgres_online_store_training_reads_it(
    postgres_server, tmp_path, monkeypatch
):
    import sqlalchemy

    from medfoundry.config import load_profile
    from medfoundry.curation.features import lookup_entities, publish_features
    from medfoundry.training.common import TextExample, reweight_from_feature_store

    url = postgres_server("feast")
    # The shipped production profile's feast section, pointed at the test server; the password comes from the
    # environment as in the cluster (the test server trusts local connections, so its value is not checked).
    monkeypatch.setenv("PGPASSWORD", "from-the-secret")
    profile = load_profile(
        "production-7b",
        {"workspace": str(tmp_path / "ws"), "feast.url": url.replace("postgres@", "postgres:${PGPASSWORD}@")},
    )
    assert (profile.feast.registry, profile.feast.online_store) == ("sql", "postgres")
    workdir = tmp_path / "ws" / "feast"
    figures = publish_features(_dataset(tmp_path / "dataset"), workdir, feast_config=profile.feast)
    assert figures["feast_samples"] == 3

    assert not (workdir / "registry.db").exists() and not (workdir / "online_store.db").exists()
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as db:
        views = {row[0] for row in db.execute(sqlalchemy.text("SELECT feature_view_name FROM feature_views"))}
        online_tables = [
            row[0] for row in db.execute(sqlalchemy.text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'online'"))
        ]
        online_rows = sum(
            db.execute(sqlalchemy.text(f'SELECT count(*) FROM online."{table}"')).scalar() for table in online_tables
        )
    engine.dispose()
    assert {"sample_features", "entity_features"} <= views
    assert online_rows > 0  # materialize wrote the online store on PostgreSQL
    row = lookup_entities(["HP:0001250", "NOPE:1"], workdir, feast_config=profile.feast)
    assert row[0]["found"] and row[0]["frequency"] == 1 and row[1]["found"] is False

    # Training (another pod): its sampler's weights come from Feast, not from the examples' own weights.
    examples = [TextExample("", "x", None, 1.0, record_id) for record_id in WEIGHTS]
    assert reweight_from_feature_store(profile, examples) == "feast"
    assert {e.record_id: e.weight for e in examples} == pytest.approx(WEIGHTS)


def test_missing_password_variable_is_a_clear_error(tmp_path, monkeypatch):
    from medfoundry.config import load_profile
    from medfoundry.curation.features import open_store

    monkeypatch.delenv("PGPASSWORD", raising=False)
    profile = load_profile("production-7b", {"workspace": str(tmp_path)})
    with pytest.raises(ValueError, match=r"feast.url needs \$PGPASSWORD"):
        open_store(tmp_path / "feast", profile.feast)
