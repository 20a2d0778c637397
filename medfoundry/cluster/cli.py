"""`medfoundry pipelines ...`: list the pipelines and upload compiled ones to a Kubeflow Pipelines cluster."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    pipelines = typer.Typer(help="Pipelines on a Kubeflow Pipelines cluster: list, upload.", no_args_is_help=True)

    @pipelines.command("list")
    def list_() -> None:
        """The pipelines this package can compile."""
        from medfoundry.pipeline.compiler import PIPELINES

        for name in sorted(PIPELINES):
            console.print(name)

    @pipelines.command()
    def upload(
        package: Path = typer.Argument(
            None, help="Compiled pipeline IR YAML; omitted: compile --pipeline now.", exists=True, dir_okay=False
        ),
        pipeline: str = typer.Option("medical-mllm-recipe", "--pipeline", help="Pipeline name on the cluster."),
        host: str = typer.Option(
            None, "--host", envvar="KF_PIPELINES_ENDPOINT", help="Kubeflow Pipelines API, e.g. http://localhost:8080."
        ),
        version: str = typer.Option(None, "--version", help="Version name; default <package version>-<git sha7>."),
        description: str = typer.Option(None, "--description"),
    ) -> None:
        """Upload a pipeline version: creates the pipeline on first upload, adds a version after that."""
        import tempfile

        from medfoundry.cluster.pipelines import compile_to, upload_pipeline

        with tempfile.TemporaryDirectory(prefix="medfoundry-compile-") as tmp:
            if package is None:
                try:
                    package = compile_to(pipeline, tmp)
                except KeyError as err:
                    err_console.print(f"[bold red]error:[/] {err}")
                    raise typer.Exit(2) from None
                console.print(f"compiled [bold]{package.name}[/]")
            try:
                result = upload_pipeline(
                    package, pipeline, host=host, version_name=version, description=description
                )
            except Exception as err:  # noqa: BLE001 - any API or connection error ends the command with its text
                err_console.print(f"[bold red]error:[/] upload to {host or 'the in-cluster KFP API'} failed: {err}")
                raise typer.Exit(1) from None
        what = "created pipeline and version" if result.created_pipeline else (
            "added version" if result.created_version else "version already present"
        )
        console.print(
            f"{what}: [bold]{result.pipeline_name}[/] {result.version_name} "
            f"(pipeline {result.pipeline_id}, version {result.version_id})"
        )

    app.add_typer(pipelines, name="pipelines")
