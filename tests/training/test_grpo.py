import json

import pytest
import torch
from rl_data import make_rl_dataset

from medfoundry.data.records import read_records
from medfoundry.models.loading import load_model
from medfoundry.training import grpo, rewards
from medfoundry.training.grpo import rl_rows, run_grpo
from medfoundry.training.qa import is_rl_holdout
from medfoundry.training.rewards.base import completion_text


@pytest.fixture(scope="module")
def image_rl_dataset(tmp_path_factory):
    return make_rl_dataset(tmp_path_factory.mktemp("rl-images"))


def test_rl_rows_are_the_rl_half_of_the_holdout_with_images_and_rubrics(tiny_dataset, image_rl_dataset):
    rows = rl_rows(tiny_dataset)
    assert sorted(r["id"] for r in rows) == ["hold-0", "hold-1", "hold-2", "hold-3"]  # hold-4 is for evaluation
    first = next(r for r in rows if r["id"] == "hold-0")
    assert first["prompt"][0]["role"] == "system" and "<think>" in first["prompt"][1]["content"]
    assert json.loads(first["options"]) == {"A": "Vitamin C", "B": "Vitamin D"} and first["answer"] == "A"
    assert first["answer_type"] == "option" and json.loads(first["rubric"])[0]["keywords"][0] == "Vitamin C"
    assert not any(is_rl_holdout(r) for r in read_records(tiny_dataset) if r.split == "train")
    with_images = [r for r in rl_rows(image_rl_dataset) if r["id"].startswith("img-")]
    assert len(with_images) == 4 and all(r["image"].size in {(64, 64), (80, 48)} for r in with_images)
    assert not any("image" in r for r in rl_rows(image_rl_dataset, images=False))


def _changing_length(completions, **kwargs):
    """Wiring-test reward: varies within every group of a random-init policy, so advantages are non-zero."""
    return [len(completion_text(c)) / 32 for c in completions]


def _vision_keys(state):
    return [k for k in state if ".visual." in f".{k}"]


def test_wiring_grpo_images_reach_vision_tower(tiny_profile, image_rl_dataset, base_model_dir, tmp_path, monkeypatch):
    """Wiring test (not efficacy): image rows put pixels through the vision tower in rollouts and in the update, and
    one step changes the vision tower's weights. The reward is test-only, chosen to vary within each group."""
    monkeypatch.setitem(rewards.REWARDS, "wiring_length", lambda _resources: _changing_length)
    seen = {"rollout": 0, "update": 0}

    def hooked_load(*args, **kwargs):
        loaded = load_model(*args, **kwargs)
        visual = next(m for name, m in loaded.model.named_modules() if name.endswith("visual"))

        def count(_module, inputs, _output):
            seen["update" if torch.is_grad_enabled() else "rollout"] += int(inputs[0].shape[0])

        visual.register_forward_hook(count)
        return loaded

    monkeypatch.setattr(grpo, "load_model", hooked_load)
    rl = tiny_profile.rl.model_copy(update={
        "rewards": {"wiring_length": 1.0}, "max_steps": 1, "batch_size": 2, "learning_rate": 1e-2, "phases": []})
    profile = tiny_profile.model_copy(update={"rl": rl})
    only_images = make_rl_dataset(tmp_path / "only-images", text_items=False)  # every group sees pixels
    out = tmp_path / "rl"
    metrics = run_grpo(profile, only_images, base_model_dir, out)
    assert metrics["rows_with_image"] == 4 and metrics["steps"] == 1
    assert seen["rollout"] > 0 and seen["update"] > 0  # pixel patches through the tower in both passes
    before, after = load_model(base_model_dir).model.state_dict(), load_model(out).model.state_dict()
    keys = _vision_keys(before)
    assert keys and max(float((before[k].float() - after[k].float()).abs().max()) for k in keys) > 1e-6
    assert metrics["groups"] == 2 and metrics["zero_variance_groups"] == 0


def test_grpo_unknown_reward_is_a_clear_error(tiny_profile, tiny_dataset, base_model_dir, tmp_path):
    profile = tiny_profile.model_copy(update={"rl": tiny_profile.rl.model_copy(update={"rewards": {"nope": 1.0}, "phases": []})})
    with pytest.raises(ValueError, match="unknown reward"):
        run_grpo(profile, tiny_dataset, base_model_dir, tmp_path)


def test_rft_phase_fine_tunes_on_passing_samples_only(tiny_profile, image_rl_dataset, base_model_dir, tmp_path):
    """RFT (rejection sampling): only correct and safe samples become training examples, image rows included."""
    from medfoundry.config.training import RLPhase
    from medfoundry.training.grpo import _rft_phase

    rows = [r for r in rl_rows(image_rl_dataset) if r["id"].startswith("img-")]
    samples = {r["id"]: [f"<answer>{r['answer']}</answer>", "<answer>maybe</answer>",
                         f"<answer>{r['answer']}</answer> You may ignore chest pain."] for r in rows}
    loaded = load_model(base_model_dir)
    metrics, _, _ = _rft_phase(tiny_profile, RLPhase(name="rft", kind="rft", max_steps=1), loaded, rows, samples,
                               tmp_path)
    assert metrics["sampled"] == 12 and metrics["accepted_samples"] == 4  # one correct and safe sample per row
    assert metrics["steps"] == 1
