"""Linker throughput and mentions, this tree's code against another checkout's, on the linking benchmark's corpus.

Each side runs in its own process (its own `medfoundry` on sys.path, its own tree cache), alternating, on the same
documents from ../shared (`linking_benchmark.build_corpus`); CPU seconds of `Linker.find` over the corpus, best of
--repeats (the first run of a process includes one-time lazy set-up and is reported apart). Prints one JSON line
per run and the mentions only one side finds.

    git archive main medfoundry | tar -x -C /tmp/linker-main
    .venv/bin/python benchmarks/linking_ab.py --baseline-root /tmp/linker-main [--mb 3] [--repeats 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import importlib
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def side(code_root: str, out: str, cache: str, mb: float, repeats: int) -> None:
    sys.path.insert(0, code_root)
    sys.path.insert(1, str(ROOT / "benchmarks"))
    import medfoundry
    from medfoundry.entities.linker import Linker, batches
    from medfoundry.entities.tree import load_or_build_tree

    # imported after medfoundry: it puts this tree's root first on sys.path
    linking_benchmark = importlib.import_module("linking_benchmark")
    assert medfoundry.__file__.startswith(code_root), medfoundry.__file__
    tree, _ = load_or_build_tree(linking_benchmark.SHARED / "ontologies" / "disease_ontology", None, Path(cache))
    started = time.process_time()
    linker = Linker.from_tree(tree)
    build = time.process_time() - started
    docs, size, _ = linking_benchmark.build_corpus(mb)
    runs, mentions = [], []
    for _ in range(repeats):
        started = time.process_time()
        found = [linker.find(batch) for batch in batches(docs, 4_000_000)]
        runs.append(time.process_time() - started)
    offset = 0
    for matches in found:
        for doc, start, end, node in zip(matches.doc, matches.start, matches.end, matches.node, strict=True):
            mentions.append((offset + int(doc), int(start), int(end), linker.ids[node]))
        offset += matches.n_docs
    Path(out).write_bytes(pickle.dumps({"mentions": mentions, "docs": docs}))
    print(
        json.dumps(
            {
                "code": code_root,
                "mb": round(size / 1e6, 2),
                "patterns": linker.stats.get("patterns"),
                "build_cpu_s": round(build, 2),
                "first_run_cpu_s": round(runs[0], 3),
                "best_cpu_s": round(min(runs[1:] or runs), 3),
                "mb_per_cpu_s": round(size / 1e6 / min(runs[1:] or runs), 1),
                "mentions": len(mentions),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-root", help="a folder holding the other checkout's medfoundry/ (required)")
    parser.add_argument("--mb", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--side", nargs=4, help=argparse.SUPPRESS)  # code root, output, tree cache, (internal)
    args = parser.parse_args()
    if args.side:
        side(args.side[0], args.side[1], args.side[2], args.mb, args.repeats)
        return
    if not args.baseline_root:
        parser.error("--baseline-root is required")
    work = Path(tempfile.mkdtemp(prefix="linking-ab-"))
    roots = {"baseline": str(Path(args.baseline_root).resolve()), "this": str(ROOT)}
    for _ in range(args.rounds):
        for name, code_root in roots.items():
            command = [sys.executable, __file__, "--mb", str(args.mb), "--repeats", str(args.repeats)]
            command += ["--side", code_root, str(work / f"{name}.pkl"), str(work / f"cache-{name}"), name]
            subprocess.run(command, check=True)
    baseline, this = (pickle.loads((work / f"{name}.pkl").read_bytes()) for name in roots)
    docs = this["docs"]
    only = {
        "only_baseline": sorted(set(baseline["mentions"]) - set(this["mentions"])),
        "only_this": sorted(set(this["mentions"]) - set(baseline["mentions"])),
    }
    for label, mentions in only.items():
        print(f"{label}: {len(mentions)}")
        for doc, start, end, node in mentions:
            text = docs[doc]
            context = f"{text[max(0, start - 30) : start]}[[{text[start:end]}]]{text[end : end + 20]}"
            print(f"  {' '.join(context.split())} -> {node}")


if __name__ == "__main__":
    main()
