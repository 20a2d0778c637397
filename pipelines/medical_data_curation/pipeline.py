"""medical-data-curation: the recipe's data half on its own (ingest, validate, entity-aware curation), for a new
curated dataset version without training; the same components as medical-mllm-recipe.

start-tracking -> ingest -> validate -> curate
"""

from kfp import dsl

from components.start_tracking import start_tracking
from medfoundry.cluster.kfp_settings import apply_kubernetes_settings
from pipelines.medical_mllm_recipe.pipeline import data_stages

PIPELINE_NAME = "medical-data-curation"

STAGES = ["ingest", "validate", "curate"]


def build(cluster_settings=None):
    """The pipeline, with Kubernetes settings from `cluster_settings` (a Profile) when given."""

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Medical data curation: ingest, validate and entity-aware curation into a versioned dataset.",
    )
    def medical_data_curation(profile: str, pipeline_run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER):
        tracking = start_tracking(
            profile=profile, pipeline_run_id=pipeline_run_id, pipeline=PIPELINE_NAME
        ).set_display_name("start-tracking")
        raw, validated, curated = data_stages(profile, tracking)
        if cluster_settings is not None:
            for task in (tracking, raw, validated, curated):
                apply_kubernetes_settings(task, cluster_settings, "cpu")

    return medical_data_curation


medical_data_curation = build()
