"""Run benchmarks against a backend and write the results.

Layout of an evaluation folder:
    <out>/<benchmark>/results.json        scores with 95% bootstrap intervals, counts, skipped rows, breakdowns
    <out>/<benchmark>/predictions.parquet one row per item: prompt, output, extracted answer, gold, metrics
    <out>/summary.json                    every benchmark's results plus benchmarks skipped for missing data
    <out>/report.html                     the HTML report (plots embedded)
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfoundry.evaluation.backends import Backend, Generation, GenerationRequest
from medfoundry.evaluation.benchmarks import Benchmark, BenchmarkDataMissing, EvalItem, Skipped, get_benchmark
from medfoundry.evaluation.loglikelihood import LOGLIKELIHOOD_FLAG, ProtocolError
from medfoundry.evaluation.metrics import bootstrap_ci
from medfoundry.evaluation.scoring import EntityLinker, score_item
from medfoundry.tasks.prompts import PromptMode, build_prompt

log = logging.getLogger(__name__)

RESULTS = "results.json"
PREDICTIONS = "predictions.parquet"
SUMMARY = "summary.json"
REPORT = "report.html"
NO_ENTITY = "no_entity"


@dataclass
class EvalSettings:
    limit: int | None = None
    prompt_mode: PromptMode = "plain"
    bootstrap_samples: int = 1000
    seed: int = 0
    exclude_contaminated: bool = False
    protocol: str = "generative"  # generative | loglikelihood (medfoundry.evaluation.loglikelihood)
    protocols: dict[str, str] = field(default_factory=dict)  # per-benchmark overrides of `protocol`
    split: str | None = None  # train | dev | test: which files of a benchmark folder (None: the folder's only split)
    cop_base: int | None = None  # MedMCQA's cop convention when a file cannot tell (0: HF export, 1: original)

    def protocol_for(self, benchmark: str) -> str:
        return self.protocols.get(benchmark, self.protocol)


@dataclass
class BenchmarkRun:
    benchmark: Benchmark
    items: list[EvalItem]
    skipped: list[Skipped] = field(default_factory=list)
    data: str = ""


class ItemAnnotator:
    """Per-item annotations computed before generation, over all benchmarks at once: the entity linker (rarity
    tiers, report entity metrics) and the training-corpus contamination check."""

    def __init__(
        self,
        linker: EntityLinker | None = None,
        contamination: Callable[[list[EvalItem]], dict[tuple[str, str], str]] | None = None,
    ):
        self.linker = linker
        self.contamination = contamination
        self.tiers: dict[tuple[str, str], str] = {}
        self.contaminated: dict[tuple[str, str], str] | None = None

    def prepare(self, runs: Sequence[BenchmarkRun]) -> None:
        items = [it for run in runs for it in run.items]
        tier = getattr(self.linker, "rarity_tier", None)
        for it in items:
            known = it.meta.get("rarity")
            if known is None and tier is not None:
                known = tier(_item_entity_text(it))
            if known is not None:
                self.tiers[(it.benchmark, it.id)] = known
        if self.contamination is not None:
            self.contaminated = self.contamination(items)


def _item_entity_text(item: EvalItem) -> str:
    """The question and its gold answer (the option's text for multiple choice): distractors do not set the tier."""
    answer = (item.options or {}).get(item.answer, item.answer)
    return f"{item.question}\n{answer}"


def load_benchmark(
    name: str, data: Path, limit: int | None = None, split: str | None = None, **options: Any
) -> BenchmarkRun:
    bench = get_benchmark(name, split, **options)
    items, skipped = bench.load(Path(data), limit)
    for row in skipped:
        log.warning("%s: skipped %s:%s: %s", name, row.file, row.line, row.reason)
    return BenchmarkRun(bench, items, skipped, str(data))


OPEN_TASKS = ("short_answer", "long_answer", "report")


def run_items(
    run: BenchmarkRun,
    backend: Backend,
    out_dir: Path,
    settings: EvalSettings,
    annotator: ItemAnnotator | None = None,
    progress: Callable[[int], None] | None = None,
    judge: Any = None,
) -> dict[str, Any]:
    """Evaluate one benchmark's items; writes <out>/<name>/results.json and predictions.parquet, returns results."""
    import pandas as pd

    name = run.benchmark.name
    annotator = annotator or ItemAnnotator()
    checked = annotator.contaminated is not None
    contaminated = {i: gram for (b, i), gram in (annotator.contaminated or {}).items() if b == name}
    items = [it for it in run.items if not (settings.exclude_contaminated and it.id in contaminated)]

    started = time.perf_counter()
    if settings.protocol_for(name) == "loglikelihood":
        rows = _loglikelihood_rows(name, items, backend, annotator, contaminated, checked, progress)
    else:
        rows = _generative_rows(run, items, backend, settings, annotator, contaminated, checked, progress)
        if judge is not None:
            _judge_open_answers(judge, items, rows)
    elapsed = time.perf_counter() - started
    frame = pd.DataFrame(rows, columns=_COLUMNS)
    results = summarize(run, frame, settings, contaminated if checked else None, backend.description, elapsed)
    if judge is not None:
        results["judge"] = _judge_summary(judge, frame)
    bench_dir = Path(out_dir) / name
    bench_dir.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(bench_dir / PREDICTIONS, index=False)
    (bench_dir / RESULTS).write_text(json.dumps(results, indent=2, sort_keys=True, default=_json_default))
    return results


def _loglikelihood_rows(name, items, backend, annotator, contaminated, checked, progress) -> list[dict[str, Any]]:
    from medfoundry.evaluation.loglikelihood import ProtocolError, score_items

    make_scorer = getattr(backend, "loglikelihood_scorer", None)
    if make_scorer is None:
        raise ProtocolError(f"{name}: the loglikelihood protocol needs an in-process model (--model), not an endpoint")
    rows = []
    for item, (request, scored) in zip(items, score_items(items, make_scorer()), strict=True):
        chosen = (list(item.options) if item.options else list(item.labels))[scored.pred]
        metrics = {
            "accuracy": float(scored.pred == request.gold),
            "acc_norm": float(scored.pred_norm == request.gold),
            "acc_bytes": float(scored.pred_bytes == request.gold),
        }
        rows.append(
            {
                "benchmark": name, "id": item.id, "task": item.task, "source": item.source,
                "template": request.template_id, "prompt": request.context, "image": None,
                "output": json.dumps({"choices": list(request.choices), "loglikelihoods": scored.loglikelihoods}),
                "error": None, "extracted": chosen, "extraction": "loglikelihood", "unparseable": False,
                "gold": item.answer, "score": metrics["accuracy"], "rarity": annotator.tiers.get((name, item.id)),
                "contaminated": item.id in contaminated if checked else None, "shared_ngram": contaminated.get(item.id),
                "metrics": json.dumps(metrics, sort_keys=True),
            }
        )
    if progress:
        progress(len(items))
    return rows


def _judge_open_answers(judge: Any, items: list[EvalItem], rows: list[dict[str, Any]]) -> None:
    """Add `judge_correct` (and exact match, for the agreement) to the rows of open-answer items that have an answer."""
    from medfoundry.evaluation.judge import JudgeCase
    from medfoundry.evaluation.metrics import exact_match

    picked = [i for i, (it, row) in enumerate(zip(items, rows, strict=True)) if it.task in OPEN_TASKS and row["extracted"]]
    cases = [JudgeCase(items[i].question, items[i].answer, rows[i]["extracted"]) for i in picked]
    for i, verdict in zip(picked, judge.grade(cases) if cases else [], strict=True):
        metrics = json.loads(rows[i]["metrics"])
        metrics.setdefault("exact_match", exact_match(rows[i]["extracted"], items[i].answer))
        if verdict is not None:
            metrics["judge_correct"] = verdict
        rows[i]["metrics"] = json.dumps(metrics, sort_keys=True)


def _judge_summary(judge: Any, frame) -> dict[str, Any]:
    pairs = [
        (m["judge_correct"], m["exact_match"])
        for m in map(json.loads, frame["metrics"])
        if "judge_correct" in m and "exact_match" in m
    ]
    judged = [json.loads(m) for m in frame["metrics"]]
    return {
        "judge": judge.description,
        "n_judged": len(pairs),
        "n_unjudged": sum("exact_match" in m and "judge_correct" not in m for m in judged),
        "accuracy": sum(j for j, _ in pairs) / len(pairs) if pairs else None,
        "agreement_with_exact_match": sum(j == e for j, e in pairs) / len(pairs) if pairs else None,
    }


def _generative_rows(run, items, backend, settings, annotator, contaminated, checked, progress) -> list[dict[str, Any]]:
    bench, name = run.benchmark, run.benchmark.name
    prompts = [build_prompt(it, settings.prompt_mode) for it in items]
    requests = [GenerationRequest(p.system, p.user, it.image) for p, it in zip(prompts, items, strict=True)]
    generations: list[Generation] = backend.generate(requests, progress) if requests else []
    rows = []
    for item, prompt, gen in zip(items, prompts, generations, strict=True):
        scored = score_item(item, gen.text, annotator.linker)
        rows.append(
            {
                "benchmark": name,
                "id": item.id,
                "task": item.task,
                "source": item.source,
                "template": prompt.template_id,
                "prompt": prompt.user,
                "image": str(item.image) if item.image else None,
                "output": gen.text,
                "error": gen.error,
                "extracted": scored.extraction.value,
                "extraction": scored.extraction.method,
                "unparseable": scored.unparseable,
                "gold": item.answer,
                "score": scored.metrics.get(bench.main_metric, scored.metrics.get(bench.fallback_metric or "", math.nan)),
                "rarity": annotator.tiers.get((name, item.id)),
                "contaminated": item.id in contaminated if checked else None,
                "shared_ngram": contaminated.get(item.id),
                "metrics": json.dumps(scored.metrics, sort_keys=True),
            }
        )
    return rows


_COLUMNS = [
    "benchmark", "id", "task", "source", "template", "prompt", "image", "output", "error", "extracted", "extraction",
    "unparseable", "gold", "score", "rarity", "contaminated", "shared_ngram", "metrics",
]


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def metric_table(frame) -> dict[str, list[float]]:
    """metric name -> per-item values (items lacking the metric are left out)."""
    table: dict[str, list[float]] = {}
    for blob in frame["metrics"]:
        for key, value in json.loads(blob).items():
            table.setdefault(key, []).append(float(value))
    return table


def summarize(
    run: BenchmarkRun, frame, settings: EvalSettings, contaminated: dict[str, str] | None, backend: str, elapsed: float
) -> dict[str, Any]:
    bench = run.benchmark
    n_resamples, seed = settings.bootstrap_samples, settings.seed
    metrics = {}
    for key, values in sorted(metric_table(frame).items()):
        lo, hi = bootstrap_ci(values, n_resamples, seed)
        metrics[key] = {"value": sum(values) / len(values), "ci95": [lo, hi], "n": len(values)}
    metric_name = bench.main_metric
    if metric_name not in metrics and bench.fallback_metric in metrics:
        metric_name = bench.fallback_metric
    main = metrics.get(metric_name, {"value": math.nan, "ci95": [math.nan, math.nan], "n": 0})
    n = len(frame)
    n_unparseable = int(frame["unparseable"].sum()) if n else 0
    results: dict[str, Any] = {
        "benchmark": bench.name,
        "metric": metric_name,
        "score": _nan_to_none(main["value"]),
        "ci95": [_nan_to_none(v) for v in main["ci95"]],
        "n": n,
        "n_scored": n - n_unparseable,
        "n_unparseable": n_unparseable,
        "n_errors": int(frame["error"].notna().sum()) if n else 0,
        "n_skipped": len(run.skipped),
        "skipped": [s.as_dict() for s in run.skipped],
        "metrics": {k: {**v, "value": _nan_to_none(v["value"])} for k, v in metrics.items()},
        "unparseable_examples": frame.loc[frame["unparseable"], ["id", "output", "error"]].head(5).to_dict("records")
        if n
        else [],
        "backend": backend,
        "prompt_mode": settings.prompt_mode,
        "protocol": settings.protocol_for(bench.name),
        "templates": sorted(set(frame["template"])) if n else [],
        "limit": settings.limit,
        "data": run.data,
        "seconds": round(elapsed, 3),
    }
    if metric_name == "accuracy":
        results["accuracy"] = results["score"]
    results["by_rarity"] = _breakdown(frame, "rarity", n_resamples, seed)
    if contaminated is not None:
        results["decontamination"] = {
            "n_checked": len(run.items),
            "n_contaminated": len(contaminated),
            "excluded": settings.exclude_contaminated,
            "contaminated_ids": sorted(contaminated)[:100],
            "examples": [{"id": i, "shared_ngram": g} for i, g in sorted(contaminated.items())[:20]],
            "clean": _subset_score(frame[frame["contaminated"] != True], n_resamples, seed),  # noqa: E712
            "contaminated": _subset_score(frame[frame["contaminated"] == True], n_resamples, seed),  # noqa: E712
        }
    return results


def _subset_score(frame, n_resamples: int, seed: int) -> dict[str, Any]:
    values = [v for v in frame["score"].tolist() if not math.isnan(v)]
    if not values:
        return {"n": 0, "score": None, "ci95": [None, None]}
    lo, hi = bootstrap_ci(values, n_resamples, seed)
    return {"n": len(values), "score": sum(values) / len(values), "ci95": [lo, hi]}


def _breakdown(frame, column: str, n_resamples: int, seed: int) -> dict[str, Any]:
    if not len(frame) or frame[column].isna().all():
        return {}
    return {
        str(tier): _subset_score(group, n_resamples, seed)
        for tier, group in frame.groupby(column, dropna=True, sort=True)
    }


def evaluate(
    benchmarks: Sequence[str],
    data: Path | dict[str, Path],
    backend: Backend,
    out_dir: Path,
    settings: EvalSettings | None = None,
    annotator: ItemAnnotator | None = None,
    extra_runs: Sequence[BenchmarkRun] = (),
    show_progress: bool = False,
    judge: Any = None,
) -> dict[str, Any]:
    """Evaluate `benchmarks` (names) whose data sits under `data` (a root folder, or per-benchmark paths), plus
    already-loaded `extra_runs`. A benchmark without data is skipped with the reason; returns the summary."""
    settings = settings or EvalSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs: list[BenchmarkRun] = list(extra_runs)
    missing: dict[str, str] = {}
    for name in benchmarks:
        path = data.get(name) if isinstance(data, dict) else data
        if path is None:
            missing[name] = "no data path given (eval.data_dir or --data)"
            continue
        try:
            runs.append(load_benchmark(name, Path(path), settings.limit, settings.split, cop_base=settings.cop_base))
        except BenchmarkDataMissing as err:
            log.warning("skipping benchmark %s: %s", name, err)
            missing[name] = str(err)

    annotator = annotator or ItemAnnotator()
    annotator.prepare(runs)
    results: dict[str, dict[str, Any]] = {}
    with _progress(show_progress) as bar:
        for run in runs:
            name = run.benchmark.name
            task = bar.add_task(name, total=len(run.items)) if bar else None
            advance = (lambda k, task=task: bar.advance(task, k)) if bar else None
            try:
                results[name] = run_items(run, backend, out_dir, settings, annotator, advance, judge)
            except ProtocolError as err:
                log.warning("skipping benchmark %s: %s", name, err)
                missing[name] = str(err)
                continue
            log.info("%s: %s %.4f over %d items", name, results[name]["metric"], results[name]["score"] or 0, results[name]["n"])
    summary = {
        "backend": backend.description,
        "protocol": settings.protocol,
        "protocols": {name: res["protocol"] for name, res in results.items()},
        "benchmarks": results,
        "missing": missing,
        "settings": settings.__dict__,
        "rarity_available": bool(annotator.tiers),
        "linker": repr(annotator.linker) if annotator.linker is not None else None,
        "decontamination": repr(annotator.contamination) if annotator.contamination is not None else None,
    }
    (out_dir / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True, default=_json_default))
    from medfoundry.evaluation.report import write_report

    write_report(summary, out_dir / REPORT)
    return summary


