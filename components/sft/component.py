"""Supervised fine-tuning: SFT with structured reasoning targets (<think>...</think><answer>...</answer>) on the curated QA, images included."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from medfoundry.images import component_image


@dsl.component(base_image=component_image("gpu"), install_kfp_package=False)
def sft(
    profile: str,
    parent_run_id: str,
    curated_data: Input[Dataset],
    base_model: Input[Model],
    model: Output[Model],
) -> None:
    from medfoundry.pipeline.stages import run_stage

    run_stage(
        "sft",
        profile,
        parent_run_id,
        paths={"curated_data": curated_data.path, "base_model": base_model.path, "model": model.path},
    )
