"""Curriculum as configuration: phase weights by source, rarity tier, entity temperature and replay share; a vision
tower frozen in one phase and unfrozen in the next; phases logged as params and a phase-per-step metric."""

import mlflow
import pytest

from medfoundry.config.training import CurriculumPhase
from medfoundry.models.loading import load_model
from medfoundry.training.common import EncodedExample
from medfoundry.training.curriculum import PHASE_METRIC, phase_weights, plan, vision_parameters
from medfoundry.training.pretrain import run_pretrain


def _examples():
    rows = [("hpo:1", "rare", 4.0), ("hpo:2", "common", 1.0), ("medquad:1", "common", 1.0), ("web:1", "general", 1.0)]
    return [EncodedExample([1] * (10 * (i + 1)), [1] * (10 * (i + 1)), None, w, src, tier)
            for i, (src, tier, w) in enumerate(rows)]


def test_phase_weights_follow_mixture_rarity_temperature_and_replay():
    examples = _examples()
    flat = phase_weights(examples, CurriculumPhase(name="flat", token_budget=1, entity_temperature=0))
    assert flat == pytest.approx([0.25] * 4)
    entity = phase_weights(examples, CurriculumPhase(name="entity", token_budget=1, entity_temperature=1))
    assert entity == pytest.approx([4 / 7, 1 / 7, 1 / 7, 1 / 7])
    sharp = phase_weights(examples, CurriculumPhase(name="sharp", token_budget=1, entity_temperature=0.5,
                                                    mixture={"hpo": 2.0, "*": 1.0}, rarity={"rare": 3.0}))
    raw = [2 * 2 * 3, 2, 1, 1]
    assert sharp == pytest.approx([r / sum(raw) for r in raw])
    replay = phase_weights(examples, CurriculumPhase(name="replay", token_budget=1, entity_temperature=0,
                                                     replay_share=0.4))
    assert replay[3] == pytest.approx(0.4) and sum(replay[:3]) == pytest.approx(0.6)
    # token budget -> steps through the expected length: flat expects 25 tokens an example, 2 examples a step
    planned = plan(examples, [CurriculumPhase(name="a", token_budget=500, entity_temperature=0),
                              CurriculumPhase(name="b", token_budget=100, entity_temperature=0)], 2)
    assert [(p.steps, p.first_step) for p in planned] == [(10, 1), (2, 11)]


def _vision_state(folder):
    model = load_model(folder).model
    ids = {id(p) for p in vision_parameters(model)}
    assert ids  # the tiny model is a Qwen2-VL with a vision tower
    return {n: p.detach().clone() for n, p in model.named_parameters() if id(p) in ids}, {
        n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in ids}


def _max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_vision_tower_frozen_then_unfrozen_and_phases_logged(tiny_profile, tiny_dataset, base_model_dir, tmp_path):
    frozen = {"name": "align-frozen-vision", "token_budget": 600, "freeze": ["vision"], "entity_temperature": 0}
    unfrozen = {"name": "all-trainable", "token_budget": 600, "entity_temperature": 1}

    def profile(*phases):
        section = tiny_profile.pretrain.model_copy(update={
            "curriculum": [CurriculumPhase(**p) for p in phases], "checkpoint_every": 0, "learning_rate": 1e-2})
        return tiny_profile.model_copy(update={"pretrain": section})

    first = run_pretrain(profile(frozen), tiny_dataset, base_model_dir, tmp_path / "phase1")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run:
        both = run_pretrain(profile(frozen, unfrozen), tiny_dataset, base_model_dir, tmp_path / "both")
    vision_base, text_base = _vision_state(base_model_dir)
    vision_1, text_1 = _vision_state(tmp_path / "phase1")
    vision_2, _ = _vision_state(tmp_path / "both")
    assert _max_diff(vision_1, vision_base) == 0.0  # frozen phase: the vision tower did not move ...
    assert _max_diff(text_1, text_base) > 1e-4  # ... while the language model learned
    assert _max_diff(vision_2, vision_1) > 1e-4  # after unfreezing it learns (phase 1 of both runs is identical)
    phase1_steps = first["steps"]
    assert both["steps"] > phase1_steps >= 1 and both["curriculum_phases"] == 2

    client = mlflow.MlflowClient()
    params = client.get_run(run.info.run_id).data.params
    assert params["curriculum.0.name"] == "align-frozen-vision" and params["curriculum.1.freeze"] == "[]"
    assert params["curriculum.1.first_step"] == str(phase1_steps + 1)
    phases = {p.step: p.value for p in client.get_metric_history(run.info.run_id, PHASE_METRIC)}
    assert sorted(phases) == list(range(1, both["steps"] + 1))
    assert all(phases[s] == (0.0 if s <= phase1_steps else 1.0) for s in phases)
