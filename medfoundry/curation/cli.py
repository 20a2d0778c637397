"""`medfoundry curate` and `medfoundry validate-data` (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("curate")(curate_command)
    app.command("validate-data")(validate_command)


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def curate_command(
    profile: str = typer.Option(
        "tiny", "--profile", "-p", help="Profile name (tiny, small, production-7b) or YAML path."
    ),
    inputs: list[str] = typer.Option(
        ..., "--input", "-i", help="Dataset folder, corpus file/folder or s3:// URI (repeatable)."
    ),
    out: str = typer.Option(..., "--out", "-o", help="Output dataset: a folder or s3://bucket/prefix."),
    eval_sets: list[Path] = typer.Option(
        [], "--eval-set", help="Evaluation data to decontaminate against: benchmark file/folder (repeatable)."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="Profile override KEY=VALUE, e.g. curation.feast=false."
    ),
) -> None:
    """Curate corpora into a versioned dataset: clean, decontaminate, link entities, rebalance, validate."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from medfoundry.cli import load_profile_or_exit

    console = Console()
    prof = load_profile_or_exit(profile, overrides)
    for path in eval_sets:
        if not path.exists():
            raise _fail(f"--eval-set {path}: no such file or folder")
    remote = out.startswith("s3://")
    with tempfile.TemporaryDirectory(prefix="medfoundry-curate-") as tmp:
        out_dir = Path(tmp) / "dataset" if remote else Path(out)
        from medfoundry.curation.curate import curate

        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as bar:
            task = bar.add_task("curating", total=None)
            try:
                figures = curate(
                    prof,
                    list(inputs),
                    out_dir,
                    eval_sets=list(eval_sets),
                    progress=lambda message: bar.update(task, description=message),
                )
            except FileNotFoundError as err:
                raise _fail(str(err)) from None
        location = str(out_dir)
        if remote:
            from medfoundry.storage import open_storage

            store = open_storage(out, endpoint_url=prof.storage.endpoint_url, region=prof.storage.region)
            store.put_dir(out_dir, "")
            location = out
    table = Table(title=f"curated dataset: {location}", show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("input", "kept", "removed", "quarantined", "synthesized", "phi_spans", "entities_linked"):
        if key in figures:
            table.add_row(key, f"{figures[key]:,}" if isinstance(figures[key], int) else str(figures[key]))
    for key, value in figures.items():
        if key.startswith(("removed/", "quarantined/", "coverage/")):
            table.add_row(key, str(value))
    console.print(table)


def validate_command(
    dataset: Path = typer.Option(..., "--dataset", "-d", help="Dataset folder (records.jsonl, images/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for the validated dataset."),
    stage: str = typer.Option(
        "ingest", "--stage", help="ingest | curate (curate adds weight, quality, PHI checks)."
    ),
) -> None:
    """Run the Great Expectations suites over a dataset; failing records go to quarantine with the reason."""
    from rich.console import Console

    from medfoundry.data.validation import STAGES, validate_dataset

    if stage not in STAGES:
        raise _fail(f"--stage {stage!r}: use one of {', '.join(STAGES)}")
    if not (dataset / "records.jsonl").exists():
        raise _fail(f"{dataset}: no records.jsonl (not a dataset folder)")
    figures = validate_dataset(dataset, out, stage=stage)
    console = Console()
    verdict = "[green]passed[/]" if figures["gx_success"] else "[yellow]records quarantined[/]"
    console.print(
        f"{verdict}: {figures['kept']:,} kept, {figures['quarantined']:,} quarantined of {figures['input']:,} "
        f"({figures['gx_successful_expectations']}/{figures['gx_evaluated_expectations']} expectations met) -> {out}"
    )
