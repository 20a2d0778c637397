"""GRPO fault tolerance: a GRPO stage killed with SIGKILL mid-run resumes from its newest complete checkpoint and
ends with the same rewards and the same weights as a run that never stopped (CPU, fixed seeds)."""

import json
import sys
import textwrap

import pytest
from resume_helpers import kill_after_checkpoint, run_to_the_end
from training_data import max_param_change

# A reward with variance on a random-init policy (the real rewards are all 0 there, so nothing would be learned and
# a resume that lost the weights could not be told apart).
ENTRY = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from medfoundry.config import load_profile
    from medfoundry.training import rewards
    from medfoundry.training.grpo import run_grpo
    from medfoundry.training.rewards.base import completion_text

    def distinct_characters(completions, **kwargs):
        return [len(set(completion_text(c))) / 10 for c in completions]

    rewards.REWARDS["distinct_characters"] = lambda _resources: distinct_characters
    data, model, out = map(Path, sys.argv[1:4])
    profile = load_profile("tiny", {
        "rl.max_steps": 6, "rl.checkpoint_every": 2, "rl.batch_size": 2, "rl.num_generations": 4,
        "rl.max_completion_length": 8, "rl.learning_rate": 1e-2, "rl.beta": 0.0, "rl.phases": [],
        "rl.prompt_pool.enabled": False, "rl.rewards": {"distinct_characters": 1.0, "format": 0.2},
    })
    run_grpo(profile, data, model, out)
    """
)


# Slow: three GRPO subprocess runs; in this session (load average ~20 on 2 cores) it ran past pytest's 900 s limit
# before finishing, so it has not yet been seen passing.
@pytest.mark.slow
def test_grpo_killed_mid_run_resumes_to_the_same_rewards_and_weights(tiny_dataset, base_model_dir, tmp_path):
    (tmp_path / "entry.py").write_text(ENTRY)
    env = {"HF_HUB_OFFLINE": "1"}

    def command(out):
        return [sys.executable, str(tmp_path / "entry.py"), str(tiny_dataset), str(base_model_dir), str(out)]

    reference = run_to_the_end(command(tmp_path / "reference"), tmp_path / "reference", env)
    out = tmp_path / "rl"
    killed = kill_after_checkpoint(command(out), out, env, checkpoints=out / "trainer" / "rl")  # the single phase
    resumed = run_to_the_end(command(out), out, env)
    assert resumed["steps"] == reference["steps"] == 6
    assert 2 <= int(killed["checkpoint"].name.split("-")[1]) <= resumed["rl/resumed_from_step"] < 6
    curve, expected = resumed["curves"]["reward"], reference["curves"]["reward"]
    assert [s for s, _ in curve] == [s for s, _ in expected]
    assert max(abs(a - b) for (_, a), (_, b) in zip(curve, expected, strict=True)) < 1e-5, (curve, expected)
    assert max_param_change(base_model_dir, out) > 1e-4  # the policy learned something ...
    assert max_param_change(tmp_path / "reference", out) < 1e-5  # ... and the resumed run learned the same
    assert json.loads((out / "train_metrics.json").read_text())["mean_reward"] == reference["mean_reward"]