class _NoProgress:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool):
    if not enabled:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())


def flat_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The flat key figures the gates and MLflow read: <bench>/score, /accuracy, /ci95_lo, /ci95_hi, /n,
    /unparseable_rate, every metric by name, /rare/<main> and /rarity/<tier> for the rarity breakdown."""
    flat: dict[str, float] = {}
    for name, res in summary["benchmarks"].items():
        if res["score"] is None:
            continue
        flat[f"{name}/score"] = res["score"]
        if "accuracy" in res:
            flat[f"{name}/accuracy"] = res["accuracy"]
        flat[f"{name}/ci95_lo"], flat[f"{name}/ci95_hi"] = res["ci95"]
        flat[f"{name}/n"] = float(res["n"])
        # A number, so that it travels with the metrics to the registry: the gate compares like with like.
        flat[f"{name}/{LOGLIKELIHOOD_FLAG}"] = float(res.get("protocol") == "loglikelihood")
        flat[f"{name}/unparseable_rate"] = res["n_unparseable"] / res["n"] if res["n"] else 0.0
        for key, value in res["metrics"].items():
            if key not in ("accuracy",) and value["value"] is not None:
                flat[f"{name}/{key}"] = value["value"]
        for tier, tier_res in res.get("by_rarity", {}).items():
            if tier_res["score"] is None:
                continue
            flat[f"{name}/rarity/{tier}"] = tier_res["score"]
            if tier == "rare":
                flat[f"{name}/rare/{res['metric']}"] = tier_res["score"]
                flat[f"{name}/rare/score"] = tier_res["score"]
        decon = res.get("decontamination")
        if decon:
            flat[f"{name}/n_contaminated"] = float(decon["n_contaminated"])
    return {k: float(v) for k, v in flat.items() if v is not None and not math.isnan(float(v))}


def load_item_scores(eval_dir: Path) -> dict[str, dict[str, float]]:
    """{benchmark: {item id: main score}} from an evaluation folder's predictions (what the gate pairs on)."""
    import pandas as pd

    scores: dict[str, dict[str, float]] = {}
    for path in sorted(Path(eval_dir).glob(f"*/{PREDICTIONS}")):
        frame = pd.read_parquet(path, columns=["benchmark", "id", "score"])
        for bench, item, score in frame.itertuples(index=False):
            if score == score:  # NaN: the item had no main score
                scores.setdefault(str(bench), {})[str(item)] = float(score)
    return scores


def build_annotator(
    corpus: Path | None = None,
    n: int = 13,
    tree: str | Path | None = "auto",
    ontology_dir: str | None = None,
    max_nodes_per_source: int | None = None,
    workspace: str = "",
) -> ItemAnnotator:
    """The default annotator: the Medical Entity Tree linker (see `rarity.load_linker`) and decontamination against
    `corpus` when given."""
    from medfoundry.evaluation.decontamination import CorpusContamination
    from medfoundry.evaluation.rarity import load_linker

    linker = load_linker(tree, ontology_dir, max_nodes_per_source, workspace)
    return ItemAnnotator(linker, CorpusContamination(Path(corpus), n) if corpus else None)
