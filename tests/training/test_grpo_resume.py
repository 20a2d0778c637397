"""GRPO fault tolerance: a GRPO stage killed with SIGKILL mid-run resumes from its newest complete checkpoint and
ends with the same rewards, loss and weights as a run that never stopped (CPU, fixed seeds).

The tiny RL holdout has 4 prompts and a step takes 2, so the kill after step 2 lands on an epoch boundary: the resumed
run must draw epoch 1's prompt order (TRL's RepeatSampler keeps its own generator, which no checkpoint holds) and
continue the sampling RNG of generation from the checkpoint."""

import json
import sys
import textwrap

import torch
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

    OVERRIDES = {
        "rl.max_steps": 4, "rl.checkpoint_every": 2, "rl.batch_size": 2, "rl.num_generations": 4,
        "rl.max_completion_length": 8, "rl.learning_rate": 1e-2, "rl.beta": 0.0, "rl.phases": [], "rl.logging_steps": 1,
        "rl.prompt_pool.enabled": False, "rl.rewards": {"distinct_characters": 1.0, "format": 0.2},
    }
    rewards.REWARDS["distinct_characters"] = lambda _resources: distinct_characters
    if __name__ == "__main__":
        data, model, out = map(Path, sys.argv[1:4])
        run_grpo(load_profile("tiny", OVERRIDES), data, model, out)
    """
)


def test_grpo_killed_mid_run_resumes_to_the_same_rewards_loss_and_weights(tiny_dataset, base_model_dir, tmp_path):
    (tmp_path / "grpo_entry.py").write_text(ENTRY)
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    # The uninterrupted reference runs in this process (one import fewer), on one thread like the subprocesses.
    sys.path.insert(0, str(tmp_path))
    threads = torch.get_num_threads()
    try:
        import grpo_entry

        from medfoundry.config import load_profile
        from medfoundry.training.grpo import run_grpo

        torch.set_num_threads(1)
        run_grpo(load_profile("tiny", grpo_entry.OVERRIDES), tiny_dataset, base_model_dir, tmp_path / "reference")
    finally:
        torch.set_num_threads(threads)
        sys.path.remove(str(tmp_path))
        # The entry registers its reward in the process-wide registry: take it out again for the tests that follow.
        from medfoundry.training import rewards

        rewards.REWARDS.pop("distinct_characters", None)
        sys.modules.pop("grpo_entry", None)
    reference = json.loads((tmp_path / "reference" / "train_metrics.json").read_text())

    out = tmp_path / "rl"
    command = [sys.executable, str(tmp_path / "grpo_entry.py"), str(tiny_dataset), str(base_model_dir), str(out)]
    killed = kill_after_checkpoint(command, out, env, checkpoints=out / "trainer" / "rl")  # the single phase
    resumed = run_to_the_end(command, out, env)
    assert resumed["steps"] == reference["steps"] == 4
    assert int(killed["checkpoint"].name.split("-")[1]) == resumed["rl/resumed_from_step"] == 2, killed
    for name in ("reward", "loss"):
        curve, expected = resumed["curves"][name], reference["curves"][name]
        assert [s for s, _ in curve] == [s for s, _ in expected] == [1, 2, 3, 4], (name, curve)
        assert max(abs(a - b) for (_, a), (_, b) in zip(curve, expected, strict=True)) < 1e-5, (name, curve, expected)
    assert max_param_change(base_model_dir, out) > 1e-3  # the policy learned something ...
    assert max_param_change(tmp_path / "reference", out) < 1e-5  # ... and the resumed run learned the same
