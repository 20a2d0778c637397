"""Caching that hits: two runs of the recipe's data stages (the recipe's own `data_stages`, after start-tracking) with
the same profile through kfp.local with caching on. The second run opens a new MLflow parent run but reuses
ingest, validate and curate from the cache.

Before the fix every stage took the run-specific MLflow parent run id as an input, so its cache key changed on every
run and nothing was ever reused.
"""

# No `from __future__ import annotations`: kfp reads the pipeline's type annotations as real types.

import pytest


@pytest.fixture
def tiny_profile(workspace):
    from medfoundry.config import load_profile

    # Fewer source records than the demo: the point is what the cache does, not how much data flows.
    return load_profile(
        "tiny", {"workspace": str(workspace), "data.max_dicom_files": 4, "data.max_ontology_terms": 60}
    )


@pytest.mark.slow  # 4 kfp.local tasks of real data work: 689 s at load average 12-15 on 2 cores (docs/deploy.md)
def test_second_run_reuses_ingest_validate_curate(tiny_profile, workspace, monkeypatch):
    import mlflow
    from kfp import dsl, local

    from components.start_tracking import start_tracking
    from medfoundry import tracking
    from medfoundry.cluster.kfp_settings import PIPELINE_RUN_ENV
    from pipelines.medical_mllm_recipe.pipeline import data_stages

    @dsl.pipeline(name="data-stages")
    def data_only(profile: str, pipeline_run_id: str):
        data_stages(profile, start_tracking(profile=profile, pipeline_run_id=pipeline_run_id))

    monkeypatch.setenv("MEDFOUNDRY_HOME", str(workspace))
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(workspace / "pipeline_root"),
        enable_caching=True,
        cache_root=str(workspace / "kfp_cache"),
    )
    for run_id in ("first-run", "second-run"):
        monkeypatch.setenv(PIPELINE_RUN_ENV, run_id)
        data_only(profile=tiny_profile.to_yaml(), pipeline_run_id=run_id)  # raises when a task fails

    tracking.configure(tiny_profile)
    first = tracking.pipeline_parent_run(tiny_profile, "first-run")
    second = tracking.pipeline_parent_run(tiny_profile, "second-run")
    assert first is not None and second is not None and first.info.run_id != second.info.run_id
    stages_first = {r.data.tags[tracking.STAGE_TAG] for r in tracking.stage_runs(first.info.run_id)}
    stages_second = {r.data.tags[tracking.STAGE_TAG] for r in tracking.stage_runs(second.info.run_id)}
    assert stages_first == {"ingest", "validate", "curate"}  # they ran, nested under the first run's parent
    assert stages_second == set()  # served from the cache: no stage ran again
    experiment = mlflow.get_experiment_by_name(tiny_profile.tracking.experiment)
    ingest_runs = mlflow.search_runs([experiment.experiment_id], filter_string="tags.`medfoundry.stage` = 'ingest'")
    assert len(ingest_runs) == 1
