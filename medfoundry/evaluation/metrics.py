"""Per-item metrics and bootstrap confidence intervals (scipy.stats.bootstrap, percentile method)."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from medfoundry.tasks.extractors import normalize_text


def exact_match(prediction: str | None, gold: str) -> float:
    return float(prediction is not None and normalize_text(prediction) == normalize_text(gold))


def token_f1(prediction: str | None, gold: str) -> float:
    """SQuAD token F1 over normalized tokens; 1.0 when both are empty after normalization."""
    pred_tokens = normalize_text(prediction or "").split()
    gold_tokens = normalize_text(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str | None, gold: str) -> float:
    """ROUGE-L F-measure (Google's rouge-score, Porter stemming)."""
    if not prediction or not prediction.strip():
        return 0.0
    return float(_rouge_scorer().score(gold, prediction)["rougeL"].fmeasure)


def entity_scores(predicted: Iterable[str], reference: Iterable[str]) -> dict[str, float]:
    """Entity-level precision, recall, F1 and hallucination rate over sets of linked entity ids.

    hallucination_rate is the share of generated entities absent from the reference (0 when nothing was generated).
    Precision is 1 with nothing generated, recall is 1 with nothing to find, matching the usual set conventions.
    """
    pred, ref = set(predicted), set(reference)
    hits = len(pred & ref)
    precision = hits / len(pred) if pred else 1.0
    recall = hits / len(ref) if ref else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "entity_precision": precision,
        "entity_recall": recall,
        "entity_f1": f1,
        "hallucination_rate": (len(pred - ref) / len(pred)) if pred else 0.0,
    }


def bootstrap_ci(
    values: Sequence[float], n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; a single value (or none) gives a zero-width interval."""
    data = np.asarray([v for v in values if v is not None and not np.isnan(v)], dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"))
    if data.size == 1 or np.all(data == data[0]):
        return (float(data[0]), float(data[0]))
    from scipy.stats import bootstrap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bootstrap(
            (data,), np.mean, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
            random_state=np.random.default_rng(seed), vectorized=True,
        )
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def paired_delta_ci(
    base: Sequence[float], candidate: Sequence[float], n_resamples: int = 1000, seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, tuple[float, float]]:
    """Mean of candidate - base over the same items, with a paired percentile bootstrap interval."""
    a, b = np.asarray(base, dtype=float), np.asarray(candidate, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same items: {a.size} vs {b.size}")
    diff = b - a
    return float(diff.mean()) if diff.size else float("nan"), bootstrap_ci(diff, n_resamples, seed, confidence)
