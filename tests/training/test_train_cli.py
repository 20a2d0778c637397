import json

import typer
from typer.testing import CliRunner

from medfoundry.models.cli import register as register_model
from medfoundry.training.cli import register as register_train


def _app() -> typer.Typer:
    app = typer.Typer()
    register_model(app)
    register_train(app)
    return app


def test_model_build_train_and_generate_commands(tiny_dataset, tmp_path):
    runner = CliRunner()
    app = _app()
    built = runner.invoke(app, ["model", "build", "--data", str(tiny_dataset), "--out", str(tmp_path / "base")])
    assert built.exit_code == 0, built.output
    trained = runner.invoke(app, ["train", "sft", "--data", str(tiny_dataset), "--model", str(tmp_path / "base"),
                                  "--out", str(tmp_path / "sft"), "--set", "sft.max_steps=1"])
    assert trained.exit_code == 0, trained.output
    assert json.loads((tmp_path / "sft" / "train_metrics.json").read_text())["steps"] == 1
    generated = runner.invoke(app, ["model", "generate", str(tmp_path / "sft"), "--prompt", "Hi", "--max-new-tokens", "3"])
    assert generated.exit_code == 0, generated.output


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(_app(), ["model", "build", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "pass --data" in result.output
    result = runner.invoke(_app(), ["model", "generate", str(tmp_path / "missing"), "--prompt", "x"])
    assert result.exit_code == 2 and "no such model folder" in result.output
