"""Entity-aware sampling weights: upweight records that mention infrequent entities.

An entity's weight is (record frequency / mean record frequency) ** (-temperature); a record's raw weight is the
largest weight among its entities (records without entities get the median raw weight, i.e. stay neutral); weights
are scaled to mean 1 and capped at `max_weight`. temperature 0 gives uniform weights, 1 full inverse frequency.
The report compares the entity distribution before and after weighting: rare-tier share, Shannon entropy, the
effective number of entities (2 ** entropy) and the effective sample size of the weights.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class RebalanceResult:
    weights: np.ndarray  # one per record, mean ~1
    report: dict  # flat figures: before_* / after_* and weight statistics

    def apply(self, records: Sequence[Any], key: str = "sample_weight") -> list[Any]:
        """Copies of pydantic records with meta[key] set to their weight."""
        return [
            record.model_copy(update={"meta": {**record.meta, key: round(float(w), 6)}})
            for record, w in zip(records, self.weights, strict=True)
        ]

    def resample(self, n: int, seed: int = 0) -> np.ndarray:
        """Indices of `n` records drawn with replacement in proportion to the weights."""
        rng = np.random.default_rng(seed)
        return rng.choice(len(self.weights), size=n, replace=True, p=self.weights / self.weights.sum())


def _mentions(item: Any) -> list[tuple[str, bool]]:
    mentions = getattr(item, "entities", item)
    out = []
    for mention in mentions:
        data = mention if isinstance(mention, dict) else mention.__dict__
        out.append((data["id"], bool(data.get("rare", False))))
    return out


def _distribution(per_record: list[list[tuple[str, bool]]], weights: np.ndarray) -> dict:
    mass: Counter = Counter()
    rare_ids = set()
    for mentions, weight in zip(per_record, weights, strict=True):
        for entity_id, rare in mentions:
            mass[entity_id] += float(weight)
            if rare:
                rare_ids.add(entity_id)
    total = sum(mass.values())
    if not total:
        return {"rare_share": 0.0, "entropy_bits": 0.0, "effective_entities": 0.0, "tail_share": 0.0}
    entropy = -sum(m / total * math.log2(m / total) for m in mass.values() if m > 0)
    # tail: entities at or below the median unweighted record frequency
    frequency = Counter(e for mentions in per_record for e in {e for e, _ in mentions})
    median = float(np.median(list(frequency.values())))
    tail = sum(m for e, m in mass.items() if frequency[e] <= median)
    return {
        "rare_share": round(sum(mass[e] for e in rare_ids) / total, 6),
        "entropy_bits": round(entropy, 4),
        "effective_entities": round(2**entropy, 2),
        "tail_share": round(tail / total, 6),
    }


def rebalance_weights(
    records: Iterable[Any],
    temperature: float = 0.5,
    max_weight: float = 10.0,
    include_negated: bool = True,
) -> RebalanceResult:
    """Sampling weights for `records` (objects with `.entities`, or lists of mentions) and a before/after report."""
    if not 0.0 <= temperature <= 1.0:
        raise ValueError(f"temperature must be in [0, 1], got {temperature}")
    if max_weight < 1.0:
        raise ValueError(f"max_weight must be >= 1, got {max_weight}")
    per_record = []
    for item in records:
        mentions = getattr(item, "entities", item)
        kept = [
            m for m in mentions if include_negated or not (m["negated"] if isinstance(m, dict) else m.negated)
        ]
        per_record.append(_mentions(kept))
    n = len(per_record)
    if n == 0:
        return RebalanceResult(np.zeros(0), {"records": 0})
    frequency = Counter(e for mentions in per_record for e in {e for e, _ in mentions})
    mean_frequency = float(np.mean(list(frequency.values()))) if frequency else 1.0
    raw = np.full(n, np.nan)
    for i, mentions in enumerate(per_record):
        if mentions:
            raw[i] = max((frequency[e] / mean_frequency) ** (-temperature) for e, _ in mentions)
    neutral = float(np.nanmedian(raw)) if np.isfinite(raw).any() else 1.0
    raw = np.where(np.isnan(raw), neutral, raw)
    weights = np.minimum(raw / raw.mean(), max_weight)
    before = _distribution(per_record, np.ones(n))
    after = _distribution(per_record, weights)
    report = {
        "records": n,
        "records_with_entities": int(sum(1 for m in per_record if m)),
        "distinct_entities": len(frequency),
        "temperature": temperature,
        "max_weight": max_weight,
        "weight_min": round(float(weights.min()), 6),
        "weight_max": round(float(weights.max()), 6),
        "weight_mean": round(float(weights.mean()), 6),
        "capped_records": int((raw / raw.mean() >= max_weight).sum()),
        "effective_sample_size": round(float(weights.sum() ** 2 / (weights**2).sum()), 2),
        **{f"before_{k}": v for k, v in before.items()},
        **{f"after_{k}": v for k, v in after.items()},
    }
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and mlflow.active_run() is not None:
        mlflow.log_metrics({f"rebalance.{k}": float(v) for k, v in report.items()})
    return RebalanceResult(weights, report)
