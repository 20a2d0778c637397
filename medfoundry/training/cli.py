"""`medfoundry train pretrain|sft|grpo`: one training stage on a dataset folder (heavy imports inside commands)."""

from __future__ import annotations

import json

import typer

train_app = typer.Typer(help="Run one training stage (continual pretraining, SFT, GRPO) outside a pipeline.",
                        no_args_is_help=True)

PROFILE = typer.Option("tiny", "--profile", "-p", help="Profile name (tiny, small, production-7b) or YAML.")
SET = typer.Option(None, "--set", help="Override a profile field, e.g. --set sft.max_steps=2.")
DATA = typer.Option(..., "--data", help="Dataset folder (records.jsonl + images/) or s3:// prefix.")
MODEL = typer.Option(..., "--model", help="Model to start from: folder, s3://, hf id, smollm2.")
OUT = typer.Option(..., "--out", help="Folder (or s3:// prefix) for the trained model and train_metrics.json.")
RUN_ID = typer.Option(None, "--mlflow-run-id", envvar="MLFLOW_RUN_ID",
                      help="MLflow run to stream the curves to while training (the stage's nested run).")


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")


def _run(stage: str, profile: str, overrides: list[str] | None, data: str, model: str, out: str,
         run_id: str | None = None) -> None:
    from rich.console import Console

    from medfoundry.cli import load_profile_or_exit
    from medfoundry.cluster.trainjob import pod_paths, trainjob_tracking_run

    console = Console()
    # s3:// arguments: a TrainJob whose inputs were staged through the object store (medfoundry.cluster.trainjob).
    with pod_paths(data, model, out, profile) as paths, trainjob_tracking_run(), console.status(f"{stage}: training..."):
        resolved = load_profile_or_exit(paths.profile, overrides)
        if stage == "pretrain":
            from medfoundry.training.pretrain import run_pretrain as fn
        elif stage == "sft":
            from medfoundry.training.sft import run_sft as fn
        else:
            from medfoundry.training.grpo import run_grpo as fn
        from medfoundry import tracking
        from medfoundry.training.live import attach_run

        if run_id:
            import mlflow

            mlflow.set_tracking_uri(tracking.resolve_tracking_uri(resolved))
        try:
            with attach_run(run_id):
                metrics = fn(resolved, paths.data, paths.model, paths.out)
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    console.print_json(json.dumps(metrics, default=str))
    console.print(f"saved to {out}")


@train_app.command("pretrain")
def pretrain_command(data: str = DATA, model: str = MODEL, out: str = OUT, profile: str = PROFILE,
                     set_: list[str] = SET, run_id: str = RUN_ID) -> None:
    """Continual pretraining on the dataset's texts and images."""
    _run("pretrain", profile, set_, data, model, out, run_id)


@train_app.command("sft")
def sft_command(data: str = DATA, model: str = MODEL, out: str = OUT, profile: str = PROFILE,
                set_: list[str] = SET, run_id: str = RUN_ID) -> None:
    """SFT with <think>/<answer> targets on the dataset's training QA records."""
    _run("sft", profile, set_, data, model, out, run_id)


@train_app.command("grpo")
def grpo_command(data: str = DATA, model: str = MODEL, out: str = OUT, profile: str = PROFILE,
                 set_: list[str] = SET, run_id: str = RUN_ID) -> None:
    """GRPO on the RL half of the held-back QA records with the profile's reward mixture."""
    _run("grpo", profile, set_, data, model, out, run_id)
