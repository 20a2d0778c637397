"""Fault tolerance and live curves: a training stage killed with SIGKILL mid-run resumes from its newest complete
checkpoint and ends at the same loss as a run that never stopped; its MLflow curve grows while it trains and
survives the kill."""

import json
import math

import mlflow
from resume_helpers import kill_after_checkpoint, run_to_the_end, train_command

from medfoundry.config import load_profile
from medfoundry.training.checkpoints import EpochSeededSampler
from medfoundry.training.common import METRICS_FILE
from medfoundry.training.sft import run_sft

# 4 examples in batches of 3 (two uneven batches an epoch), a checkpoint every 4 steps, the last 2 kept
OVERRIDES = {"sft.max_steps": 16, "sft.batch_size": 3, "sft.checkpoint_every": 4, "sft.checkpoint_keep": 2}


def test_sampler_order_depends_only_on_seed_and_epoch():
    a, b = EpochSeededSampler([1.0] * 10, seed=3), EpochSeededSampler([1.0] * 10, seed=3)
    a.set_epoch(0), list(a), a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b)  # epoch 1 is the same whether or not epoch 0 was drawn in this process
    b.set_epoch(2)
    assert list(b) != list(a)
    weighted = EpochSeededSampler([1.0, 0.0, 0.0, 5.0], seed=0)
    assert set(weighted) <= {0, 3}


def test_sft_killed_mid_run_resumes_to_the_same_loss_and_keeps_its_live_curve(tiny_dataset, base_model_dir, tmp_path):
    profile = load_profile("tiny", OVERRIDES)
    reference = run_sft(profile, tiny_dataset, base_model_dir, tmp_path / "reference")

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(db)
    run_id = mlflow.MlflowClient().create_run(mlflow.MlflowClient().create_experiment("resume")).info.run_id
    env = {"MLFLOW_TRACKING_URI": db, "MLFLOW_RUN_ID": run_id, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "sft"
    command = train_command("sft", tiny_dataset, base_model_dir, out, OVERRIDES)
    seen = {}

    def curve_is_live() -> bool:
        seen["points"] = mlflow.MlflowClient().get_metric_history(run_id, "train_loss")
        return len(seen["points"]) >= 5

    killed = kill_after_checkpoint(command, out, env, ready=curve_is_live)
    # the curve was read while the stage was still running: one point per logging interval (1 step) so far
    steps = sorted(p.step for p in seen["points"])
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < OVERRIDES["sft.max_steps"]
    survived = mlflow.MlflowClient().get_metric_history(run_id, "train_loss")
    assert len(survived) >= len(steps)  # the kill left the curve up to the crash
    for name in ("learning_rate", "grad_norm", "tokens_per_s"):
        assert mlflow.MlflowClient().get_metric_history(run_id, name), name

    resumed = run_to_the_end(command, out, env)
    checkpoint_step = int(killed["checkpoint"].name.split("-")[1])
    assert checkpoint_step <= resumed["resumed_from_step"] < OVERRIDES["sft.max_steps"]
    assert resumed["steps"] == reference["steps"] == OVERRIDES["sft.max_steps"]
    assert math.isclose(resumed["final_loss"], reference["final_loss"], rel_tol=0, abs_tol=1e-5), (
        resumed["final_loss"], reference["final_loss"])
    expected = json.loads((tmp_path / "reference" / METRICS_FILE).read_text())["curves"]["train_loss"]
    for (step_a, loss_a), (step_b, loss_b) in zip(resumed["curves"]["train_loss"], expected, strict=True):
        assert step_a == step_b and abs(loss_a - loss_b) < 1e-5, (step_a, loss_a, loss_b)
    history = mlflow.MlflowClient().get_metric_history(run_id, "train_loss")
    assert max(p.step for p in history) == OVERRIDES["sft.max_steps"]
    assert not (out / "trainer").exists()  # checkpoints are dropped once the stage has finished


def test_checkpoints_of_other_settings_are_not_resumed(tiny_dataset, base_model_dir, tmp_path):
    from medfoundry.training.checkpoints import newest_checkpoint, prepare_resume

    folder = tmp_path / "ck"
    assert prepare_resume(folder, {"a": 1}) is None
    (folder / "checkpoint-3").mkdir()
    (folder / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (folder / "checkpoint-5").mkdir()  # killed while saving: no trainer_state.json
    assert newest_checkpoint(folder).name == "checkpoint-3"
    assert prepare_resume(folder, {"a": 1}).name == "checkpoint-3"
    assert prepare_resume(folder, {"a": 2}) is None and not (folder / "checkpoint-3").exists()
