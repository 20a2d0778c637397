"""Near-duplicate removal throughput and accuracy on real medical text, against two baselines.

Corpus: real documents from ../shared/data (MTS-Dialog notes and dialogues, MedQuAD answers, PubMedQA contexts and
answers, MedMCQA explanations, MedQA questions; at least 20 words each), plus lightly edited copies of a share of
them (word substitutions, case and punctuation changes) as known near duplicates.

Methods, all at Jaccard threshold 0.8 over 5-word shingles:
  medfoundry   `NearDuplicateFilter`: rolling-hash shingles, numpy MinHash (128 permutations), datasketch MinHashLSH
  datasketch   datasketch's own MinHash (`update_batch` over encoded shingles, 128 permutations) + MinHashLSH
  pairwise     exact Jaccard of every pair of shingle sets (the naive baseline; on a subset, it is O(n^2))
Reported: documents/s, recall on injected copies whose exact Jaccard to their original is >= 0.8, and on the
pairwise subset, precision/recall of the MinHash methods against exact pairwise Jaccard.

    .venv/bin/python benchmarks/dedup_benchmark.py [--docs 10000] [--subset 1500] [--write-docs]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from docs_block import write_block  # noqa: E402 - beside this script

from medfoundry.workspace import shared_root  # noqa: E402 - after the path setup

DOC = ROOT / "docs" / "curation.md"
START, END = "<!-- dedup-benchmark:start -->", "<!-- dedup-benchmark:end -->"
SHARED = (shared_root() or ROOT.parent / "shared") / "data"
THRESHOLD = 0.8
SHINGLE = 5


def real_documents(min_words: int = 20) -> list[str]:
    docs: list[str] = []
    for path in sorted((SHARED / "mts_dialog").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                docs += [row["section_text"], row["dialogue"]]
    for path in sorted((SHARED / "medquad").rglob("*.xml")):
        try:
            root = ElementTree.parse(path).getroot()
        except ElementTree.ParseError:
            continue
        docs += [a.text or "" for a in root.iter("Answer")]
    pubmedqa = SHARED / "pubmedqa" / "pqal_dev.json"
    if pubmedqa.exists():
        for item in json.loads(pubmedqa.read_text()).values():
            docs += [" ".join(item.get("CONTEXTS", [])), item.get("LONG_ANSWER", "")]
    medmcqa = SHARED / "medmcqa" / "dev.jsonl"
    if medmcqa.exists():
        for line in medmcqa.read_text().splitlines():
            row = json.loads(line)
            docs.append(f"{row.get('question', '')} {row.get('exp') or ''}")
    medqa = SHARED / "medqa" / "us_4options.jsonl"
    if medqa.exists():
        docs += [json.loads(line)["question"] for line in medqa.read_text().splitlines()]
    seen, out = set(), []
    for doc in docs:
        doc = (doc or "").strip()
        if len(doc.split()) >= min_words and doc not in seen:
            seen.add(doc)
            out.append(doc)
    return out


def edit(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(max(1, len(words) // 150)):
        words[rng.randrange(len(words))] = rng.choice(["the", "a", "patient", "noted", "reported"])
    out = " ".join(words)
    if rng.random() < 0.5:
        out = out.upper() if rng.random() < 0.2 else out.replace(".", " .").replace(",", "")
    return out


def shingles(text: str) -> set[str]:
    from medfoundry.text.normalize import word_tokens

    tokens = word_tokens(text)
    width = min(SHINGLE, len(tokens))
    return {" ".join(tokens[i : i + width]) for i in range(len(tokens) - width + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _elapsed(start: tuple[float, float]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): the machine is shared, so both are reported."""
    return time.perf_counter() - start[0], time.process_time() - start[1]


def run_medfoundry(docs: list[tuple[str, str]]) -> tuple[tuple[float, float], dict[str, str]]:
    from medfoundry.curation.cleaning import NearDuplicateFilter

    nd = NearDuplicateFilter(threshold=THRESHOLD, num_perm=128, shingle=SHINGLE)
    start = _clock()
    flagged = {}
    for key, text in docs:
        hit = nd.check(key, text)
        if hit:
            flagged[key] = hit[0]
    return _elapsed(start), flagged


def run_datasketch(docs: list[tuple[str, str]]) -> tuple[tuple[float, float], dict[str, str]]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    kept: dict[str, MinHash] = {}
    flagged = {}
    start = _clock()
    for key, text in docs:
        m = MinHash(num_perm=128)
        m.update_batch([s.encode("utf-8") for s in shingles(text)])
        best = None
        for other in lsh.query(m):
            sim = m.jaccard(kept[other])
            if sim >= THRESHOLD and (best is None or sim > best[1]):
                best = (other, sim)
        if best:
            flagged[key] = best[0]
        else:
            lsh.insert(key, m)
            kept[key] = m
    return _elapsed(start), flagged


