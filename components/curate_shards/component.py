"""Curate shards: the sharded curation steps (split a JSONL corpus, curate one shard, merge across shards); the logic
is `medfoundry.curation.shards`, these components only plumb artifact paths."""

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
