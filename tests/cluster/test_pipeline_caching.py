"""Caching that hits: the `medical-data-curation` pipeline (the recipe's own `data_stages` after start-tracking, the
same compiled components) runs twice through kfp.local with caching on and the same profile. The second run opens a
new MLflow parent run but kfp.local serves ingest, validate and curate from its cache; a profile whose data settings
differ makes ingest run again.

Before the fix every stage took the run-specific MLflow parent run id as an input, so its cache key changed on every
run and nothing was ever reused. What is asserted comes from kfp.local itself (its cache entries, the task folders
it creates under the pipeline root, its "cache hit" log lines), not from our own bookkeeping.
"""

# No `from __future__ import annotations`: kfp reads component type annotations as real types.

import json
import logging

DATA_STAGES = ("ingest", "validate", "curate")


def _data_profile(workspace, max_ontology_terms: int = 20):
    from medfoundry.config import load_profile

    # The point is what the cache does, not how much data flows: ontology terms only, curation's heavy optional
    # steps (PHI engine, Feast apply, benchmark decontamination, synthesis) off. The components are the real ones.
    return load_profile(
        "tiny",
        {
            "workspace": str(workspace),
            "data.dicom": False,
            "data.max_ontology_terms": max_ontology_terms,
            "curation.max_nodes_per_source": 100,
            "curation.scrub_phi": False,
            "curation.feast": False,
            "curation.decontaminate_benchmarks": False,
            "curation.synthesize": False,
        },
    )


def _cache_entries(cache_root) -> dict[str, dict]:
    """kfp.local's cache: one JSON file per cache key, holding the outputs it serves on a hit."""
    return {p.stem: json.loads(p.read_text()) for p in cache_root.glob("*.json")}


def _hits(caplog) -> set[str]:
    """Tasks kfp.local reported as served from its cache ("Task <name> cache hit (key=...)")."""
    return {r.getMessage().split()[1] for r in caplog.records if "cache hit" in r.getMessage()}


def _count(records) -> int:
    return sum(1 for _ in records)


def _run_folder(pipeline_root, before: set) -> set[str]:
    """Task folders kfp.local created (tasks that executed) since `before` was listed."""
    return {p.name for run in set(pipeline_root.iterdir()) - before for p in run.iterdir() if p.is_dir()}


def test_second_run_reuses_ingest_validate_curate(workspace, monkeypatch, caplog):
    from kfp import dsl, local

    from components.ingest import ingest
    from medfoundry.cluster.kfp_settings import PIPELINE_RUN_ENV
    from medfoundry.data.records import read_records
    from pipelines.medical_data_curation.pipeline import medical_data_curation

    monkeypatch.setenv("MEDFOUNDRY_HOME", str(workspace))
    pipeline_root, cache_root = workspace / "pipeline_root", workspace / "kfp_cache"
    pipeline_root.mkdir()
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        enable_caching=True,
        cache_root=str(cache_root),
    )
    caplog.set_level(logging.INFO)
    profile_yaml = _data_profile(workspace).to_yaml()

    def run(run_id: str) -> set[str]:
        monkeypatch.setenv(PIPELINE_RUN_ENV, run_id)
        before = set(pipeline_root.iterdir())
        medical_data_curation(profile=profile_yaml, pipeline_run_id=run_id)  # raises when a task fails
        return _run_folder(pipeline_root, before)

    first_tasks = run("first-run")
    after_first = _cache_entries(cache_root)
    assert first_tasks == {"start-tracking", *DATA_STAGES}
    assert len(after_first) == 4  # every task executed and was stored

    caplog.clear()
    second_tasks = run("second-run")
    after_second = _cache_entries(cache_root)
    # Only start-tracking ran again (its run id is new); the data stages were served from kfp.local's cache.
    assert second_tasks == {"start-tracking"}
    assert len(after_second) == 5 and after_first.items() <= after_second.items()
    assert _hits(caplog) == set(DATA_STAGES)

    # The same ingest component in a pipeline of its own, inside the second run: with the same profile kfp.local
    # serves it from the cache (nothing runs) ...
    @dsl.pipeline(name="ingest-only")
    def ingest_only(profile: str):
        ingest(profile=profile)

    caplog.clear()
    before = set(pipeline_root.iterdir())
    ingest_only(profile=profile_yaml)
    assert _hits(caplog) == {"ingest"} and _run_folder(pipeline_root, before) == set()
    # ... while different data settings change its cache key: it runs, is stored, and reads more terms.
    caplog.clear()
    before = set(pipeline_root.iterdir())
    ingest_only(profile=_data_profile(workspace, max_ontology_terms=30).to_yaml())
    assert _hits(caplog) == set() and _run_folder(pipeline_root, before) == {"ingest"}
    after_change = _cache_entries(cache_root)
    [(_, rerun)] = [(k, v) for k, v in after_change.items() if k not in after_second]
    first_ingest = next(v for v in after_first.values() if "raw_data" in v)
    assert _count(read_records(rerun["raw_data"]["uri"])) > _count(read_records(first_ingest["raw_data"]["uri"]))
