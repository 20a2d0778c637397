"""medical-mllm-recipe: the MedXIAOHE recipe end to end.

start-tracking -> ingest -> validate -> curate -> pretrain -> sft -> rl -> evaluate -> register -> gate
and, only inside `dsl.If(gate passed)`, promote. The profile travels as one YAML string parameter so the same
compiled pipeline runs any profile; the MLflow parent run id ties every stage's nested run together (the data stages
find it through the KFP run id, so their cache key holds no run-specific value).
"""

from kfp import dsl

from components.curate import curate
from components.evaluate import evaluate
from components.gate import gate
from components.ingest import ingest
from components.pretrain import pretrain
from components.promote import promote
from components.register import register
from components.rl import rl
from components.sft import sft
from components.start_tracking import start_tracking
from components.validate import validate
from medfoundry.cluster.kfp_settings import apply_kubernetes_settings

PIPELINE_NAME = "medical-mllm-recipe"

# Stages with a nested MLflow run, in execution order (the gate records its decision on the parent run instead).
STAGES = ["ingest", "validate", "curate", "pretrain", "sft", "rl", "evaluate", "register", "promote"]


def build(cluster_settings=None):
    """The pipeline, with Kubernetes settings (Secrets, cache PVC, GPUs, node selectors) from `cluster_settings`
    (a Profile) when given. KFP builds a pipeline's graph when it is defined, hence a factory."""

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Medical MLLM recipe: ingest, validate, entity-aware curation, continual pretraining, SFT, GRPO, "
        "evaluation, registration and gated promotion.",
    )
    def medical_mllm_recipe(profile: str, pipeline_run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER):
        _recipe(profile, pipeline_run_id, cluster_settings)

    return medical_mllm_recipe


def data_stages(profile: str, tracking):
    """ingest -> validate -> curate, after `tracking` (which opens the MLflow parent run they nest under).

    They take no run-specific input (the parent run is found through the KFP run id), so their cache key is the
    profile plus their input data: a second run with the same profile reuses them."""
    raw = ingest(profile=profile).after(tracking)
    validated = validate(profile=profile, raw_data=raw.outputs["raw_data"])
    curated = curate(profile=profile, validated_data=validated.outputs["validated_data"])
    return raw, validated, curated


def _recipe(profile: str, pipeline_run_id: str, settings) -> None:
    tracking = start_tracking(profile=profile, pipeline_run_id=pipeline_run_id).set_display_name(
        "start-tracking"
    )
    run_id = tracking.output

    raw, validated, curated = data_stages(profile, tracking)
    dataset = curated.outputs["curated_data"]

    pretrained = pretrain(profile=profile, parent_run_id=run_id, curated_data=dataset)
    tuned = sft(
        profile=profile, parent_run_id=run_id, curated_data=dataset, base_model=pretrained.outputs["model"]
    )
    aligned = rl(
        profile=profile, parent_run_id=run_id, curated_data=dataset, base_model=tuned.outputs["model"]
    )

    evaluated = evaluate(
        profile=profile, parent_run_id=run_id, curated_data=dataset, model=aligned.outputs["model"]
    )
    registered = register(
        profile=profile,
        parent_run_id=run_id,
        model=aligned.outputs["model"],
        curated_data=dataset,
        raw_data=raw.outputs["raw_data"],
        eval_results=evaluated.outputs["eval_results"],
    )
    decision = gate(
        profile=profile,
        parent_run_id=run_id,
        model_version=registered.output,
        eval_results=evaluated.outputs["eval_results"],
    )
    with dsl.If(decision.output == True, name="gate-passed"):  # noqa: E712 - KFP condition expression
        promoted = promote(profile=profile, parent_run_id=run_id, model_version=registered.output)

    if settings is not None:
        # Training steps launch TrainJobs that hold the GPUs; evaluation runs its model inside the step.
        kinds = {pretrained: "trainjob", tuned: "trainjob", aligned: "trainjob", evaluated: "gpu"}
        for task in (tracking, raw, validated, curated, registered, decision, promoted, *kinds):
            apply_kubernetes_settings(task, settings, kinds.get(task, "cpu"))


medical_mllm_recipe = build()
