"""Sharded curation for corpora larger than one machine: split -> curate each shard (one worker/pod each, streaming,
bounded memory) -> merge (global exact and near-duplicate removal across shards, coverage counts summed).

A shard worker streams its JSONL records one by one and keeps only per-record summaries (a 64-bit text hash and a
MinHash signature of `num_perm` 32-bit values), so its memory grows with 4 * num_perm + 8 bytes per record, not
with the text. The merge reads the summaries of every shard: exact duplicates are records with the same text hash
(the first in shard order is kept); near duplicates come from numpy LSH banding over the signatures (`bands` bands of
`num_perm / bands` rows), each candidate pair verified by its estimated Jaccard similarity >= `threshold`.

The KFP pipeline `curation-sharded` (pipelines/sharded_curation) runs `split_corpus`, then `curate_shard` in a
`dsl.ParallelFor` over the shards, then `merge_shards`; `benchmarks/curation_scale.py` measures it on 1M records.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from medfoundry.curation.cleaning import NearDuplicateFilter, Removal, quality, record_text
from medfoundry.data.records import Record
from medfoundry.text.normalize import word_tokens

KEPT = "kept.jsonl"
REMOVED = "removed.jsonl"
GLOBAL_REMOVED = "global_removed.jsonl"
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
    MinHash signatures and entity counts (with `linker`) kept for the merge. Returns the shard's figures.

    A row is {"id", "text"} and optionally "kind" (the quality rules' record kind, default "text"), "image_digest"
    (part of the exact-duplicate key: one caption on two images is not a copy) and "near_dedup" (false: left out of
    near-duplicate removal, as the recipe does for image records and short texts)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    signer = NearDuplicateFilter(num_perm=num_perm, shingle=shingle)
    hashes: list[int] = []
    signatures: list[np.ndarray] = []
    ids: list[str] = []
    near: list[bool] = []
    seen: dict[int, int] = {}  # text hash -> position of the kept record in `ids`
    reasons: Counter = Counter()
    counts: Counter = Counter()
    batch: list[str] = []
    read = 0
    with (out_dir / KEPT).open("w", encoding="utf-8") as kept, (out_dir / REMOVED).open(
        "w", encoding="utf-8"
    ) as removed:
        stem = Path(shard).stem
        for line_no, row, problem in _iter_jsonl(shard):
            read += 1
            row = row or {}
            record_id = str(row.get("id", f"{stem}:{line_no}"))
            text = str(row.get("text", ""))
            detail: dict = {}
            reason = problem or ("empty text" if not text.strip() else "")
            tokens = word_tokens(text) if not reason else []  # once per record: quality, hash and MinHash share them
            score = quality(text, str(row.get("kind", "text")), tokens) if not reason else None
            if score is not None and score.score < min_quality:
                reason, detail = "low_quality", {"quality": score.score, "problems": score.problems}
            digest = _text_hash(tokens, str(row.get("image_digest") or "")) if tokens and not reason else 0
            if not reason and digest in seen:
                reason, detail = "exact_duplicate", {"duplicate_of": ids[seen[digest]]}
            if reason:
                reasons[reason] += 1
                removed.write(json.dumps({"id": record_id, "reason": reason, **detail}) + "\n")
                continue
            seen[digest] = len(ids)
            signature = signer.signature(text, tokens)
            hashes.append(digest)
            # the signer's values are the high 32 bits of a 64-bit multiply-shift hash: 32 bits hold them exactly and
            # halve what the merge compares
            signatures.append(signature.astype(np.uint32))
            ids.append(record_id)
            near.append(bool(row.get("near_dedup", True)))
            kept.write(json.dumps({"id": record_id, "text": text, "quality": score.score}, ensure_ascii=False) + "\n")
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
        signatures=np.vstack(signatures) if signatures else np.zeros((0, num_perm), dtype=np.uint32),
        ids=np.asarray(ids, dtype=str),
        near=np.asarray(near, dtype=bool),
    )
    figures = {"read": read, "kept": len(ids), "removed": dict(reasons), "entity_counts": dict(counts)}
    (out_dir / FIGURES).write_text(json.dumps(figures, sort_keys=True))
    return figures


def _text_hash(tokens: list[str], image_digest: str = "") -> int:
    key = " ".join(tokens) + (f"\x00{image_digest}" if image_digest else "")
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


def _entity_counts(linker, texts: list[str]) -> Counter:
    matches = linker.find(texts)
    ids = linker.ids
    return Counter(ids[node] for node in matches.node.tolist())


def merge_shards(
    shard_dirs: list[Path], out_dir: Path, threshold: float = 0.8, bands: int = 8, workers: int = 1
) -> dict:
    """Global exact and near-duplicate removal across shards and merged coverage counts; writes `global_removed.jsonl`
    and `figures.json` (counts reconcile: read = kept + removed per shard + removed globally).

    Records are numbered in shard order. Exact: of the records sharing a text hash, the first is kept. Near: band by
    band, within each LSH bucket in record order, a record is removed when an earlier record of its bucket that is
    still kept has estimated Jaccard >= `threshold` (the first such record is named). All of it is array work: band
    keys, buckets by a stable sort, candidate pairs by offset within a bucket, similarity of all pairs at once; only
    the pairs that pass are resolved in order (a record removed earlier in the band cannot remove a later one).
    `workers` > 1 verifies the candidate pairs of each band in that many processes, the buckets split by key range
    (buckets are disjoint, so the result is the same as with one)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = [np.load(Path(d) / SUMMARY) for d in shard_dirs]
    shard_figures = [json.loads((Path(d) / FIGURES).read_text()) for d in shard_dirs]
    hashes = np.concatenate([s["hashes"] for s in summaries])
    signatures = np.concatenate([s["signatures"] for s in summaries])
    ids = np.concatenate([s["ids"] for s in summaries]).astype(str)
    duplicate_of = np.full(len(hashes), -1, dtype=np.int64)
    similarity = np.ones(len(hashes))
    # exact: np.unique's return_index is the first occurrence of each hash
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    first_of = first[inverse.reshape(-1)]
    exact = first_of != np.arange(len(hashes))
    duplicate_of[exact] = first_of[exact]
    eligible = np.concatenate([s["near"] if "near" in s.files else np.ones(len(s["ids"]), bool) for s in summaries])
    near = _near_duplicates(signatures, ~exact & eligible, threshold, bands, workers)
    for i, (j, value) in near.items():
        duplicate_of[i] = j
        similarity[i] = value
    removed = np.flatnonzero(duplicate_of >= 0)
    with (out_dir / GLOBAL_REMOVED).open("w", encoding="utf-8") as fh:
        for i, j, value, is_exact in zip(
            removed.tolist(), duplicate_of[removed].tolist(), similarity[removed].tolist(), exact[removed].tolist(),
            strict=True,
        ):
            kind = "exact_duplicate" if is_exact else "near_duplicate"
            row = {"id": str(ids[i]), "reason": kind, "duplicate_of": str(ids[j]), "jaccard": round(value, 3)}
            fh.write(json.dumps(row) + "\n")
    coverage: Counter = Counter()
    removed_in_shards: Counter = Counter()
    for figures in shard_figures:
        coverage.update(figures["entity_counts"])
        removed_in_shards.update(figures["removed"])
    global_reasons = Counter({"exact_duplicate": int(exact.sum()), "near_duplicate": len(near)})
    global_reasons = +global_reasons  # drop zero counts
    result = {
        "shards": len(shard_dirs),
        "read": sum(f["read"] for f in shard_figures),
        "kept": int(len(hashes) - len(removed)),
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


_KEY_MULT = np.uint64(0x100000001B3)
_PAIR_CHUNK = 1 << 20  # candidate pairs compared at once: 32 MB of booleans at 32 values per signature
_OFFSETS = 32  # pairs up to this far apart in a bucket are taken over all buckets at once
_PARALLEL_MIN = 50_000  # bucket members in a band below which starting worker processes costs more than it saves


def _near_duplicates(
    signatures: np.ndarray, alive: np.ndarray, threshold: float, bands: int, workers: int
) -> dict[int, tuple[int, float]]:
    """{removed record: (the earlier kept record it copies, estimated Jaccard)}, band after band."""
    rows = signatures.shape[1] // bands if len(signatures) else 0
    alive = alive.copy()
    found: dict[int, tuple[int, float]] = {}
    pool = None
    try:
        for band in range(bands if rows else 0):
            keys = np.zeros(len(signatures), dtype=np.uint64)
            with np.errstate(over="ignore"):
                for column in range(band * rows, (band + 1) * rows):  # one 64-bit key per band (polynomial hash)
                    keys = keys * _KEY_MULT + signatures[:, column]
            members = np.flatnonzero(alive)
            order = members[np.argsort(keys[members], kind="stable")]  # by key, then by record number
            sorted_keys = keys[order]
            shared = np.zeros(len(order), dtype=bool)  # members of a bucket of two or more
            if len(order) > 1:
                same = sorted_keys[1:] == sorted_keys[:-1]
                shared[1:] |= same
                shared[:-1] |= same
            if pool is None and workers > 1 and np.count_nonzero(shared) >= _PARALLEL_MIN:
                pool = ProcessPoolExecutor(max_workers=workers)
            pairs = _similar_pairs(order[shared], sorted_keys[shared], signatures, threshold, pool, workers)
            for i, (j, value) in _resolve(*pairs).items():
                found[i] = (j, value)
                alive[i] = False
    finally:
        if pool is not None:
            pool.shutdown()
    return found


def _similar_pairs(order, sorted_keys, signatures, threshold, pool, workers):
    """(earlier, later, similarity) of every pair in one bucket with similarity >= threshold."""
    if pool is None or len(order) < 2 * workers:
        return _bucket_pairs(order, sorted_keys, signatures, threshold)
    # split at bucket boundaries into `workers` key ranges of about equal work: a bucket of s members holds
    # s(s-1)/2 pairs, so each member counts (s-1)/2
    starts = np.concatenate(([0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1))
    sizes = np.diff(np.concatenate((starts, [len(order)])))
    work = np.cumsum(sizes * (sizes - 1) / 2)
    cuts = [0]
    for part in range(1, workers):
        bucket = int(np.searchsorted(work, work[-1] * part / workers))
        cuts.append(max(int(starts[bucket]) if bucket < len(starts) else len(order), cuts[-1]))
    cuts.append(len(order))
    jobs = [
        pool.submit(_bucket_pairs, order[a:b], sorted_keys[a:b], signatures[order[a:b]], threshold, True)
        for a, b in zip(cuts[:-1], cuts[1:], strict=True)
        if b > a
    ]
    parts = [job.result() for job in jobs]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def _bucket_pairs(order, sorted_keys, signatures, threshold, local=False):
    """Every pair of one bucket with similarity >= threshold, as (earlier, later, similarity). `signatures` is indexed
    by position in `order` when `local` (a worker gets only its rows), else by record number.

    Pairs (p, p + d) for offsets d up to `_OFFSETS` over all buckets at once; the few buckets larger than that (a
    sentence shared by hundreds of records fills one) compare their remaining pairs as blocks, one bucket at a time."""
    n = len(order)
    empty = np.zeros(0, dtype=np.int64)
    earlier, later, values = [empty], [empty], [np.zeros(0)]
    if n < 2:
        return empty, empty, np.zeros(0)
    starts = np.concatenate(([0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1))
    sizes = np.diff(np.concatenate((starts, [n])))
    size_of = np.repeat(sizes, sizes)
    rank = np.arange(n) - np.repeat(starts, sizes)
    rows = np.arange(n) if local else order
    width = signatures.shape[1]

    def keep(a: np.ndarray, b: np.ndarray, value: np.ndarray) -> None:
        hit = value >= threshold
        earlier.append(order[a[hit]])
        later.append(order[b[hit]])
        values.append(value[hit])

    positions = np.flatnonzero(rank < size_of - 1)  # every member but the last of a bucket of 2 or more
    for offset in range(1, _OFFSETS + 1):
        positions = positions[rank[positions] + offset < size_of[positions]]
        for chunk in range(0, len(positions), _PAIR_CHUNK):
            p = positions[chunk : chunk + _PAIR_CHUNK]
            same = signatures[rows[p]] == signatures[rows[p + offset]]
            keep(p, p + offset, np.count_nonzero(same, axis=1) / width)
    for start, size in zip(starts[sizes > _OFFSETS + 1].tolist(), sizes[sizes > _OFFSETS + 1].tolist(), strict=True):
        block = signatures[rows[start : start + size]]
        step = max(1, _PAIR_CHUNK // size)
        for first in range(0, size - _OFFSETS - 1, step):
            a = np.arange(first, min(first + step, size - _OFFSETS - 1))
            counts = np.count_nonzero(block[a, None, :] == block[None, first + _OFFSETS + 1 :, :], axis=2)
            b = np.arange(first + _OFFSETS + 1, size)
            far = b[None, :] - a[:, None] > _OFFSETS
            pa, pb = np.nonzero(far)
            keep(start + a[pa], start + b[pb], counts[pa, pb] / width)
    return np.concatenate(earlier), np.concatenate(later), np.concatenate(values)


def _resolve(earlier: np.ndarray, later: np.ndarray, values: np.ndarray) -> dict[int, tuple[int, float]]:
    """In record order: a record is removed by the first earlier record of a similar pair that is not itself removed
    in this band."""
    by = np.lexsort((earlier, later))
    removed: dict[int, tuple[int, float]] = {}
    for j, i, value in zip(earlier[by].tolist(), later[by].tolist(), values[by].tolist(), strict=True):
        if i not in removed and j not in removed:
            removed[i] = (j, value)
    return removed


def clean_in_shards(
    records: list[Record],
    image_digests: dict[str, str],
    work_dir: Path,
    shards: int,
    min_quality: float,
    threshold: float,
    min_words: int,
) -> tuple[list[Record], list[Removal]]:
    """The recipe's cleaning (quality, exact and near-duplicate removal) through the sharded path: records are
    split by a stable hash of their id into `shards` files, each curated in its own process (as many at once as
    there are CPUs), then merged across shards. Returns (kept records in input order, with `meta.quality`;
    removals with their reasons). As in one process, image records and texts under `min_words` words are left to
    exact dedup, and the exact key includes the image digest."""
    work_dir = Path(work_dir)
    (work_dir / "in").mkdir(parents=True, exist_ok=True)
    paths = [work_dir / "in" / f"shard-{i:04d}.jsonl" for i in range(shards)]
    handles = [path.open("w", encoding="utf-8") for path in paths]
    try:
        for position, record in enumerate(records):
            text = record_text(record)
            row = {
                "id": str(position),  # ids need not be unique here; positions are
                "text": text,
                "kind": record.kind,
                "image_digest": image_digests.get(record.id),
                "near_dedup": not record.image and len(text.split()) >= min_words,
            }
            digest = hashlib.blake2b(record.id.encode("utf-8"), digest_size=8).digest()
            handles[int.from_bytes(digest, "little") % shards].write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        for handle in handles:
            handle.close()
    outs = [work_dir / f"out-{i:04d}" for i in range(shards)]
    # spawn, not fork: the stage process holds threads (MLflow, tokenizers) that a forked child must not inherit
    with ProcessPoolExecutor(
        max_workers=min(shards, os.cpu_count() or 1), mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        list(pool.map(curate_shard, paths, outs, [min_quality] * shards))
    merge_shards(outs, work_dir / "merged", threshold=threshold)
    removals: list[Removal] = []
    gone: set[int] = set()
    for path in [out / REMOVED for out in outs] + [work_dir / "merged" / GLOBAL_REMOVED]:
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            position = int(row.pop("id"))
            reason = row.pop("reason")
            if reason == "empty text":  # what quality() calls an empty record in one process
                reason, row = "low_quality", {"quality": 0.0, "problems": ["empty"]}
            if "duplicate_of" in row:
                row["duplicate_of"] = records[int(row["duplicate_of"])].id
            gone.add(position)
            removals.append(Removal(records[position], reason, row))
    scores = {}
    for out in outs:
        for line in (out / KEPT).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            scores[int(row["id"])] = row["quality"]
    kept = []
    for position, record in enumerate(records):
        if position not in gone:
            record.meta["quality"] = scores[position]
            kept.append(record)
    return kept, removals
