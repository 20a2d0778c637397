"""`medfoundry eval` and `medfoundry eval-compare` (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("eval-compare")(compare_command)


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def eval_command(
    benchmark: str = typer.Option(..., "--benchmark", "-b", help="Benchmark name(s), comma separated, or 'all'."),
    data: Path = typer.Option(..., "--data", help="Folder with all benchmark subfolders, or one benchmark's folder/file."),
    out: Path = typer.Option(..., "--out", help="Output folder (results.json per benchmark, report.html)."),
    endpoint: str = typer.Option(None, "--endpoint", help="OpenAI-compatible API base URL, e.g. http://host:8080/v1."),
    model_name: str = typer.Option(None, "--model-name", help="Model name sent to the endpoint."),
    api_key: str = typer.Option(None, "--api-key", envvar="MEDFOUNDRY_EVAL_API_KEY", help="Bearer token for the endpoint."),
    model: str = typer.Option(None, "--model", help="In-process model: folder, s3://, models:/NAME@alias, hf id, smollm2."),
    limit: int = typer.Option(None, "--limit", min=1, help="Evaluate the first N items of each benchmark."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="Parallel requests to the endpoint."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="In-process batch size (profile eval.batch_size)."),
    max_new_tokens: int = typer.Option(
        None, "--max-new-tokens", min=1, help="Tokens to generate (default: the profile's eval.max_new_tokens, else 64)."
    ),
    prompt_mode: str = typer.Option(None, "--prompt-mode", help="plain | reasoning (default: the profile's, else plain)."),
    protocol: str = typer.Option(
        None, "--protocol",
        help="generative (our prompts, extraction) | loglikelihood (options scored as lm-evaluation-harness 0.4.13 does; "
        "needs --model). Default: the profile's eval.protocol, else generative.",
    ),
    split: str = typer.Option(
        None, "--split", help="train | dev | test: which files of a benchmark folder (a folder with several splits needs it)."
    ),
    cop_base: int = typer.Option(None, "--cop-base", help="MedMCQA cop convention when a file cannot tell: 0 or 1."),
    judge_endpoint: str = typer.Option(
        None, "--judge-endpoint", help="OpenAI-compatible API base of an LLM judge for open answers (optional)."
    ),
    judge_model: str = typer.Option(None, "--judge-model", help="Model name sent to the judge endpoint."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds per endpoint request."),
    retries: int = typer.Option(3, "--retries", min=0, help="Retries per request on errors, 429 and 5xx."),
    seed: int = typer.Option(0, "--seed"),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=10, help="Bootstrap resamples for the 95% intervals."),
    corpus: Path = typer.Option(
        None, "--decontam-corpus", help="Training corpus to check n-gram overlap against (dataset folder or JSONL/text)."
    ),
    exclude_contaminated: bool = typer.Option(False, "--exclude-contaminated", help="Drop contaminated items from scores."),
    ngram: int = typer.Option(13, "--ngram", min=3, help="n for the decontamination n-gram overlap."),
    mlflow_flag: bool = typer.Option(
        None, "--mlflow/--no-mlflow", help="Log to MLflow in a new run (default: on when MLFLOW_TRACKING_URI is set)."
    ),
    experiment: str = typer.Option("medfoundry-eval", "--experiment", help="MLflow experiment for --mlflow."),
    entity_tree: str = typer.Option(
        "auto", "--entity-tree", help="Entity tree for rarity tiers: auto (workspace cache), a tree folder, or none."
    ),
    profile: str = typer.Option(None, "--profile", "-p", help="Profile for defaults (eval, model dtype, storage)."),
) -> None:
    """Score a model (endpoint or in-process) on medical benchmarks; writes results, predictions and report.html."""
    import logging

    from rich.console import Console

    from medfoundry.evaluation import benchmarks as registry

    console = Console()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    names = registry.public_benchmarks() if benchmark.strip() == "all" else [b.strip() for b in benchmark.split(",") if b.strip()]
    unknown = [n for n in names if n not in registry.BENCHMARKS]
    if unknown:
        raise _fail(f"unknown benchmark {', '.join(unknown)}: use {', '.join(sorted(registry.BENCHMARKS))}")
    if (endpoint is None) == (model is None):
        raise _fail("give exactly one of --endpoint URL (with --model-name) or --model URI_OR_PATH")
    if endpoint is not None and not model_name:
        raise _fail("--endpoint needs --model-name")
    if not data.exists():
        raise _fail(f"--data {data}: no such file or folder")

    resolved = None
    if profile is not None:
        from medfoundry.config import ProfileError, load_profile

        try:
            resolved = load_profile(profile)
        except ProfileError as err:
            raise _fail(str(err)) from None
    eval_cfg = resolved.eval if resolved else None
    # Flags win over the profile; the profile wins over the built-in defaults.
    max_new_tokens = max_new_tokens or (eval_cfg.max_new_tokens if eval_cfg else 64)
    prompt_mode = prompt_mode or (eval_cfg.prompt_mode if eval_cfg else "plain")
    # --protocol applies to every benchmark; without it the profile's protocol and its per-benchmark overrides do.
    protocols = {} if protocol or not eval_cfg else dict(eval_cfg.protocols)
    protocol = protocol or (eval_cfg.protocol if eval_cfg else "generative")
    batch_size = batch_size or (eval_cfg.batch_size if eval_cfg else 8)
    if prompt_mode not in ("plain", "reasoning"):
        raise _fail("--prompt-mode must be plain or reasoning")
    if protocol not in ("generative", "loglikelihood"):
        raise _fail("--protocol must be generative or loglikelihood")
    if protocol == "loglikelihood" and endpoint is not None:
        raise _fail("--protocol loglikelihood scores options with the model's log-probabilities: use --model")
    if split is not None and split not in ("train", "dev", "test"):
        raise _fail("--split must be train, dev or test")
    if (judge_endpoint is None) != (judge_model is None):
        raise _fail("--judge-endpoint and --judge-model go together")

    from medfoundry.evaluation.backends import HFBackend, OpenAIBackend
    from medfoundry.evaluation.report import log_mlflow
    from medfoundry.evaluation.runner import EvalSettings, build_annotator, evaluate

    use_mlflow = mlflow_flag if mlflow_flag is not None else bool(os.environ.get("MLFLOW_TRACKING_URI"))
    if use_mlflow or (model or "").startswith(("models:/", "runs:/")):
        _configure_mlflow(experiment if use_mlflow else None, resolved)
    if endpoint is not None:
        backend = OpenAIBackend(
            endpoint, model_name, api_key, concurrency=concurrency, timeout_s=timeout, retries=retries,
            max_tokens=max_new_tokens, seed=seed,
        )
        lineage_corpus = None
    else:
        from medfoundry.evaluation.lineage import resolve_model

        with console.status(f"loading {model}"):
            try:
                model_dir, lineage_corpus = resolve_model(model, resolved)
                backend = HFBackend.from_uri(
                    model_dir, resolved.model if resolved else None, max_new_tokens=max_new_tokens,
                    batch_size=batch_size, seed=seed,
                )
            except Exception as err:  # noqa: BLE001 - any load failure is a one-line error for the user
                raise _fail(f"cannot load model {model!r}: {err}") from None
    curation = resolved.curation if resolved else None
    with console.status("loading the entity linker"):
        annotator = build_annotator(
            corpus or lineage_corpus, n=ngram, tree=entity_tree,
            ontology_dir=curation.ontology_dir if curation else None,
            max_nodes_per_source=curation.max_nodes_per_source if curation else None,
            workspace=resolved.workspace if resolved else "",
        )
    settings = EvalSettings(
        limit=limit, prompt_mode=prompt_mode, bootstrap_samples=bootstrap, seed=seed,  # type: ignore[arg-type]
        exclude_contaminated=exclude_contaminated, protocol=protocol, protocols=protocols, split=split,
        cop_base=cop_base,
    )
    judge = None
    if judge_endpoint is not None:
        from medfoundry.evaluation.judge import OpenAIJudge

        judge = OpenAIJudge(judge_endpoint, judge_model, api_key, timeout_s=timeout, retries=retries)
    from medfoundry.evaluation.benchmarks import BenchmarkDataError

    run_ctx = _mlflow_run(use_mlflow, names)
    with run_ctx:
        try:
            summary = evaluate(
                names, data, backend, out, settings, annotator=annotator, show_progress=True, judge=judge
            )
        except BenchmarkDataError as err:
            raise _fail(str(err)) from None
        if use_mlflow:
            log_mlflow(summary, out)
    _print_summary(console, summary, out)
    if not summary["benchmarks"]:
        raise typer.Exit(1)


def compare_command(
    base: Path = typer.Argument(..., help="Evaluation folder of the base (e.g. champion) model."),
    candidate: Path = typer.Argument(..., help="Evaluation folder of the candidate model."),
    out: Path = typer.Option(..., "--out", help="Folder for comparison.json and comparison.html."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=10),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Per-benchmark score deltas (candidate − base) with paired 95% bootstrap intervals."""
    from rich.console import Console
    from rich.table import Table

    from medfoundry.evaluation.compare import compare_runs

    for folder in (base, candidate):
        if not folder.is_dir():
            raise _fail(f"{folder}: not an evaluation folder")
    result = compare_runs(base, candidate, bootstrap, seed, out)
    table = Table("benchmark", "base", "candidate", "delta", "95% CI", "n")
    for name, c in result["benchmarks"].items():
        if c["delta"] is None:
            table.add_row(name, "–", "–", "–", "–", "0")
            continue
        table.add_row(
            name, f"{c['base']:.4f}", f"{c['candidate']:.4f}", f"{c['delta']:+.4f}",
            f"[{c['delta_ci95'][0]:+.4f}, {c['delta_ci95'][1]:+.4f}]", str(c["n_paired"]),
        )
    Console().print(table)
    Console().print(f"wrote {out / 'comparison.html'}")


