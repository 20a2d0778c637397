"""Sharded curation for corpora larger than one machine: split -> curate each shard (one worker/pod each, streaming,
bounded memory) -> merge (global exact and near-duplicate removal across shards, coverage counts summed).

A shard worker streams its JSONL records one by one and keeps only per-record summaries (a 64-bit text hash and a
MinHash signature of `num_perm` 64-bit values), so its memory grows with 8 * (num_perm + 1) bytes per record, not
with the text. The merge reads the summaries of every shard: exact duplicates are records with the same text hash
(the first in shard order is kept); near duplicates come from numpy LSH banding over the signatures (`bands` bands of
`num_perm / bands` rows), each candidate pair verified by its estimated Jaccard similarity >= `threshold`.

The KFP pipeline `curation-sharded` (pipelines/sharded_curation) runs `split_corpus`, then `curate_shard` in a
`dsl.ParallelFor` over the shards, then `merge_shards`; `benchmarks/curation_scale.py` measures it on 1M records.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medfoundry.curation.cleaning import NearDuplicateFilter, quality
from medfoundry.text.normalize import word_tokens

KEPT = "kept.jsonl"
SUMMARY = "summary.npz"
FIGURES = "figures.json"


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict | None, str]]:
    with Path(path).open(encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield line_no, None, f"invalid JSON: {err.msg}"
                continue
            yield line_no, row if isinstance(row, dict) else None, "" if isinstance(row, dict) else "not an object"


def split_corpus(corpus: Path, out_dir: Path, shards: int) -> list[str]:
    """Stream a JSONL corpus into `shards` files by a stable hash of each line (one line in memory at a time)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"shard-{i:04d}.jsonl" for i in range(shards)]
    handles = [p.open("w", encoding="utf-8") for p in paths]
    try:
        with Path(corpus).open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.strip():
                    digest = hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest()
                    handles[int.from_bytes(digest, "little") % shards].write(line)
    finally:
        for handle in handles:
            handle.close()
    return [str(p) for p in paths]


