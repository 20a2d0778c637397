"""Promote: Runs only inside `dsl.If(gate passed)`: moves the `champion` alias to the version and commits its KServe InferenceService to the GitOps repository for the profile's environment."""

from kfp import dsl

from medfoundry.images import component_image


@dsl.component(base_image=component_image("cpu"), install_kfp_package=False)
def promote(profile: str, parent_run_id: str, model_version: str) -> None:
    from medfoundry.pipeline.stages import run_stage

    run_stage("promote", profile, parent_run_id, params={"model_version": model_version})
