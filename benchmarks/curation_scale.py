"""Sharded curation at scale: >= 1,000,000 records in shards, one worker vs two workers, peak memory per worker.

Records are sentences of real medical text written by others (../shared: MTS-Dialog notes, MedQuAD answers,
PubMedQA contexts), joined into 2-4 sentence records with repeats (exact duplicates) and a changed last word (near
duplicates). The corpus is split once (`split_corpus`, one process, the same for both configurations); then both
configurations curate every record:
- shard workers: each shard in its own process (`curate_shard`, peak RSS from ru_maxrss). Shards run in pairs, round
  after round: one worker takes the pair in turn, two workers take it at once, the order swapped each round;
- merge (`merge_shards`, its own process): one worker merges in one process, two workers with `workers=2` (candidate
  pairs split by key range); the merges alternate too, and both must remove the same records.
So a machine loaded by others weighs on both configurations alike; the 1-minute load average before each run is
recorded beside its time. Reported: per-stage times (split, shard workers, merge, total) of each configuration, the
shard-worker speedup and the end-to-end speedup.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/curation_scale.py --records 1000000 --shards 8 \
        --write-docs
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import resource
import statistics
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from xml.etree import ElementTree

from docs_block import write_block

from medfoundry.curation.shards import curate_shard, merge_shards, split_corpus
from medfoundry.workspace import shared_root

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "curation.md"
START, END = "<!-- curation-scale:start -->", "<!-- curation-scale:end -->"


def sentences(shared: Path) -> list[str]:
    out: list[str] = []
    for path in sorted((shared / "data" / "mts_dialog").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                out += re.split(r"(?<=[.!?])\s+", row.get("section_text", ""))
    for path in sorted((shared / "data" / "medquad").rglob("*.xml"))[:800]:
        for answer in ElementTree.parse(path).getroot().iter("Answer"):
            out += re.split(r"(?<=[.!?])\s+", answer.text or "")
    data = json.loads((shared / "data" / "pubmedqa" / "pqal_dev.json").read_text())
    for item in data.values():
        for context in item["CONTEXTS"]:
            out += re.split(r"(?<=[.!?])\s+", context)
    return [s.strip() for s in out if len(s.split()) >= 6]


def write_corpus(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    pool = sentences(shared_root())
    recent: list[str] = []
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            roll = rng.random()
            if roll < 0.05 and recent:
                text = rng.choice(recent)  # exact duplicate
            elif roll < 0.08 and recent:
                words = rng.choice(recent).split()
                words[-1] = "again."
                text = " ".join(words)  # near duplicate
            else:
                text = " ".join(rng.choice(pool) for _ in range(rng.randint(2, 4)))
                recent = (recent + [text])[-1000:]
            fh.write(json.dumps({"id": f"r{i}", "text": text}) + "\n")


def _worker(shard: str, out: str) -> dict:
    started = time.perf_counter()
    figures = curate_shard(Path(shard), Path(out))
    return {
        "shard": Path(shard).name,
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "read": figures["read"],
    }


def _merge(shard_dirs: list[str], out: str, workers: int) -> dict:
    started = time.perf_counter()
    figures = merge_shards([Path(d) for d in shard_dirs], Path(out), workers=workers)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "figures": {k: v for k, v in figures.items() if k != "top_entities"},
    }


def _in_own_process(function, *args):
    """Each run in a fresh process: its peak RSS is its own, and nothing is warm from the previous run."""
    with ProcessPoolExecutor(max_workers=1, max_tasks_per_child=1) as pool:
        return pool.submit(function, *args).result()


def run_workers(shards: list[str], out_root: Path, workers: int) -> dict:
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, max_tasks_per_child=1) as pool:
        results = list(pool.map(_worker, shards, [str(out_root / Path(s).stem) for s in shards]))
    return {"workers": workers, "wall_s": round(time.perf_counter() - started, 2), "shards": results}


def _config(workers: int) -> str:
    return "one" if workers == 1 else "two"


def interleaved(shards: list[str], work: Path, progress: Path) -> list[dict]:
    """One worker and two workers on the same pair of shards, round after round, the order swapped every round: on a
    machine others load, both configurations see the same load over the run (a drift favours neither)."""
    rounds = []
    for number, start in enumerate(range(0, len(shards), 2)):
        pair = shards[start : start + 2]
        entry: dict = {"round": number, "shards": [Path(s).name for s in pair]}
        for workers in (1, 2) if number % 2 == 0 else (2, 1):
            load = os.getloadavg()[0]
            entry[f"workers_{workers}"] = {**run_workers(pair, work / _config(workers), workers),
                                           "load_1min_before": round(load, 2)}
        entry["ratio"] = round(entry["workers_1"]["wall_s"] / entry["workers_2"]["wall_s"], 2)
        print(json.dumps({k: entry[k] for k in ("round", "ratio")}), flush=True)
        rounds.append(entry)
        progress.write_text(json.dumps(rounds, indent=2) + "\n")  # a run stopped early keeps its finished rounds
    return rounds


def merges(shards: list[str], work: Path, rounds: int) -> list[dict]:
    """Each configuration merges its own shard outputs, alternating, `rounds` times each."""
    runs = []
    for number in range(rounds):
        for workers in (1, 2) if number % 2 == 0 else (2, 1):
            load = os.getloadavg()[0]
            dirs = [str(work / _config(workers) / Path(s).stem) for s in shards]
            out = str(work / f"merged-{_config(workers)}")
            runs.append({"workers": workers, "load_1min_before": round(load, 2),
                         **_in_own_process(_merge, dirs, out, workers)})
            print(json.dumps({k: runs[-1][k] for k in ("workers", "seconds")}), flush=True)
    one, two = ((work / f"merged-{c}" / "global_removed.jsonl").read_bytes() for c in ("one", "two"))
    if one != two:
        raise RuntimeError("the one-worker and two-worker merges removed different records")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--merge-rounds", type=int, default=2, help="merges per configuration (alternating)")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".cache" / "curation_scale")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "curation_scale.json")
    parser.add_argument("--write-docs", action="store_true", help=f"write the results into {DOC.name}")
    args = parser.parse_args()
    if args.shards % 2:
        parser.error("--shards must be even (shards run in pairs: one worker vs two workers on the same pair)")
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = args.work / "corpus.jsonl"
    uptime_start = _uptime()
    load_start = os.getloadavg()
    started = time.perf_counter()
    write_corpus(corpus, args.records)
    corpus_s = time.perf_counter() - started
    t = time.perf_counter()
    shards = split_corpus(corpus, args.work / "shards", args.shards)
    split_s = time.perf_counter() - t
    rounds = interleaved(shards, args.work, args.work / "rounds.json")
    merge_runs = merges(shards, args.work, args.merge_rounds)
    workers_s = {c: sum(r[f"workers_{w}"]["wall_s"] for r in rounds) for w, c in ((1, "one"), (2, "two"))}
    merge_s = {_config(w): _mean([m["seconds"] for m in merge_runs if m["workers"] == w]) for w in (1, 2)}
    total_s = {c: split_s + workers_s[c] + merge_s[c] for c in ("one", "two")}
    per_shard = [s for r in rounds for w in ("workers_1", "workers_2") for s in r[w]["shards"]]
    loads = [r[w]["load_1min_before"] for r in rounds for w in ("workers_1", "workers_2")]
    loads += [m["load_1min_before"] for m in merge_runs]
    command = (f"HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/curation_scale.py --records {args.records} "
               f"--shards {args.shards} --merge-rounds {args.merge_rounds}" + (" --write-docs" if args.write_docs else ""))
    result = {
        "command": command,
        "niceness": os.nice(0),
        "records": args.records,
        "shards": args.shards,
        "corpus_mb": round(corpus.stat().st_size / 1e6, 1),
        "corpus_write_s": round(corpus_s, 1),
        "stages_s": {
            "split": round(split_s, 1),
            "shard_workers": {c: round(v, 1) for c, v in workers_s.items()},
            "merge": {c: round(v, 2) for c, v in merge_s.items()},
            "total": {c: round(v, 1) for c, v in total_s.items()},
        },
        "speedup_shard_workers": round(workers_s["one"] / workers_s["two"], 2),
        "speedup_shard_workers_per_round": [r["ratio"] for r in rounds],
        "speedup_shard_workers_median_round": statistics.median(r["ratio"] for r in rounds),
        "speedup_merge": round(merge_s["one"] / merge_s["two"], 2),
        "speedup_end_to_end": round(total_s["one"] / total_s["two"], 2),
        "records_per_s_end_to_end": {c: round(args.records / v) for c, v in total_s.items()},
        "peak_rss_mb_shard_worker_max": max(s["peak_rss_mb"] for s in per_shard),
        "peak_rss_mb_merge_max": max(m["peak_rss_mb"] for m in merge_runs),
        "merge": merge_runs[-1]["figures"],
        "rounds": rounds,
        "merge_runs": merge_runs,
        "wall_s": round(time.perf_counter() - started, 1),
        "uptime_start": uptime_start,
        "uptime_end": _uptime(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "load_1min_during": {"min": min(loads), "max": max(loads)},
        "cpus": os.cpu_count(),
    }
    print(json.dumps({k: v for k, v in result.items() if k not in ("rounds", "merge_runs")}, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.write_docs:
        write_docs(result)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def write_docs(result: dict) -> None:
    stages = result["stages_s"]
    merge = result["merge"]
    shard_workers_max = max(s["seconds"] for r in result["rounds"] for s in r["workers_1"]["shards"])
    lines = [
        f"**Scale benchmark ({result['records']:,} records).** `benchmarks/curation_scale.py` (records: 2-4 sentences "
        "of real MTS-Dialog, MedQuAD and PubMedQA text from ../shared, with 5% exact and 3% near duplicates; "
        f"{result['corpus_mb']} MB of JSONL; {result['shards']} shards; results in `benchmarks/curation_scale.json`, "
        "per-round figures under `rounds` and `merge_runs`). Both configurations curate every record; their shard "
        "runs and their merges are interleaved (the order swapped each round) and each run's 1-minute load average "
        "is recorded before it, so a load drift weighs on both alike.",
        f"Command: `{result['command']}` (niceness {result['niceness']}, {result['cpus']} CPUs; "
        f"`uptime` before: `{result['uptime_start']}`; after: `{result['uptime_end']}`; 1-minute load before each "
        f"run {result['load_1min_during']['min']}-{result['load_1min_during']['max']}; {result['wall_s']:.0f} s in "
        "all).",
        "",
        "| stage | one worker, s | two workers, s | speedup |",
        "| --- | ---: | ---: | ---: |",
        f"| split (one process, shared) | {stages['split']} | {stages['split']} | 1.00 |",
        f"| shard workers | {stages['shard_workers']['one']} | {stages['shard_workers']['two']} | "
        f"**{result['speedup_shard_workers']:.2f}** |",
        f"| merge (one process / `workers=2`) | {stages['merge']['one']} | {stages['merge']['two']} | "
        f"{result['speedup_merge']:.2f} |",
        f"| **total (end to end)** | {stages['total']['one']} | {stages['total']['two']} | "
        f"**{result['speedup_end_to_end']:.2f}** |",
        "",
        f"- Shard workers, one/two per round: {', '.join(f'{r:.2f}' for r in result['speedup_shard_workers_per_round'])}"
        f" (median {result['speedup_shard_workers_median_round']:.2f}); a round far from the others was hit by a "
        "load change during one of its two runs.",
        f"- Peak RSS per shard worker: **{result['peak_rss_mb_shard_worker_max']} MB** (its own process, ru_maxrss; "
        f"the target is < 2 GB); the merge's peak: {result['peak_rss_mb_merge_max']} MB. The slowest single shard "
        f"took {shard_workers_max} s.",
        f"- Counts reconcile: {merge['read']:,} read = {merge['kept']:,} kept + "
        f"{sum(merge['removed_in_shards'].values()):,} removed inside shards ({_counts(merge['removed_in_shards'])}) "
        f"+ {sum(merge['removed_across_shards'].values()):,} across shards "
        f"({_counts(merge['removed_across_shards'])}); both configurations' merges removed the same records.",
        f"- Corpus generation (not curation, not timed in the totals): {result['corpus_write_s']} s.",
    ]
    write_block(DOC, START, END, lines)


def _counts(counts: dict) -> str:
    return ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in sorted(counts.items())) or "none"


if __name__ == "__main__":
    main()