def run_pairwise(docs: list[tuple[str, str]]) -> tuple[tuple[float, float], dict[str, str]]:
    start = _clock()
    kept: list[tuple[str, set]] = []
    flagged = {}
    for key, text in docs:
        sh = shingles(text)
        best = None
        for other, other_sh in kept:
            sim = jaccard(sh, other_sh)
            if sim >= THRESHOLD and (best is None or sim > best[1]):
                best = (other, sim)
        if best:
            flagged[key] = best[0]
        else:
            kept.append((key, sh))
    return _elapsed(start), flagged


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=10000, help="corpus size including edited copies")
    parser.add_argument(
        "--copies", type=float, default=0.2, help="share of the corpus that are edited copies"
    )
    parser.add_argument("--subset", type=int, default=1500, help="documents for the pairwise comparison")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-docs", action="store_true", help=f"write the results table into {DOC.name}")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: this benchmark needs the real documents in ../shared/data")
    rng = random.Random(args.seed)
    base = real_documents()
    n_copies = int(args.docs * args.copies)
    n_orig = min(len(base), args.docs - n_copies)
    rng.shuffle(base)
    originals = [(f"d{i}", text) for i, text in enumerate(base[:n_orig])]
    copies = []
    for j in range(n_copies):
        i = rng.randrange(n_orig)
        copies.append((f"c{j}-of-d{i}", edit(originals[i][1], rng)))
    docs = originals + copies
    rng.shuffle(docs)
    # Originals first would make every copy "later"; shuffled, either member of a pair may come first.
    truth_pairs = []
    text_of = dict(docs)
    for key, text in copies:
        orig = key.split("-of-")[1]
        truth_pairs.append((key, orig, jaccard(shingles(text), shingles(text_of[orig]))))
    near = [(c, o) for c, o, j in truth_pairs if j >= THRESHOLD]
    words = sum(len(t.split()) for _, t in docs)

    clear = [(c, o) for c, o, j in truth_pairs if j >= 0.9]

    def copy_recall(flagged: dict[str, str], pairs: list[tuple[str, str]]) -> float:
        hits = sum(1 for c, o in pairs if c in flagged or o in flagged)
        return hits / len(pairs) if pairs else 1.0

    rows = []
    for name, fn in (("medfoundry", run_medfoundry), ("datasketch", run_datasketch)):
        (wall, cpu), flagged = fn(docs)
        rows.append(
            {
                "method": name,
                "docs": len(docs),
                "seconds": round(wall, 2),
                "docs_per_s": round(len(docs) / wall),
                "docs_per_cpu_s": round(len(docs) / cpu),
                "flagged": len(flagged),
                "copy_recall": round(copy_recall(flagged, near), 4),
                "copy_recall_j90": round(copy_recall(flagged, clear), 4),
            }
        )
    subset = docs[: args.subset]
    (exact_wall, exact_cpu), exact = run_pairwise(subset)
    rows.append(
        {
            "method": "pairwise (exact Jaccard)",
            "docs": len(subset),
            "seconds": round(exact_wall, 2),
            "docs_per_s": round(len(subset) / exact_wall),
            "docs_per_cpu_s": round(len(subset) / exact_cpu),
            "flagged": len(exact),
            "copy_recall": None,
            "copy_recall_j90": None,
        }
    )
    agreement = {}
    for name, fn in (("medfoundry", run_medfoundry), ("datasketch", run_datasketch)):
        _, flagged = fn(subset)
        tp = len(set(flagged) & set(exact))
        agreement[name] = {
            "precision_vs_exact": round(tp / len(flagged), 4) if flagged else 1.0,
            "recall_vs_exact": round(tp / len(exact), 4) if exact else 1.0,
        }
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    result = {
        "machine": machine,
        "corpus": {
            "documents": len(docs),
            "originals": n_orig,
            "edited_copies": n_copies,
            "words": words,
            "copies_with_exact_jaccard_ge_threshold": len(near),
            "copies_with_exact_jaccard_ge_0.9": len(clear),
        },
        "rows": rows,
        "agreement_on_subset": agreement,
    }
    print(json.dumps(result, indent=2))
    if args.write_docs:
        write_docs(result, args)


def write_docs(result: dict, args) -> None:
    lines = [
        f"Machine: {result['machine']}. Command: `.venv/bin/python benchmarks/dedup_benchmark.py --docs {args.docs} "
        f"--subset {args.subset} --write-docs`.",
        f"Corpus: {result['corpus']['documents']:,} documents ({result['corpus']['words']:,} words) — "
        f"{result['corpus']['originals']:,} real documents from ../shared/data and "
        f"{result['corpus']['edited_copies']:,} lightly edited copies "
        f"({result['corpus']['copies_with_exact_jaccard_ge_threshold']:,} of them at exact Jaccard >= {THRESHOLD}).",
        "",
        "| method | documents | wall s | documents/s (wall) | documents/CPU-s | flagged | recall, copies J>=0.8 "
        "| recall, copies J>=0.9 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        recall = "—" if row["copy_recall"] is None else f"{row['copy_recall']:.3f}"
        recall90 = "—" if row["copy_recall_j90"] is None else f"{row['copy_recall_j90']:.3f}"
        lines.append(
            f"| {row['method']} | {row['docs']:,} | {row['seconds']} | {row['docs_per_s']:,} | "
            f"{row['docs_per_cpu_s']:,} | {row['flagged']:,} | {recall} | {recall90} |"
        )
    lines.append("")
    lines.append(f"Agreement with exact pairwise Jaccard on the first {args.subset:,} documents:")
    lines.append("")
    lines.append("| method | precision | recall |")
    lines.append("| --- | ---: | ---: |")
    for name, values in result["agreement_on_subset"].items():
        lines.append(f"| {name} | {values['precision_vs_exact']:.3f} | {values['recall_vs_exact']:.3f} |")
    write_block(DOC, START, END, lines)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
