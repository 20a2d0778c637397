import json
import math

import pytest
from training_data import max_param_change

from medfoundry.data.records import read_records
from medfoundry.models.loading import load_model
from medfoundry.training import rewards
from medfoundry.training.common import METRICS_FILE
from medfoundry.training.grpo import rl_rows, run_grpo
from medfoundry.training.qa import is_rl_holdout
from medfoundry.training.rewards.base import completion_text


def test_rl_prompts_are_the_rl_half_of_the_holdout(tiny_dataset):
    rows = rl_rows(tiny_dataset)
    assert sorted(r["id"] for r in rows) == ["hold-0", "hold-1", "hold-2", "hold-3"]  # hold-4 is for evaluation
    first = next(r for r in rows if r["id"] == "hold-0")
    assert first["prompt"][0]["role"] == "system" and "<think>" in first["prompt"][1]["content"]
    assert json.loads(first["options"]) == {"A": "Vitamin C", "B": "Vitamin D"} and first["answer"] == "A"
    assert not any(is_rl_holdout(r) for r in read_records(tiny_dataset) if r.split == "train")


def _distinct_characters(completions, **kwargs):
    """Test-only reward with variance on a random-init policy (the real rewards are all 0 there, so the
    advantages, and with them the gradients, would be 0)."""
    return [len(set(completion_text(c))) / 10 for c in completions]


def test_grpo_runs_real_steps_and_saves(tiny_profile, tiny_dataset, base_model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(rewards.REWARDS, "distinct_characters", _distinct_characters)
    weights = {"exact_match": 1.0, "format": 0.2, "distinct_characters": 1.0}
    profile = tiny_profile.model_copy(
        update={"rl": tiny_profile.rl.model_copy(update={"rewards": weights, "learning_rate": 1e-2})}
    )
    out = tmp_path / "rl"
    metrics = run_grpo(profile, tiny_dataset, base_model_dir, out)
    assert metrics["steps"] == profile.rl.max_steps and metrics["prompts"] == 4
    assert math.isfinite(metrics["mean_reward"]) and metrics["mean_reward"] > 0
    assert metrics["reward_exact_match_mean"] >= 0 and "reward_format_mean" in metrics
    assert max_param_change(base_model_dir, out) > 0
    assert load_model(out).is_vision
    assert len(json.loads((out / METRICS_FILE).read_text())["curves"]["reward"]) == metrics["steps"]


def test_grpo_unknown_reward_is_a_clear_error(tiny_profile, tiny_dataset, base_model_dir, tmp_path):
    profile = tiny_profile.model_copy(update={"rl": tiny_profile.rl.model_copy(update={"rewards": {"nope": 1.0}})})
    with pytest.raises(ValueError, match="unknown reward"):
        run_grpo(profile, tiny_dataset, base_model_dir, tmp_path)
