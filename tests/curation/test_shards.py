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


def test_recipe_curate_stage_cleans_in_shards_when_the_profile_asks(workspace, tmp_path):
    """The recipe pipeline's curate stage (`run_stage`) with `curation.shards` (production-7b ships 16) removes
    duplicates across shards and low-quality text through the sharded path, with reasons naming the copy."""
    import yaml
    from PIL import Image

    from medfoundry import tracking
    from medfoundry.config import load_profile
    from medfoundry.data.records import Record, read_jsonl, write_jsonl
    from medfoundry.entities.tree import EntityTree, cache_key
    from medfoundry.pipeline import stages
    from medfoundry.workspace import Workspace

    assert load_profile("production-7b").curation.shards > 1  # the shipped profile turns it on
    # PHI scrubbing, synthesis and Feast run before or after the cleaning and do not change with sharding: left out
    # to keep this test quick
    overrides = {"curation.shards": 3, "curation.scrub_phi": False, "curation.synthesize": False, "curation.feast": False}
    profile = load_profile("tiny", overrides)
    cache = Workspace.resolve(profile.workspace).cache / "entity_tree"
    rows = [{"id": "D:pneumonia", "name": "Pneumonia", "kind": "disease"}]
    EntityTree.from_rows(rows).save(cache / cache_key(profile.curation.ontology_dir, profile.curation.max_nodes_per_source))
    folder = tmp_path / "validated"
    (folder / "images").mkdir(parents=True)
    for name, shade in (("a.png", 40), ("b.png", 200)):
        Image.new("L", (32, 32), shade).save(folder / "images" / name)
    rng = random.Random(3)
    notes = [" ".join(rng.choice(WORDS) for _ in range(40)).capitalize() + "." for _ in range(24)]
    near = notes[5].split()
    near[-1] = "discharged."
    caption = "Frontal chest radiograph of an adult patient with a right lower lobe opacity."
    records = [Record(id=f"note-{i}", source="user:notes", kind="text", text=t) for i, t in enumerate(notes)]
    records += [
        Record(id="copy-of-note-3", source="user:forum", kind="text", text=notes[3].upper().replace(" ", "  ")),
        Record(id="near-note-5", source="user:forum", kind="text", text=" ".join(near)),
        Record(id="junk", source="user:scrape", kind="text", text="$$$ ### !!! @@@ " * 10),
        Record(id="cap-a", source="user:pacs", kind="caption", text=caption, image="images/a.png"),
        Record(id="cap-b", source="user:pacs", kind="caption", text=caption, image="images/b.png"),
    ]
    write_jsonl(folder / "records.jsonl", records)
    parent = tracking.start_pipeline_run(profile, "medical-mllm-recipe", "sharded-curate-test")
    out = tmp_path / "curated"
    figures = stages.run_stage(
        "curate", yaml.safe_dump(profile.model_dump(mode="json")), parent,
        paths={"validated_data": str(folder), "curated_data": str(out)},
    )
    assert figures["curation_shards"] == 3
    removed = {row["id"]: row for row in read_jsonl(out / "removed.jsonl")}
    pair = {"note-3", "copy-of-note-3"}
    copy = removed[next(iter(pair & set(removed)))]  # whichever of the two comes later in shard order
    assert copy["reason"] == "exact_duplicate" and {copy["id"], copy["duplicate_of"]} == pair
    pair = {"note-5", "near-note-5"}
    near_row = removed[next(iter(pair & set(removed)))]
    assert near_row["reason"] == "near_duplicate" and {near_row["id"], near_row["duplicate_of"]} == pair
    assert near_row["jaccard"] >= profile.curation.near_duplicate_threshold
    assert removed["junk"]["reason"] == "low_quality" and removed["junk"]["quality"] < profile.curation.min_quality
    kept = {row["id"]: row for row in read_jsonl(out / "records.jsonl")}
    assert {"cap-a", "cap-b"} <= set(kept)  # one caption on two different images is not a duplicate
    assert all(0.3 <= row["meta"]["quality"] <= 1.0 for row in kept.values())
    assert figures["input"] == figures["kept"] + figures["removed"] + figures["quarantined"]
    assert figures["removed/exact_duplicate"] == 1 and figures["removed/near_duplicate"] == 1
