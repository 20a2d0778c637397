from components.curate_shards.component import curate_shard, merge_shards, split_corpus

__all__ = ["curate_shard", "merge_shards", "split_corpus"]
