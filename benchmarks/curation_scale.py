"""Sharded curation at scale: >= 1,000,000 records in shards, one worker vs two workers, peak memory per worker.

Records are sentences of real medical text written by others (../shared: MTS-Dialog notes, MedQuAD answers,
PubMedQA contexts), joined into 1-3 sentence records with repeats (exact duplicates) and a changed last word (near
duplicates). Each shard worker is its own process (`curate_shard`), measured for peak RSS (ru_maxrss); the merge
(`merge_shards`) runs once. Shards run in pairs, round after round: one worker takes the pair in turn, two workers take
it at once, the order swapped each round, so a machine loaded by others weighs on both configurations alike; the
1-minute load average before each run is recorded beside its time.

    nice -n 10 .venv/bin/python benchmarks/curation_scale.py --records 1000000 --shards 8
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from xml.etree import ElementTree

from medfoundry.curation.shards import curate_shard, merge_shards, split_corpus
from medfoundry.workspace import shared_root

ROOT = Path(__file__).resolve().parents[1]


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


def run(shards: list[str], out_root: Path, workers: int) -> dict:
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, max_tasks_per_child=1) as pool:
        results = list(pool.map(_worker, shards, [str(out_root / Path(s).stem) for s in shards]))
    wall = time.perf_counter() - started
    return {"workers": workers, "wall_s": round(wall, 2), "shards": results}


def interleaved(shards: list[str], work: Path, progress: Path) -> list[dict]:
    """One worker and two workers on the same pair of shards, round after round, the order swapped every round: on a
    machine others load, both configurations see the same load over the run (a drift favours neither)."""
    rounds = []
    for number, start in enumerate(range(0, len(shards), 2)):
        pair = shards[start : start + 2]
        order = (1, 2) if number % 2 == 0 else (2, 1)
        entry: dict = {"round": number, "shards": [Path(s).name for s in pair]}
        for workers in order:
            load = os.getloadavg()[0]
            entry[f"workers_{workers}"] = {**run(pair, work / ("one" if workers == 1 else "two"), workers),
                                           "load_1min_before": round(load, 2)}
        entry["ratio"] = round(entry["workers_1"]["wall_s"] / entry["workers_2"]["wall_s"], 2)
        print(json.dumps({k: entry[k] for k in ("round", "ratio")}), flush=True)
        rounds.append(entry)
        progress.write_text(json.dumps(rounds, indent=2) + "\n")  # a run stopped early keeps its finished rounds
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".cache" / "curation_scale")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "curation_scale.json")
    args = parser.parse_args()
    if args.shards % 2:
        parser.error("--shards must be even (shards run in pairs: one worker vs two workers on the same pair)")
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = args.work / "corpus.jsonl"
    load_start = os.getloadavg()
    t = time.perf_counter()
    write_corpus(corpus, args.records)
    shards = split_corpus(corpus, args.work / "shards", args.shards)
    prepare = time.perf_counter() - t
    rounds = interleaved(shards, args.work, args.work / "rounds.json")
    t = time.perf_counter()
    merged = merge_shards([args.work / "two" / Path(s).stem for s in shards], args.work / "merged")
    merge_s = time.perf_counter() - t
    one = sum(r["workers_1"]["wall_s"] for r in rounds)
    two = sum(r["workers_2"]["wall_s"] for r in rounds)
    per_shard = [s for r in rounds for w in ("workers_1", "workers_2") for s in r[w]["shards"]]
    loads = [r[w]["load_1min_before"] for r in rounds for w in ("workers_1", "workers_2")]
    result = {
        "command": f"nice -n 10 .venv/bin/python benchmarks/curation_scale.py --records {args.records} "
        f"--shards {args.shards}",
        "records": args.records,
        "corpus_mb": round(corpus.stat().st_size / 1e6, 1),
        "prepare_s": round(prepare, 1),
        "one_worker_wall_s": round(one, 1),
        "two_workers_wall_s": round(two, 1),
        "speedup": round(one / two, 2),
        "records_per_s_one_worker": round(args.records / one),
        "records_per_s_two_workers": round(args.records / two),
        "peak_rss_mb_max": max(s["peak_rss_mb"] for s in per_shard),
        "rounds": rounds,
        "merge_s": round(merge_s, 1),
        "merge": {k: v for k, v in merged.items() if k != "top_entities"},
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "load_1min_during": {"min": min(loads), "max": max(loads)},
        "cpus": os.cpu_count(),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
