"""Evaluate: Scores the model with the unified evaluation harness on the held-out split (and configured benchmarks): accuracy with 95% bootstrap intervals, rarity breakdowns, HTML report."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from medfoundry.images import component_image


@dsl.component(base_image=component_image("gpu"), install_kfp_package=False)
def evaluate(
    profile: str,
    parent_run_id: str,
    curated_data: Input[Dataset],
    model: Input[Model],
    eval_results: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
) -> None:
    from medfoundry.pipeline.stages import run_stage

    figures = run_stage(
        "evaluate",
        profile,
        parent_run_id,
        paths={
            "curated_data": curated_data.path,
            "model": model.path,
            "eval_results": eval_results.path,
            "report_html": report.path,
        },
    )
    for key, value in figures.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(key, value)
