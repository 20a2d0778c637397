"""On a GPU (the device machine): packed SFT in bf16 on cuda:LOCAL_RANK, with tokens/s and MFU streamed to MLflow.
Skipped with its reason on CPU machines (tests/conftest.py)."""

import math

import mlflow
import pytest


@pytest.mark.gpu
def test_packed_sft_on_gpu_streams_mfu(tiny_profile, tiny_dataset, base_model_dir, tmp_path):
    import torch

    from medfoundry.models.loading import load_model
    from medfoundry.training.sft import run_sft

    section = tiny_profile.sft.model_copy(update={"max_steps": 20, "packing": True, "checkpoint_every": 10})
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run:
        metrics = run_sft(tiny_profile.model_copy(update={"sft": section}), tiny_dataset, base_model_dir, tmp_path / "m")
    assert metrics["steps"] == 20 and math.isfinite(metrics["final_loss"])
    assert metrics["final_loss"] < metrics["loss_first"]
    client = mlflow.MlflowClient()
    mfu = client.get_metric_history(run.info.run_id, "mfu")
    if "H100" in torch.cuda.get_device_name() or "H200" in torch.cuda.get_device_name():
        assert mfu and all(0 < p.value < 1 for p in mfu)
    assert load_model(tmp_path / "m").model.device.type == "cuda"
