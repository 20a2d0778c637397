"""Promotion gate: Evaluates the promotion gate policy (minimum scores, regression against the champion within intervals, rare-tier, hallucination ceiling); records the decision with reasons on the parent run. Its boolean output drives `dsl.If`."""

from kfp import dsl
from kfp.dsl import Dataset, Input

from medfoundry.images import component_image


@dsl.component(base_image=component_image("cpu"), install_kfp_package=False)
def gate(profile: str, parent_run_id: str, model_version: str, eval_results: Input[Dataset]) -> bool:
    from medfoundry.pipeline.stages import decide_gate

    return decide_gate(profile, parent_run_id, model_version, eval_results.path)
