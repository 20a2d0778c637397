"""Compare two evaluation folders of two model versions: per-benchmark deltas with paired bootstrap intervals."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from medfoundry.evaluation.metrics import paired_delta_ci
from medfoundry.evaluation.runner import PREDICTIONS

COMPARISON = "comparison.json"
COMPARISON_REPORT = "comparison.html"


def compare_runs(
    base_dir: Path, candidate_dir: Path, n_resamples: int = 1000, seed: int = 0, out_dir: Path | None = None
) -> dict[str, Any]:
    """Pair items by (benchmark, id) and bootstrap the mean score difference candidate − base.

    Only items present in both runs count, so a different --limit or an excluded item never biases the delta.
    Benchmarks scored with different protocols raise ProtocolError: their scores are not comparable."""
    import pandas as pd

    from medfoundry.evaluation.loglikelihood import check_same_protocol
    from medfoundry.evaluation.report import load_summary, render_comparison, render_report

    base_dir, candidate_dir = Path(base_dir), Path(candidate_dir)
    result: dict[str, Any] = {"base": str(base_dir), "candidate": str(candidate_dir), "benchmarks": {}}
    base_names = {p.parent.name for p in base_dir.glob(f"*/{PREDICTIONS}")}
    cand_names = {p.parent.name for p in candidate_dir.glob(f"*/{PREDICTIONS}")}
    for name in sorted(base_names & cand_names):
        check_same_protocol(_protocol(base_dir, name), _protocol(candidate_dir, name), f"{name} results")
        a = pd.read_parquet(base_dir / name / PREDICTIONS)[["id", "score"]]
        b = pd.read_parquet(candidate_dir / name / PREDICTIONS)[["id", "score"]]
        paired = a.merge(b, on="id", suffixes=("_base", "_cand")).dropna()
        if paired.empty:
            result["benchmarks"][name] = {
                "base": None, "candidate": None, "delta": None, "delta_ci95": [None, None], "n_paired": 0,
                "significant": False,
            }
            continue
        delta, (lo, hi) = paired_delta_ci(paired["score_base"], paired["score_cand"], n_resamples, seed)
        result["benchmarks"][name] = {
            "base": float(paired["score_base"].mean()),
            "candidate": float(paired["score_cand"].mean()),
            "delta": delta,
            "delta_ci95": [lo, hi],
            "n_paired": len(paired),
            "significant": not (math.isnan(lo) or lo <= 0 <= hi),
        }
    result["only_in_base"] = sorted(base_names - cand_names)
    result["only_in_candidate"] = sorted(cand_names - base_names)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / COMPARISON).write_text(json.dumps(result, indent=2, sort_keys=True))
        try:
            page = render_report(load_summary(candidate_dir), result)
        except FileNotFoundError:
            page = f"<!doctype html><html><body>{render_comparison(result)}</body></html>"
        (out_dir / COMPARISON_REPORT).write_text(page, encoding="utf-8")
    return result


def _protocol(eval_dir: Path, name: str) -> str:
    from medfoundry.evaluation.runner import RESULTS

    path = eval_dir / name / RESULTS
    return json.loads(path.read_text()).get("protocol", "generative") if path.is_file() else "generative"
