"""Sharded curation: split a JSONL corpus into shards, curate each shard in its own task/pod (`dsl.ParallelFor`),
then remove exact and near duplicates across shards and merge coverage (components/curate_shards ->
medfoundry.curation.shards)."""

from kfp import dsl

from components.curate_shards import curate_shard, merge_shards, split_corpus


@dsl.pipeline(name="curation-sharded", description="Curation fanned out over input shards, merged globally.")
def curation_sharded(corpus: str, shards: int = 4, min_quality: float = 0.3, threshold: float = 0.8) -> dict:
    split = split_corpus(corpus=corpus, shards=shards)
    with dsl.ParallelFor(split.outputs["Output"]) as shard:
        task = curate_shard(shard_root=split.outputs["shard_root"], shard=shard, min_quality=min_quality)
    merge = merge_shards(shard_dirs=dsl.Collected(task.outputs["Output"]), threshold=threshold)
    return merge.outputs["Output"]
