"""Register: Registers the trained model as a new MLflow model version with lineage tags (pipeline run, dataset hashes, base model, config hash, git sha) and alias `candidate`."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from medfoundry.images import component_image


@dsl.component(base_image=component_image("cpu"), install_kfp_package=False)
def register(
    profile: str,
    parent_run_id: str,
    model: Input[Model],
    curated_data: Input[Dataset],
    raw_data: Input[Dataset],
    eval_results: Input[Dataset],
) -> str:
    from medfoundry.pipeline.stages import run_stage

    figures = run_stage(
        "register",
        profile,
        parent_run_id,
        paths={
            "model": model.path,
            "curated_data": curated_data.path,
            "raw_data": raw_data.path,
            "eval_results": eval_results.path,
        },
    )
    return figures["version"]
