"""The `medfoundry` command. Heavy libraries are imported inside commands so that `--help` and profile errors are
instant."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from medfoundry import __version__

app = typer.Typer(
    name="medfoundry",
    help="medfoundry: the MedXIAOHE medical MLLM recipe as Kubeflow pipelines, from corpora to a served model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

# Areas that add their own commands: each module has `register(app)`.
AREA_CLIS = [
    "medfoundry.entities.cli",
    "medfoundry.models.cli",
    "medfoundry.training.cli",
    "medfoundry.curation.cli",
    "medfoundry.evaluation.cli",
    "medfoundry.release.cli",
    "medfoundry.serving.cli",
    "medfoundry.cluster.cli",
    "medfoundry.console.cli",
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_profile_or_exit(profile: str, overrides: list[str] | None = None):
    from medfoundry.config import ProfileError
    from medfoundry.services.runs import parse_overrides, resolve_profile

    try:
        return resolve_profile(profile, parse_overrides(overrides or []))
    except ProfileError as err:
        raise _fail(str(err)) from None


@app.callback(invoke_without_command=True)
def main(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        console.print(f"medfoundry {__version__}")
        raise typer.Exit()


@app.command()
def run(
    pipeline: str = typer.Argument(
        "medical-mllm-recipe", help="Pipeline name (see `medfoundry pipelines list`)."
    ),
    profile: str = typer.Option(
        "tiny", "--profile", "-p", help="Profile name (tiny, small, production-7b) or YAML."
    ),
    set_: list[str] = typer.Option(
        None, "--set", help="Override a profile field, e.g. --set sft.max_steps=2."
    ),
    run_id: str = typer.Option(None, "--run-id", hidden=True, help="Continue a run record the console created."),
) -> None:
    """Run a pipeline on this machine through kfp.local (every stage for real, tracked in MLflow)."""
    from medfoundry.pipeline.compiler import PIPELINES

    if pipeline not in PIPELINES:
        raise _fail(f"unknown pipeline {pipeline!r}: available {', '.join(sorted(PIPELINES))}")
    resolved = load_profile_or_exit(profile, set_)
    if resolved.cluster.mode != "local":
        raise _fail(
            f"profile {resolved.name!r} targets a cluster (cluster.mode={resolved.cluster.mode}): use "
            "`medfoundry submit` to run it on Kubeflow Pipelines"
        )
    from medfoundry.pipeline.local import run_pipeline_locally

    console.rule(f"[bold]{pipeline}[/] · profile [cyan]{resolved.name}[/]")
    with console.status("running stages through kfp.local (logs stream below)"):
        result = run_pipeline_locally(pipeline, resolved, run_id)
    _print_run(result)
    if result.status != "SUCCEEDED":
        raise typer.Exit(1)


def _print_run(result) -> None:
    from medfoundry.pipeline.compiler import pipeline_module
    from medfoundry.pipeline.local import stage_statuses

    stages = pipeline_module(result.pipeline).STAGES
    colour = "green" if result.status == "SUCCEEDED" else "red"
    console.print(f"[bold]{result.pipeline}[/] run [bold]{result.run_id}[/]: [{colour}]{result.status}[/]")
    table = Table(title_justify="left")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("duration", justify="right")
    table.add_column("key figure")
    total = 0.0
    for row in stage_statuses(result, stages):
        colour = {"FINISHED": "green", "FAILED": "red"}.get(row.status, "yellow")
        total += row.duration_s or 0.0
        duration = f"{row.duration_s:.1f}s" if row.duration_s is not None else "-"
        table.add_row(row.stage, f"[{colour}]{row.status}[/]", duration, row.key_figure)
    console.print(table)
    if result.finished:
        console.print(f"wall time {result.finished - result.started:.0f}s (stage work {total:.0f}s)")
    if result.gate:
        console.print(f"promotion gate: [bold]{result.gate}[/]")
    console.print(f"MLflow parent run: {result.parent_run_id or '-'}  (store: {result.tracking_uri})", soft_wrap=True)
    if result.model_version:
        aliases = ", ".join(result.model_aliases) or "no alias"
        console.print(
            f"registered model: [bold]{result.model_name}[/] version {result.model_version} ({aliases})"
        )
    if result.tracking_uri.startswith("sqlite"):
        console.print(
            f"open the UI: .venv/bin/mlflow ui --backend-store-uri {result.tracking_uri} --host 127.0.0.1", soft_wrap=True
        )
    if result.error:
        err_console.print(f"[red]{result.error}[/]", soft_wrap=True)


@app.command()
def runs(limit: int = typer.Option(10, help="How many recent runs to show.")) -> None:
    """Local pipeline runs with their per-stage status."""
    from medfoundry.pipeline.local import list_runs
    from medfoundry.workspace import Workspace

    found = list_runs(Workspace.resolve())
    if not found:
        console.print("no local runs yet: try `make demo`")
        return
    for result in found[:limit]:
        _print_run(result)


@app.command("compile")
def compile_(
    out: Path = typer.Option(Path("build/pipelines"), "--out", help="Folder for the IR YAML files."),
    pipeline: str = typer.Option(None, help="Compile only this pipeline."),
    profile: str = typer.Option(
        None, "--profile", "-p", help="Shape Kubernetes settings (GPUs, node selectors, Secrets) from this profile."
    ),
) -> None:
    """Compile every pipeline (or one) to KFP v2 IR YAML that a Kubeflow Pipelines cluster can run."""
    from medfoundry.pipeline.compiler import UnknownPipeline, compile_all, compile_pipeline

    settings = load_profile_or_exit(profile) if profile else None
    try:
        paths = [compile_pipeline(pipeline, out, settings)] if pipeline else compile_all(out, settings)
    except UnknownPipeline as err:
        raise _fail(str(err)) from None
    for path in paths:
        console.print(f"compiled [bold]{path}[/]")


@app.command()
def submit(
    pipeline: str = typer.Argument("medical-mllm-recipe"),
    host: str = typer.Option(
        ..., "--host", help="Kubeflow Pipelines API endpoint, e.g. http://localhost:8080."
    ),
    profile: str = typer.Option("production-7b", "--profile", "-p"),
    experiment: str = typer.Option("medfoundry", help="KFP experiment name."),
    namespace: str = typer.Option(None, help="Kubeflow namespace (multi-user installs)."),
    set_: list[str] = typer.Option(None, "--set"),
) -> None:
    """Upload the pipeline compiled for the profile (version <package version>-<git sha7>-<profile hash8>) and start a
    run of that version on a KFP cluster."""
    resolved = load_profile_or_exit(profile, set_)
    from medfoundry.cluster.pipelines import submit_pipeline

    result = submit_pipeline(pipeline, resolved, host=host, experiment=experiment, namespace=namespace)
    console.print(f"pipeline version [bold]{result.version_name}[/]; run [bold]{result.run_id}[/]")
    if getattr(result, "url", ""):
        console.print(result.url)


@app.command()
def profiles(show: str = typer.Argument(None, help="Print one profile resolved with defaults.")) -> None:
    """List the built-in profiles, or print one fully resolved."""
    from medfoundry.config.profile import PROFILES_DIR, available_profiles

    if show:
        console.print(load_profile_or_exit(show).to_yaml(), highlight=False)
        return
    import yaml

    for name in available_profiles():
        description = yaml.safe_load((PROFILES_DIR / f"{name}.yaml").read_text()).get("description", "")
        console.print(f"[bold]{name}[/]  {description}")


def _register_areas() -> None:
    for module_name in AREA_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and (err.name == module_name or module_name.startswith(err.name + ".")):
                continue  # that area is not part of this build
            raise
        module.register(app)


_register_areas()


def entrypoint() -> None:
    app()


if __name__ == "__main__":
    sys.exit(app())
