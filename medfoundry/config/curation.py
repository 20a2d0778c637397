"""Profile section for the curate stage (entity tree, linking, cleaning, rebalancing, synthesis, features)."""

from __future__ import annotations

from pydantic import Field

from medfoundry.config.sections import Section


class CurationConfig(Section):
    # Ontology inputs beyond the PyPI-shipped ones (Disease Ontology folder with HumanDO.tsv / DO_rare_slim.obo ...).
    ontology_dir: str | None = None
    # Caps for the tiny profile: the tree is built from at most this many nodes per source (None: all).
    max_nodes_per_source: int | None = None
    min_quality: float = Field(0.3, ge=0.0, le=1.0)
    # Quality, exact and near-duplicate removal in this many shard processes, merged across shards
    # (medfoundry.curation.shards; 32-value MinHash, LSH banding); 1: in this process (128-value MinHash, datasketch).
    shards: int = Field(1, ge=1)
    near_duplicate_threshold: float = Field(0.8, gt=0.0, le=1.0)
    decontamination_ngram: int = Field(13, ge=3)
    # Decontaminate against every benchmark of the profile's evaluation (eval.benchmarks under eval.data_dir): text
    # n-grams, MinHash near duplicates (estimated Jaccard >= threshold) and image perceptual hashes (<= distance bits).
    decontaminate_benchmarks: bool = True
    decontamination_minhash_threshold: float = Field(0.7, gt=0.0, le=1.0)
    decontamination_image_distance: int = Field(4, ge=0, le=64)
    scrub_phi: bool = True
    # Reading user corpora: a record longer than this (characters) is quarantined as oversized.
    max_record_chars: int = Field(100_000, ge=100)
    # Normalized images are stored at most this many pixels on their long side.
    image_max_size: int = Field(512, ge=32)
    # Also decontaminate train records against the dataset's own holdout split (the recipe's held-out eval).
    decontaminate_holdout: bool = True
    # Near-duplicate detection skips texts shorter than this (words): short templated texts are not copies.
    near_duplicate_min_words: int = Field(8, ge=1)
    # Entity-aware resampling: weight ~ freq**(-temperature), capped at max_weight.
    rebalance_temperature: float = Field(0.5, ge=0.0, le=1.0)
    rebalance_max_weight: float = Field(10.0, ge=1.0)
    # Knowledge-centric synthesis for sparse/uncovered entities.
    synthesize: bool = True
    synthesis_max_entities: int = Field(200, ge=0)
    sparse_threshold: int = Field(2, ge=0)
    rewriter_endpoint: str | None = None
    rewriter_model: str | None = None
    feast: bool = True
