"""Curate: Entity-aware curation: cleaning, de-duplication, PHI scrubbing, decontamination, entity linking against the Medical Entity Tree, coverage report, synthesis for sparse entities, rebalancing, Feast features; publishes a content-addressed dataset version."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from medfoundry.images import component_image


@dsl.component(base_image=component_image("cpu"), install_kfp_package=False)
def curate(
    profile: str, validated_data: Input[Dataset], curated_data: Output[Dataset]
) -> None:
    from medfoundry.pipeline.stages import run_stage

    run_stage(
        "curate",
        profile,
        "",
        paths={"validated_data": validated_data.path, "curated_data": curated_data.path},
    )
