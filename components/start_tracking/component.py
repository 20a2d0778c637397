"""Start tracking: Opens the MLflow parent run of one pipeline run (profile, config hash, git sha) and returns its id; every stage nests its run under it."""

from kfp import dsl

from medfoundry.images import component_image


@dsl.component(base_image=component_image("cpu"), install_kfp_package=False)
def start_tracking(profile: str, pipeline_run_id: str, pipeline: str = "medical-mllm-recipe") -> str:
    import yaml

    from medfoundry.config.profile import parse_profile
    from medfoundry.tracking import start_pipeline_run

    return start_pipeline_run(parse_profile(yaml.safe_load(profile)), pipeline, pipeline_run_id)
