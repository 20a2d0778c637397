"""`medfoundry pipelines ...`: list the pipelines and upload compiled ones to a Kubeflow Pipelines cluster."""

from __future__ import annotations

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
        pipeline: str = typer.Option("medical-mllm-recipe", "--pipeline", help="Pipeline name on the cluster."),
        profile: str = typer.Option("production-7b", "--profile", "-p", help="Profile the pipeline is compiled for."),
        set_: list[str] = typer.Option(None, "--set", help="Profile overrides, key=value."),
        host: str = typer.Option(
            None, "--host", envvar="KF_PIPELINES_ENDPOINT", help="Kubeflow Pipelines API, e.g. http://localhost:8080."
        ),
        description: str = typer.Option(None, "--description"),
    ) -> None:
        """Compile the pipeline for a profile and upload it as version <package version>-<git sha7>-<profile hash8>
        (the version `medfoundry submit` with the same profile runs)."""
        from medfoundry.cli import load_profile_or_exit
        from medfoundry.cluster.pipelines import publish_pipeline

        resolved = load_profile_or_exit(profile, set_)
        try:
            result = publish_pipeline(pipeline, resolved, host=host, description=description)
        except KeyError as err:
            err_console.print(f"[bold red]error:[/] {err}")
            raise typer.Exit(2) from None
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
