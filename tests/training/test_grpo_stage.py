"""The rl stage with the shipped tiny profile's RL section, through run_stage (its nested MLflow run): every reward
component lands in the stage's metrics, with rubric coverage, the prompt pool, zero-variance groups, KL and
entropy."""

import json

import pytest
from reward_fixture import VOCABULARY
from rl_data import make_rl_dataset

from medfoundry import tracking
from medfoundry.config import load_profile
from medfoundry.curation.features import lookup_prompt_pass_rates
from medfoundry.entities.tree import EntityTree, cache_key
from medfoundry.pipeline import stages
from medfoundry.workspace import Workspace


@pytest.fixture(scope="module")
def rl_dataset(tmp_path_factory):
    return make_rl_dataset(tmp_path_factory.mktemp("rl-stage"))


def test_rl_stage_logs_every_reward_component(workspace, rl_dataset, base_model_dir, tmp_path):
    # The shipped RL section (rewards, gate, prompt pool) with its alignment phase only, which uses the full reward
    # mixture; smaller sizes keep the test short. `make demo` runs all four shipped phases.
    shipped = load_profile("tiny")
    alignment = [p.model_dump() for p in shipped.rl.phases if p.name == "alignment"]
    profile = load_profile("tiny", {"rl.num_generations": 2, "rl.max_completion_length": 12,
                                    "rl.prompt_pool.samples_per_prompt": 2, "rl.phases": alignment})
    # play the curate stage: cache an entity tree where the rl stage looks for it (a hand vocabulary, no build)
    cache = Workspace.resolve(profile.workspace).cache / "entity_tree"
    EntityTree.from_rows(VOCABULARY).save(cache / cache_key(None, profile.curation.max_nodes_per_source))
    parent = tracking.start_pipeline_run(profile, "medical-mllm-recipe", "rl-stage-test")
    out = tmp_path / "rl"
    figures = stages.run_stage(
        "rl", profile.to_yaml(), parent,
        paths={"curated_data": str(rl_dataset), "base_model": str(base_model_dir), "model": str(out)},
    )
    (child,) = tracking.stage_runs(parent)
    logged = child.data.metrics
    components = {name for p in shipped.rl.phases for name in (p.rewards or shipped.rl.rewards)}
    assert components == {"exact_match", "format", "rubric", "evidence_grounding", "safety"}
    for name in components:
        assert f"reward_{name}_applicable" in logged, name
    for name in ("exact_match", "format", "rubric", "safety"):  # apply to every completion
        assert logged[f"reward_{name}_applicable"] == 1.0 and f"reward_{name}_mean" in logged
    assert logged["rubric_coverage"] >= 0.8 and logged["rows_with_image"] == 4
    assert logged["pool/candidates"] == 8 and logged["pool/kept"] + logged["pool/too_easy"] + logged["pool/too_hard"] == 8
    # every candidate's pass rate and band, read back through Feast from the workspace's store
    measured = json.loads((out / "prompt_pool.json").read_text())
    stored = lookup_prompt_pass_rates([m["id"] for m in measured], Workspace.resolve(profile.workspace).sub("feast"))
    assert logged["pool/feast_prompts"] == len(measured) == 8
    assert [s["pass_rate"] for s in stored] == pytest.approx([m["pass_rate"] for m in measured])
    assert [s["in_band"] for s in stored] == [int(m["in_band"]) for m in measured]
    # The pool mixes image and text-only rows, so the phase runs as two single-modality parts of one step each.
    for part in ("alignment-images", "alignment-text"):
        assert f"{part}/kl_mean" in logged and f"{part}/entropy_mean" in logged
        assert logged[f"{part}/steps"] == 1
    assert logged["groups"] == 4 and 0 <= logged["zero_variance_groups"] <= 4  # 2 steps of batch_size 2 groups
    assert figures["mean_reward"] == logged["mean_reward"]


def test_mixed_image_and_text_pool_runs_as_single_modality_parts_cpu_safe():
    """TRL's GRPOTrainer fails on a batch mixing image and text-only prompts (the tiny demo's `all` pool does)."""
    from medfoundry.config.training import RLPhase
    from medfoundry.training.grpo import single_modality_parts

    rows = [{"id": "a", "image": object()}, {"id": "b"}, {"id": "c"}, {"id": "d", "image": object()}]
    phase = RLPhase(name="alignment", pool="all", max_steps=4)
    parts = single_modality_parts(phase, rows, is_vision=True)
    assert [(p.name, p.max_steps, [r["id"] for r in part]) for p, part in parts] == [
        ("alignment-images", 2, ["a", "d"]),
        ("alignment-text", 2, ["b", "c"]),
    ]
    assert single_modality_parts(phase, rows, is_vision=False) == [(phase, rows)]
    assert single_modality_parts(phase, rows[:1], is_vision=True) == [(phase, rows[:1])]