def _configure_mlflow(experiment: str | None, profile) -> None:
    """Tracking/registry URI: MLFLOW_TRACKING_URI, else the profile's, else the workspace's sqlite store."""
    import mlflow

    from medfoundry.workspace import Workspace

    uri = os.environ.get("MLFLOW_TRACKING_URI") or (profile.tracking.uri if profile else "") or Workspace.resolve(
        profile.workspace if profile else ""
    ).tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if experiment:
        mlflow.set_experiment(experiment)


def _mlflow_run(enabled: bool, names: list[str]):
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    import mlflow

    return mlflow.start_run(run_name=f"eval-{'-'.join(names)}"[:200])


def _print_summary(console, summary: dict, out: Path) -> None:
    from rich.table import Table

    table = Table("benchmark", "metric", "score", "95% CI", "n", "unparseable", "skipped rows")
    for name, r in summary["benchmarks"].items():
        score = "–" if r["score"] is None else f"{r['score']:.4f}"
        ci = "–" if r["ci95"][0] is None else f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]"
        table.add_row(name, r["metric"], score, ci, str(r["n"]), str(r["n_unparseable"]), str(r["n_skipped"]))
    console.print(table)
    for name, reason in summary["missing"].items():
        console.print(f"[yellow]skipped {name}:[/] {reason}", highlight=False)
    console.print(f"wrote {out / 'report.html'}")
