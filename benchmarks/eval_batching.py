"""Batched in-process evaluation vs one-at-a-time generation, same model, same items, same greedy settings.

Runs `medfoundry.evaluation.runner.run_items` with `HFBackend(batch_size=1)` (baseline) and
`HFBackend(batch_size=B)` for each B on the first N items of a benchmark and reports items/s, the speedup, and whether every
output (and so every score) is identical. Models are random-init Qwen2-VL built from config with a tokenizer
trained locally (no download):
  tiny      the tiny profile's model (hidden 64, 2 layers)
  text256   hidden 256, 4 layers, vocab 2048 (the size used by benchmarks/training_throughput.py)
Rows: medqa (text) and vqa_rad (image + text) from ../shared/data when present (else generated MC items, and the
image row is left out). Each configuration runs `--rounds` times interleaved; the median is reported.

    .venv/bin/python benchmarks/eval_batching.py [--items 48] [--batch-size 8,16] [--max-new-tokens 16,64]
        [--rounds 3] [--threads 1] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from medfoundry.workspace import shared_root  # noqa: E402 - after the path setup

DOC = ROOT / "docs" / "evaluation.md"
START, END = "<!-- eval-batching:start -->", "<!-- eval-batching:end -->"
SHARED = (shared_root() or ROOT.parent / "shared") / "data"


def build_model(kind: str, out: Path, texts: list[str]) -> Path:
    from medfoundry.config import load_profile
    from medfoundry.models.loading import build_base_model

    cfg = load_profile("tiny").model
    if kind == "text256":
        cfg = cfg.model_copy(update=dict(hidden_size=256, intermediate_size=768, num_layers=4, num_heads=4,
                                         num_kv_heads=2, vocab_size=2048))
    build_base_model(cfg, texts, out)
    return out


def load_items(benchmark: str, n: int):
    from medfoundry.evaluation.benchmarks import EvalItem, get_benchmark
    from medfoundry.evaluation.runner import BenchmarkRun

    bench = get_benchmark(benchmark)
    if SHARED.is_dir():
        items, skipped = bench.load(SHARED, n)
        return BenchmarkRun(bench, items, skipped, str(SHARED))
    opts = {"A": "aspirin", "B": "beta blocker", "C": "calcium channel blocker", "D": "diuretic"}
    items = [
        EvalItem(f"g{i}", benchmark, "multiple_choice", f"A {40 + i}-year-old with hypertension stage {i % 3 + 1}; "
                 "which drug is first line?", "ABCD"[i % 4], options=opts)
        for i in range(n)
    ]
    return BenchmarkRun(bench, items, [], "generated")


def time_run(run, backend, out: Path) -> tuple[float, list]:
    import pandas as pd

    from medfoundry.evaluation.runner import EvalSettings, run_items

    started = time.perf_counter()
    run_items(run, backend, out, EvalSettings(bootstrap_samples=10))
    elapsed = time.perf_counter() - started
    outputs = pd.read_parquet(out / run.benchmark.name / "predictions.parquet")["output"].tolist()
    return elapsed, outputs


def measure(loaded, kind: str, params: int, name: str, run, tokens: int, batch_sizes: list[int], rounds: int,
            tmp: Path) -> list[dict]:
    """One row per batch size: median wall time of `run_items` one at a time vs batched, interleaved rounds."""
    from medfoundry.evaluation.backends import HFBackend

    backends = {1: HFBackend(loaded, tokens, batch_size=1)}
    backends.update({b: HFBackend(loaded, tokens, batch_size=b) for b in batch_sizes})
    time_run(type(run)(run.benchmark, run.items[: max(batch_sizes)]), backends[max(batch_sizes)], tmp / "warmup")
    times: dict[int, list[float]] = {b: [] for b in backends}
    outputs: dict[int, list] = {}
    for r in range(rounds):
        for b, backend in backends.items():
            elapsed, outputs[b] = time_run(run, backend, tmp / f"{kind}-{name}-{tokens}-{b}-{r}")
            times[b].append(elapsed)
    t1 = statistics.median(times[1])
    rows = []
    for b in batch_sizes:
        tb = statistics.median(times[b])
        rows.append({
            "model": kind, "params": params, "benchmark": name, "items": len(run.items), "new_tokens": tokens,
            "batch_size": b, "single_s": round(t1, 2), "batched_s": round(tb, 2),
            "single_items_per_s": round(len(run.items) / t1, 1), "batched_items_per_s": round(len(run.items) / tb, 1),
            "speedup": round(t1 / tb, 2), "identical_outputs": outputs[1] == outputs[b],
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--batch-size", default="8,16", help="comma-separated batch sizes")
    parser.add_argument("--max-new-tokens", default="16,64", help="comma-separated; 64 is the CLI default")
    parser.add_argument("--rounds", type=int, default=3)
    # One thread: on a shared 2-core machine two OpenMP threads per process stall on each other (10x slower).
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="tiny,text256")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()

    import torch

    from medfoundry.models.loading import load_model

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    benchmarks = ["medqa", "vqa_rad"] if SHARED.is_dir() else ["medqa"]
    runs = {b: load_items(b, args.items) for b in benchmarks}
    corpus = [it.question + " " + " ".join((it.options or {}).values()) for r in runs.values() for it in r.items]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for kind in args.models.split(","):
            loaded = load_model(build_model(kind, tmp / kind, corpus * 3))
            params = sum(p.numel() for p in loaded.model.parameters())
            for name, run in runs.items():
                for tokens in [int(t) for t in str(args.max_new_tokens).split(",")]:
                    batch_sizes = [int(b) for b in str(args.batch_size).split(",")]
                    for row in measure(loaded, kind, params, name, run, tokens, batch_sizes, args.rounds, tmp):
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, " \
              f"{args.threads} thread(s), 1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after " \
              "(the machine is shared)"
    command = (f".venv/bin/python benchmarks/eval_batching.py --items {args.items} --batch-size {args.batch_size} "
               f"--max-new-tokens {args.max_new_tokens} --rounds {args.rounds} --threads {args.threads} --write-docs")
    table = [
        f"Machine: {machine}. Command: `{command}`. Median of {args.rounds} interleaved rounds; greedy generation "
        f"(max new tokens per row), data: {'../shared/data' if SHARED.is_dir() else 'generated items'}; wall time "
        "of `run_items` (prompting, generation, extraction, scoring, writing results).",
        "",
        "| model | params | benchmark | items | max new tokens | batch | one at a time (s) | batched (s) | "
        "items/s single | items/s batched | speedup | identical outputs |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        table.append(
            f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['benchmark']} | {r['items']} | {r['new_tokens']} | "
            f"{r['batch_size']} | {r['single_s']} | "
            f"{r['batched_s']} | {r['single_items_per_s']} | {r['batched_items_per_s']} | {r['speedup']}x | "
            f"{'yes' if r['identical_outputs'] else 'no'} |"
        )
    text = "\n".join(table)
    print(text)
    if args.write_docs:
        doc = DOC.read_text()
        if START not in doc or END not in doc:
            raise SystemExit(f"{DOC} lacks the {START} ... {END} markers")
        head, rest = doc.split(START, 1)
        DOC.write_text(f"{head}{START}\n{text}\n{END}{rest.split(END, 1)[1]}")


if __name__ == "__main__":
    main()
