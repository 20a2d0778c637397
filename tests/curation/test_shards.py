"""Sharded curation: per-shard streaming workers, global exact and near-duplicate removal, the ParallelFor pipeline."""

from __future__ import annotations

import json
import random

from medfoundry.curation.shards import curate_shard, merge_shards, split_corpus

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
