"""Sharded curation: per-shard streaming workers, global exact and near-duplicate removal, the ParallelFor pipeline."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from medfoundry.curation import shards
from medfoundry.curation.shards import FIGURES, SUMMARY, curate_shard, merge_shards, split_corpus

WORDS = (
    "patient presented with fever cough and shortness of breath chest radiograph showed right lower lobe "
    "consolidation treated with antibiotics improved over three days discharged home with follow up in clinic "
    "blood pressure was normal heart rate elevated oxygen saturation ninety two percent on room air"
).split()


def _corpus(path, n=240, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append({"id": f"r{i}", "text": " ".join(rng.choice(WORDS) for _ in range(40)).capitalize() + "."})
    rows.append({"id": "copy-of-r3", "text": rows[3]["text"]})  # exact duplicate, lands in another shard (or not)
    near = rows[5]["text"].split()
    near[-1] = "discharged."
    rows.append({"id": "near-r5", "text": " ".join(near)})
    rows.append({"id": "junk", "text": "$$$ ### !!! " * 20})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    return len(rows) + 1


def test_shards_stream_and_merge_remove_duplicates_across_shards(tmp_path):
    total = _corpus(tmp_path / "corpus.jsonl")
    shards = split_corpus(tmp_path / "corpus.jsonl", tmp_path / "shards", 3)
    assert len(shards) == 3
    dirs = []
    for i, shard in enumerate(shards):
        curate_shard(shard, tmp_path / f"out-{i}")
        dirs.append(tmp_path / f"out-{i}")
    result = merge_shards(dirs, tmp_path / "merged", threshold=0.8)
    removed = [json.loads(line) for line in (tmp_path / "merged" / "global_removed.jsonl").read_text().splitlines()]
    for d in dirs:
        removed += [json.loads(line) for line in (d / "removed.jsonl").read_text().splitlines()]
    by_id = {row["id"]: row["reason"] for row in removed}
    assert by_id.get("copy-of-r3") == "exact_duplicate" or by_id.get("r3") == "exact_duplicate"
    assert by_id.get("near-r5") == "near_duplicate" or by_id.get("r5") == "near_duplicate"
    assert by_id["junk"] == "low_quality"
    assert result["read"] == total and result["read"] == result["kept"] + len(removed)


def _sequential_merge(hashes, signatures, threshold=0.8, bands=8):
    """The merge as it was before it was vectorized (a Python loop over LSH buckets): the reference result."""
    drop = np.zeros(len(hashes), dtype=bool)
    reason = {}
    _, first = np.unique(hashes, return_index=True)
    first_of = dict(zip(hashes[first].tolist(), first.tolist(), strict=True))
    for i in range(len(hashes)):
        if first_of[int(hashes[i])] != i:
            drop[i] = True
            reason[i] = ("exact_duplicate", first_of[int(hashes[i])], 1.0)
    rows = signatures.shape[1] // bands
    for band in range(bands):
        keys = np.zeros(len(signatures), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for column in range(band * rows, (band + 1) * rows):
                keys = keys * np.uint64(0x100000001B3) + signatures[:, column]
        buckets = {}
        for i, key in enumerate(keys.tolist()):
            buckets.setdefault(key, []).append(i)
        for group in buckets.values():
            for i in group[1:]:
                if drop[i]:
                    continue
                for j in group:
                    if j >= i:
                        break
                    similarity = float(np.mean(signatures[i] == signatures[j]))
                    if not drop[j] and similarity >= threshold:
                        drop[i] = True
                        reason[i] = ("near_duplicate", j, round(similarity, 3))
                        break
    return reason


def _variants_corpus(path, bases=40, copies=12, seed=1):
    """Clusters of near copies: each base text of 100 words with up to 3 words changed, so buckets hold many members
    and a copy can be similar to a second copy but not to a third."""
    rng = random.Random(seed)
    rows = []
    for b in range(bases):
        base = [rng.choice(WORDS) for _ in range(100)]
        for c in range(copies):
            words = list(base)
            for _ in range(rng.randint(0, 3)):
                words[rng.randrange(len(words))] = rng.choice(WORDS)
            rows.append({"id": f"b{b}c{c}", "text": " ".join(words).capitalize() + "."})
    rng.shuffle(rows)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.mark.parametrize("workers, offsets", [(1, 32), (1, 2), (2, 2)])
def test_vectorized_merge_removes_the_same_records_as_the_sequential_merge(tmp_path, monkeypatch, workers, offsets):
    # offsets=2: buckets of more than 3 members take the block path (large buckets) for their farther pairs
    monkeypatch.setattr(shards, "_OFFSETS", offsets)
    monkeypatch.setattr(shards, "_PARALLEL_MIN", 0)  # the worker processes even on a small corpus
    _variants_corpus(tmp_path / "corpus.jsonl")
    dirs = []
    for i, shard in enumerate(split_corpus(tmp_path / "corpus.jsonl", tmp_path / "shards", 4)):
        curate_shard(shard, tmp_path / f"out-{i}", min_quality=0.0)
        dirs.append(tmp_path / f"out-{i}")
    summaries = [np.load(d / SUMMARY) for d in dirs]
    ids = np.concatenate([s["ids"] for s in summaries]).astype(str)
    expected = _sequential_merge(
        np.concatenate([s["hashes"] for s in summaries]), np.concatenate([s["signatures"] for s in summaries])
    )
    result = merge_shards(dirs, tmp_path / "merged", workers=workers)
    rows = [json.loads(line) for line in (tmp_path / "merged" / "global_removed.jsonl").read_text().splitlines()]
    got = {row["id"]: (row["reason"], row["duplicate_of"], row["jaccard"]) for row in rows}
    assert got == {str(ids[i]): (kind, str(ids[j]), value) for i, (kind, j, value) in expected.items()}
    # the corpus exercises the order of removal: many near copies, and copies removed in one band as a copy of a
    # record that a later band removes (the vectorized resolution must follow the same band and record order)
    near = [r for r in rows if r["reason"] == "near_duplicate"]
    assert len(near) > 150 and result["removed_across_shards"]["near_duplicate"] == len(near)
    assert sum(r["duplicate_of"] in got for r in near) > 20
    figures = [json.loads((d / FIGURES).read_text()) for d in dirs]
    assert result["kept"] == sum(f["kept"] for f in figures) - len(rows)


def test_pipeline_fans_out_with_parallel_for_and_runs_locally(tmp_path, workspace):
    from kfp import compiler, local

    from pipelines.sharded_curation.pipeline import curation_sharded

    package = tmp_path / "curation_sharded.yaml"
    compiler.Compiler().compile(curation_sharded, str(package))
    ir = package.read_text()
    assert "parallelFor" in ir or "iteratorPolicy" in ir or "for-loop" in ir
    _corpus(tmp_path / "corpus.jsonl", n=60)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    run = curation_sharded(corpus=str(tmp_path / "corpus.jsonl"), shards=3)
    figures = run.output
    assert figures["shards"] == 3 and figures["read"] == 64
    assert figures["removed_in_shards"].get("low_quality") == 1
    assert sum(figures["removed_across_shards"].values()) + sum(figures["removed_in_shards"].values()) >= 3
