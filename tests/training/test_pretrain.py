import json
import math

from training_data import max_param_change

from medfoundry.models.loading import load_model
from medfoundry.training.common import METRICS_FILE
from medfoundry.training.pretrain import pretrain_examples, run_pretrain


def test_pretrain_examples_cover_train_records_with_images(tiny_dataset, base_model_dir):
    loaded = load_model(base_model_dir)
    examples, empty = pretrain_examples(loaded, tiny_dataset)
    assert empty == 0
    assert len(examples) == 8  # 4 text/caption/report + 4 train QA; holdout records excluded
    assert sum(ex.image is not None for ex in examples) == 4
    assert all("held back" not in ex.completion for ex in examples)
    with_image = next(ex for ex in examples if ex.image is not None)
    assert with_image.prompt == "<|vision_start|><|image_pad|><|vision_end|>"
    assert with_image.completion.endswith(loaded.tokenizer.eos_token)


def test_pretrain_runs_real_steps_and_saves(tiny_profile, tiny_dataset, base_model_dir, tmp_path):
    out = tmp_path / "pretrained"
    metrics = run_pretrain(tiny_profile, tiny_dataset, base_model_dir, out)
    assert metrics["steps"] == tiny_profile.pretrain.max_steps
    assert math.isfinite(metrics["loss_first"]) and math.isfinite(metrics["final_loss"])
    assert metrics["train_tokens"] > 0 and metrics["tokens_per_s"] > 0
    assert metrics["examples_with_image"] == 4
    assert max_param_change(base_model_dir, out) > 0
    saved = json.loads((out / METRICS_FILE).read_text())
    assert saved["final_loss"] == metrics["final_loss"] and len(saved["curves"]["train_loss"]) == metrics["steps"]
    assert load_model(out).is_vision
    assert not (out / "trainer").exists()  # the Trainer's scratch folder is not shipped with the model


def test_pretrain_logs_to_the_active_mlflow_run(tiny_profile, tiny_dataset, base_model_dir, tmp_path):
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        profile = tiny_profile.model_copy(
            update={"pretrain": tiny_profile.pretrain.model_copy(update={"max_steps": 1})}
        )
        with mlflow.start_run() as run:
            run_pretrain(profile, tiny_dataset, base_model_dir, tmp_path / "m")
        client = mlflow.MlflowClient()
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 1
        assert "training_curves.png" in [a.path for a in client.list_artifacts(run.info.run_id)]
    finally:
        mlflow.set_tracking_uri(previous)