def curate_shard(
    shard: Path,
    out_dir: Path,
    min_quality: float = 0.3,
    num_perm: int = 32,
    shingle: int = 5,
    linker=None,
) -> dict:
    """Stream one shard: quality filter and in-shard exact dedup, kept records written as they come; text hashes,
    MinHash signatures and entity counts (with `linker`) kept for the merge. Returns the shard's figures."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    signer = NearDuplicateFilter(num_perm=num_perm, shingle=shingle)
    hashes: list[int] = []
    signatures: list[np.ndarray] = []
    ids: list[str] = []
    seen: set[int] = set()
    reasons: Counter = Counter()
    counts: Counter = Counter()
    batch: list[str] = []
    read = 0
    with (out_dir / KEPT).open("w", encoding="utf-8") as kept, (out_dir / "removed.jsonl").open(
        "w", encoding="utf-8"
    ) as removed:
        stem = Path(shard).stem
        for line_no, row, problem in _iter_jsonl(shard):
            read += 1
            record_id = str(row.get("id", f"{stem}:{line_no}")) if row else f"{stem}:{line_no}"
            text = str(row.get("text", "")) if row else ""
            reason = problem or ("empty text" if not text.strip() else "")
            tokens = word_tokens(text) if not reason else []  # once per record: quality, hash and MinHash share them
            if not reason and quality(text, "text", tokens).score < min_quality:
                reason = "low_quality"
            digest = _text_hash(tokens) if tokens and not reason else 0
            if not reason and digest in seen:
                reason = "exact_duplicate"
            if reason:
                reasons[reason] += 1
                removed.write(json.dumps({"id": record_id, "reason": reason}) + "\n")
                continue
            seen.add(digest)
            signature = signer.signature(text, tokens)
            hashes.append(digest)
            signatures.append(signature.astype(np.uint64))
            ids.append(record_id)
            kept.write(json.dumps({"id": record_id, "text": text}, ensure_ascii=False) + "\n")
            if linker is not None:
                batch.append(text)
                if len(batch) >= 2000:
                    counts.update(_entity_counts(linker, batch))
                    batch = []
    if linker is not None and batch:
        counts.update(_entity_counts(linker, batch))
    np.savez(
        out_dir / SUMMARY,
        hashes=np.asarray(hashes, dtype=np.uint64),
        signatures=np.vstack(signatures) if signatures else np.zeros((0, num_perm), dtype=np.uint64),
        ids=np.asarray(ids, dtype=object),
    )
    figures = {"read": read, "kept": len(ids), "removed": dict(reasons), "entity_counts": dict(counts)}
    (out_dir / FIGURES).write_text(json.dumps(figures, sort_keys=True))
    return figures


def _text_hash(tokens: list[str]) -> int:
    return int.from_bytes(hashlib.blake2b(" ".join(tokens).encode("utf-8"), digest_size=8).digest(), "little")


def _entity_counts(linker, texts: list[str]) -> Counter:
    matches = linker.find(texts)
    ids = linker.ids
    return Counter(ids[node] for node in matches.node.tolist())


def merge_shards(shard_dirs: list[Path], out_dir: Path, threshold: float = 0.8, bands: int = 8) -> dict:
    """Global exact and near-duplicate removal across shards and merged coverage counts; writes `global_removed.jsonl`
    and `figures.json` (counts reconcile: read = kept + removed per shard + removed globally)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = [np.load(Path(d) / SUMMARY, allow_pickle=True) for d in shard_dirs]
    shard_figures = [json.loads((Path(d) / FIGURES).read_text()) for d in shard_dirs]
    hashes = np.concatenate([s["hashes"] for s in summaries])
    signatures = np.concatenate([s["signatures"] for s in summaries])
    ids = np.concatenate([s["ids"] for s in summaries])
    drop = np.zeros(len(hashes), dtype=bool)
    reason: dict[int, tuple[str, str, float]] = {}
    # exact: same text hash in another shard -> keep the first (shard order)
    _, first = np.unique(hashes, return_index=True)
    exact = np.ones(len(hashes), dtype=bool)
    exact[first] = False
    first_of = dict(zip(hashes[first].tolist(), first.tolist(), strict=True))
    for i in np.flatnonzero(exact).tolist():
        drop[i] = True
        reason[i] = ("exact_duplicate", str(ids[first_of[int(hashes[i])]]), 1.0)
    # near: LSH banding; a record is dropped when an earlier kept record in one of its buckets is similar enough
    rows = signatures.shape[1] // bands if len(signatures) else 0
    for band in range(bands if rows else 0):
        keys = np.zeros(len(signatures), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for column in range(band * rows, (band + 1) * rows):  # one 64-bit key per band (polynomial hash)
                keys = keys * np.uint64(0x100000001B3) + signatures[:, column]
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.concatenate(([0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1))
        sizes = np.diff(np.concatenate((starts, [len(order)])))
        for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist(), strict=True):
            group = np.sort(order[start : start + size])
            for i in group[1:].tolist():
                if drop[i]:
                    continue
                for j in group.tolist():
                    if j >= i:
                        break
                    if drop[j]:
                        continue
                    similarity = float(np.mean(signatures[i] == signatures[j]))
                    if similarity >= threshold:
                        drop[i] = True
                        reason[i] = ("near_duplicate", str(ids[j]), round(similarity, 3))
                        break
    with (out_dir / "global_removed.jsonl").open("w", encoding="utf-8") as fh:
        for i in sorted(reason):
            kind, of, similarity = reason[i]
            fh.write(json.dumps({"id": str(ids[i]), "reason": kind, "duplicate_of": of, "jaccard": similarity}) + "\n")
    coverage: Counter = Counter()
    for figures in shard_figures:
        coverage.update(figures["entity_counts"])
    removed_in_shards: Counter = Counter()
    for figures in shard_figures:
        removed_in_shards.update(figures["removed"])
    global_reasons = Counter(kind for kind, _, _ in reason.values())
    result = {
        "shards": len(shard_dirs),
        "read": sum(f["read"] for f in shard_figures),
        "kept": int(len(hashes) - drop.sum()),
        "removed_in_shards": dict(removed_in_shards),
        "removed_across_shards": dict(global_reasons),
        "entities_mentioned": len(coverage),
        "entity_mentions": int(sum(coverage.values())),
        "top_entities": coverage.most_common(20),
    }
    removed_total = sum(removed_in_shards.values()) + sum(global_reasons.values())
    if result["read"] != result["kept"] + removed_total:
        raise RuntimeError(f"sharded curation lost records: {result}")  # a bug, never expected
    (out_dir / FIGURES).write_text(json.dumps(result, indent=2, sort_keys=True))
    return result
