"""The recipe pipeline's evaluate stage: the held-out split of the curated dataset plus the profile's benchmarks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medfoundry.config import Profile

log = logging.getLogger(__name__)


def evaluate_model(profile: Profile, model_dir: Path, dataset_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Evaluate the model in `model_dir` on the held-out QA records of `dataset_dir` (the half not reserved for RL),
    its held-out reports when the gate has a hallucination ceiling, and on `profile.eval.benchmarks` found under `profile.eval.data_dir` (missing data is skipped with the reason).

    Decontamination checks every item against the dataset's train split. Writes the report to `out_dir` and
    returns flat figures: {"heldout/accuracy", "heldout/ci95_lo", "heldout/ci95_hi", "<bench>/score", ...}."""
    from medfoundry.evaluation.backends import HFBackend
    from medfoundry.evaluation.benchmarks import BenchmarkDataMissing
    from medfoundry.evaluation.report import log_mlflow
    from medfoundry.evaluation.runner import (
        EvalSettings,
        build_annotator,
        evaluate,
        flat_metrics,
        load_benchmark,
    )

    cfg = profile.eval
    settings = EvalSettings(
        limit=cfg.limit, prompt_mode=cfg.prompt_mode, bootstrap_samples=cfg.bootstrap_samples, seed=cfg.seed,
        protocol=cfg.protocol, protocols=dict(cfg.protocols),
    )
    backend = HFBackend.from_uri(
        model_dir, profile.model, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed
    )
    runs = []
    # The hallucination rate comes from report generation scored against linked entities: computed whenever the
    # gate has a ceiling on it (a gate never passes on a metric that was not computed).
    own = ["heldout"] + (["report_findings"] if profile.gates.max_hallucination_rate is not None else [])
    for name in own:
        try:
            runs.append(load_benchmark(name, Path(dataset_dir), cfg.limit))
        except BenchmarkDataMissing as err:
            log.warning("no held-out %s split to evaluate: %s", name, err)
    data: Path | dict[str, Path] = Path(cfg.data_dir).expanduser() if cfg.data_dir else {}
    if cfg.benchmarks and not cfg.data_dir:
        log.warning("eval.data_dir is not set: skipping %s", ", ".join(cfg.benchmarks))
    annotator = build_annotator(
        corpus=Path(dataset_dir),
        n=profile.curation.decontamination_ngram,
        tree=cfg.entity_tree,
        ontology_dir=profile.curation.ontology_dir,
        max_nodes_per_source=profile.curation.max_nodes_per_source,
        workspace=profile.workspace,
    )
    summary = evaluate(cfg.benchmarks, data, backend, Path(out_dir), settings, annotator, extra_runs=runs)
    log_mlflow(summary, Path(out_dir), prefix="", log_metrics=False)
    figures: dict[str, Any] = flat_metrics(summary)
    figures["benchmarks_run"] = ",".join(summary["benchmarks"])
    if summary["missing"]:
        figures["benchmarks_skipped"] = ",".join(summary["missing"])
    return figures
