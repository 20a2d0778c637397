"""Continual pretraining: Builds (tiny profile: from config, tokenizer trained on the corpus) or loads the base VLM and runs continual pretraining on image+text batches."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from medfoundry.images import component_image


@dsl.component(base_image=component_image("gpu"), install_kfp_package=False)
def pretrain(profile: str, parent_run_id: str, curated_data: Input[Dataset], model: Output[Model]) -> None:
    from medfoundry.pipeline.stages import run_stage

    run_stage(
        "pretrain", profile, parent_run_id, paths={"curated_data": curated_data.path, "model": model.path}
    )
