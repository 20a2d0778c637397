"""`medfoundry entities build | link | coverage | synthesize` (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

entities_app = typer.Typer(
    name="entities",
    help="Medical Entity Tree: build it from real ontologies, link texts, measure coverage, synthesize.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(entities_app, name="entities")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


def _fail(message: str, code: int = 2) -> typer.Exit:
    _console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _load_tree(folder: Path):
    from medfoundry.entities.tree import EntityTree

    try:
        return EntityTree.load(folder)
    except FileNotFoundError as err:
        raise _fail(str(err)) from None


@entities_app.command("build")
def build_command(
    out: Path = typer.Option(..., "--out", help="Folder for tree.parquet and meta.json."),
    ontology_dir: Path = typer.Option(
        None,
        "--ontology-dir",
        help="Disease Ontology folder (HumanDO.tsv, DO_rare_slim.obo, ...) to merge in.",
    ),
    max_nodes_per_source: int = typer.Option(
        None, "--max-nodes-per-source", min=1, help="Cap each source (the tiny profile uses 3000)."
    ),
) -> None:
    """Build the tree from ICD-10-CM, HPO (+ OMIM/Orphanet annotations), drugs/MeSH [+ Disease Ontology]."""
    from rich.table import Table

    from medfoundry.entities.tree import build_tree

    if ontology_dir is not None and not (ontology_dir / "HumanDO.tsv").exists():
        raise _fail(f"--ontology-dir {ontology_dir} has no HumanDO.tsv")
    console = _console()
    with console.status("building the entity tree") as status:
        tree = build_tree(ontology_dir, max_nodes_per_source, progress=lambda m: status.update(m))
    tree.save(out)
    counts = tree.meta["counts"]
    table = Table(title=f"MET {out} ({tree.meta['build_seconds']} s)")
    for column in ("kind", "nodes", "rare", "synonyms", "surface forms"):
        table.add_column(column, justify="right" if column != "kind" else "left")
    for kind, row in sorted(counts["by_kind"].items()):
        table.add_row(
            kind, str(row["nodes"]), str(row["rare"]), str(row["synonyms"]), str(row["surface_forms"])
        )
    table.add_row(
        "total",
        str(counts["linkable_nodes"]),
        str(counts["rare"]),
        str(counts["synonyms"]),
        str(counts["surface_forms"]),
    )
    console.print(table)
    console.print(f"merged through cross-references: {json.dumps(tree.meta['merges'])}")


@entities_app.command("link")
def link_command(
    tree_dir: Path = typer.Option(..., "--tree", help="Tree folder (from `entities build`)."),
    input_path: Path = typer.Option(..., "--input", help='JSONL, one {"id": ..., "text": ...} per line.'),
    output: Path = typer.Option(..., "--output", help='JSONL: each input line plus "entities".'),
    batch_chars: int = typer.Option(
        2_000_000, "--batch-chars", min=1000, help="Characters matched per batch."
    ),
) -> None:
    """Link every line's text; unreadable lines go to OUTPUT.rejected.jsonl with the reason."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from medfoundry.entities.linker import Linker

    if not input_path.exists():
        raise _fail(f"--input {input_path} does not exist")
    tree = _load_tree(tree_dir)
    console = _console()
    with console.status("building the linker"):
        linker = Linker.from_tree(tree)
    rejected_path = output.with_name(output.stem + ".rejected.jsonl")
    output.parent.mkdir(parents=True, exist_ok=True)
    total = input_path.stat().st_size
    read = written = rejected = mentions = 0
    with (
        input_path.open(encoding="utf-8") as source,
        output.open("w", encoding="utf-8") as sink,
        rejected_path.open("w", encoding="utf-8") as rejects,
        Progress(
            TextColumn("linking"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("link", total=total)
        batch: list[dict] = []
        size = 0

        def flush() -> None:
            nonlocal written, mentions, size
            found = linker.link_batch([row["text"] for row in batch], batch_chars)
            for row, row_mentions in zip(batch, found, strict=True):
                row["entities"] = [m.model_dump(mode="json") for m in row_mentions]
                mentions += len(row_mentions)
                sink.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += len(batch)
            batch.clear()
            size = 0

        for line_number, line in enumerate(source, start=1):
            progress.advance(task, len(line.encode("utf-8")))
            if not line.strip():
                continue
            read += 1
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise ValueError('expected an object with a string "text"')
            except ValueError as err:
                rejected += 1
                rejects.write(
                    json.dumps({"line": line_number, "reason": str(err)[:300], "raw": line[:2000]}) + "\n"
                )
                continue
            batch.append(row)
            size += len(row["text"])
            if size >= batch_chars:
                flush()
        if batch:
            flush()
    if not rejected:
        rejected_path.unlink()
    console.print(
        f"{read} lines: {written} linked ({mentions} mentions) -> {output}"
        + (f", {rejected} rejected -> {rejected_path}" if rejected else "")
    )


@entities_app.command("coverage")
def coverage_command(
    tree_dir: Path = typer.Option(..., "--tree", help="Tree folder."),
    input_path: Path = typer.Option(
        ..., "--input", help="Linked JSONL (from `entities link`) or a dataset folder."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for coverage.json, node_counts.parquet and plots."),
    reference: Path = typer.Option(
        None,
        "--reference",
        help="Reference entity ids (one per line, or linked JSONL) for forward/backward coverage.",
    ),
    sparse_threshold: int = typer.Option(2, "--sparse-threshold", min=0),
) -> None:
    """Coverage by kind, depth and rarity; sparse and uncovered nodes; long-tail and coverage plots."""
    from medfoundry.data.records import RECORDS, read_jsonl
    from medfoundry.entities.coverage import compute_coverage

    tree = _load_tree(tree_dir)
    path = input_path / RECORDS if input_path.is_dir() else input_path
    if not path.exists():
        raise _fail(f"--input {input_path}: {path} does not exist")
    rows = [row.get("entities", []) for row in read_jsonl(path)]
    reference_ids = None
    if reference is not None:
        if reference.suffix == ".jsonl":
            reference_ids = {m["id"] for row in read_jsonl(reference) for m in row.get("entities", [])}
        else:
            reference_ids = {line.strip() for line in reference.read_text().splitlines() if line.strip()}
    report = compute_coverage(tree, rows, reference_ids, sparse_threshold, plots_dir=out / "plots")
    report.save(out)
    console = _console()
    console.print_json(json.dumps(report.summary))
    console.print(f"wrote {out / 'coverage.json'}, {out / 'node_counts.parquet'}, plots in {out / 'plots'}")


@entities_app.command("synthesize")
def synthesize_command(
    tree_dir: Path = typer.Option(..., "--tree", help="Tree folder."),
    out: Path = typer.Option(..., "--out", help="Dataset folder to write (records.jsonl + manifest.json)."),
    coverage: Path = typer.Option(
        None, "--coverage", help="Folder with node_counts.parquet (default: all sparse)."
    ),
    max_entities: int = typer.Option(200, "--max-entities", min=1),
    sparse_threshold: int = typer.Option(2, "--sparse-threshold", min=0),
    seed: int = typer.Option(0, "--seed"),
    rewriter_endpoint: str = typer.Option(None, "--rewriter-endpoint", help="OpenAI-compatible base URL."),
    rewriter_model: str = typer.Option(None, "--rewriter-model"),
) -> None:
    """Grounded text and QA records for sparse/uncovered entities, with provenance."""
    import pandas as pd

    from medfoundry.data.records import RECORDS, write_jsonl, write_manifest
    from medfoundry.entities.synthesis import rewriter_from_config, summarize, synthesize_for_sparse

    tree = _load_tree(tree_dir)
    counts: dict[str, int] = {}
    if coverage is not None:
        frame = pd.read_parquet(coverage / "node_counts.parquet", columns=["id", "count"])
        counts = dict(zip(frame["id"], frame["count"].astype(int), strict=True))
    records = synthesize_for_sparse(
        tree,
        counts,
        max_entities,
        sparse_threshold,
        seed,
        rewriter_from_config(rewriter_endpoint, rewriter_model),
    )
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / RECORDS, records)
    summary = summarize(records)
    write_manifest(
        out,
        counts={"input": len(records), "kept": len(records), "removed": 0, "quarantined": 0},
        provenance={"generator": "medfoundry entities synthesize", "tree": str(tree_dir)},
        **summary,
    )
    _console().print(f"{summary} -> {out}")
