"""Validate: Runs the Great Expectations suites per record type; failing records are quarantined with the failed expectation as reason and the counts reconcile."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from medfoundry.images import component_image


@dsl.component(base_image=component_image("cpu"), install_kfp_package=False)
def validate(
    profile: str, raw_data: Input[Dataset], validated_data: Output[Dataset]
) -> None:
    from medfoundry.pipeline.stages import run_stage

    run_stage(
        "validate",
        profile,
        "",
        paths={"raw_data": raw_data.path, "validated_data": validated_data.path},
    )
