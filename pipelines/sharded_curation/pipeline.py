"""Sharded curation: split a JSONL corpus into shards, curate each shard in its own task/pod (`dsl.ParallelFor`),
then remove exact and near duplicates across shards and merge coverage (medfoundry.curation.shards)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from medfoundry.images import component_image


@dsl.component(base_image=component_image("cpu"), install_kfp_package=False)
def split_corpus(corpus: str, shards: int, shard_root: Output[Dataset]) -> list:
    from medfoundry.curation.shards import split_corpus as split

    split(corpus, shard_root.path, shards)
    return list(range(shards))


@dsl.component(base_image=component_image("cpu"), install_kfp_package=False)
def curate_shard(shard_root: Input[Dataset], shard: int, min_quality: float, curated_shard: Output[Dataset]) -> str:
    from pathlib import Path

    from medfoundry.curation.shards import curate_shard as curate

    curate(Path(shard_root.path) / f"shard-{shard:04d}.jsonl", curated_shard.path, min_quality=min_quality)
    return curated_shard.path


@dsl.component(base_image=component_image("cpu"), install_kfp_package=False)
def merge_shards(shard_dirs: list, threshold: float, merged: Output[Dataset]) -> dict:
    from medfoundry.curation.shards import merge_shards as merge

    return merge(shard_dirs, merged.path, threshold=threshold)


@dsl.pipeline(name="curation-sharded", description="Curation fanned out over input shards, merged globally.")
def curation_sharded(corpus: str, shards: int = 4, min_quality: float = 0.3, threshold: float = 0.8) -> dict:
    split = split_corpus(corpus=corpus, shards=shards)
    with dsl.ParallelFor(split.outputs["Output"]) as shard:
        task = curate_shard(shard_root=split.outputs["shard_root"], shard=shard, min_quality=min_quality)
    merge = merge_shards(shard_dirs=dsl.Collected(task.outputs["Output"]), threshold=threshold)
    return merge.outputs["Output"]
