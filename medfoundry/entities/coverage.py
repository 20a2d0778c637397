"""Entity coverage of a corpus against the MET: counts per node (propagated to ancestors), coverage by kind, depth and
rarity, forward/backward coverage against a reference entity set, sparse and uncovered nodes, and plots.

Definitions (all over linkable nodes):
- a node is *covered* when the corpus mentions it directly at least once; *sparse* when 1 <= mentions <= threshold;
- *frequency tier*: uncovered (0), sparse (<= threshold), common (<= 10 x threshold), frequent (more);
- *forward coverage* = share of the reference entities the corpus mentions (does the data cover what is needed?);
  *backward coverage* = share of the corpus's distinct entities that are in the reference set.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfoundry.entities.tree import EntityTree

COVERAGE_JSON = "coverage.json"
NODE_COUNTS = "node_counts.parquet"
LONG_TAIL_PNG = "long_tail.png"
COVERAGE_PNG = "coverage_by_kind.png"


def frequency_tier(count: int, sparse_threshold: int) -> str:
    if count == 0:
        return "uncovered"
    if count <= sparse_threshold:
        return "sparse"
    if count <= 10 * max(sparse_threshold, 1):
        return "common"
    return "frequent"


def _mention_lists(items: Iterable[Any]) -> Iterable[Iterable[Any]]:
    for item in items:
        yield getattr(item, "entities", item)


def count_mentions(items: Iterable[Any], include_negated: bool = True) -> Counter:
    """Mentions per entity id over records (anything with `.entities`) or lists of mentions (objects or dicts)."""
    counts: Counter = Counter()
    for mentions in _mention_lists(items):
        for mention in mentions:
            data = mention if isinstance(mention, Mapping) else mention.__dict__
            if include_negated or not data.get("negated", False):
                counts[data["id"]] += 1
    return counts


@dataclass
class CoverageReport:
    summary: dict  # flat key figures (numbers only), ready for mlflow.log_metrics
    breakdown: dict  # coverage by kind / depth / rarity, reference coverage, tiers
    frame: (
        Any  # pandas frame, one row per linkable node: id, name, kind, depth, rare, count, propagated, tier
    )
    sparse_threshold: int
    plots: dict[str, Path] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        mentioned = self.frame[self.frame["count"] > 0]
        return dict(zip(mentioned["id"], mentioned["count"].astype(int), strict=True))

    def sparse(self):
        return self.frame[self.frame["tier"] == "sparse"]

    def uncovered(self):
        return self.frame[self.frame["tier"] == "uncovered"]

    def entity_rows(self, limit_uncovered: int = 2000) -> list[dict]:
        """Rows for mentioned and sparse nodes plus up to `limit_uncovered` uncovered ones (rare and shallow first)."""
        frame = self.frame
        uncovered = frame[frame["count"] == 0].sort_values(["rare", "depth"], ascending=[False, True])
        chosen = frame[frame["count"] > 0]
        rows = []
        for _, row in list(chosen.iterrows()) + list(uncovered.head(limit_uncovered).iterrows()):
            rows.append(
                {
                    "id": row["id"],
                    "name": row["name"],
                    "kind": row["kind"],
                    "depth": int(row["depth"]),
                    "rare": bool(row["rare"]),
                    "count": int(row["count"]),
                    "propagated": int(row["propagated"]),
                    "tier": row["tier"],
                    "parents": list(row["parent_ids"]),
                }
            )
        return rows

    def to_dict(self, limit_uncovered: int = 2000) -> dict:
        return {
            "summary": self.summary,
            **self.breakdown,
            "sparse_threshold": self.sparse_threshold,
            "plots": {name: str(path) for name, path in self.plots.items()},
            "entities": self.entity_rows(limit_uncovered),
        }

    def save(self, folder: Path, limit_uncovered: int = 2000) -> Path:
        """coverage.json (summary, breakdown, entity rows) and node_counts.parquet (every linkable node)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        frame = self.frame.copy()
        frame["parent_ids"] = frame["parent_ids"].map(list)
        frame.to_parquet(folder / NODE_COUNTS, index=False)
        (folder / COVERAGE_JSON).write_text(
            json.dumps(self.to_dict(limit_uncovered), indent=2, sort_keys=True)
        )
        return folder / COVERAGE_JSON


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 6) if denominator else 0.0


def _entropy_bits(counts: Iterable[float]) -> float:
    values = [c for c in counts if c > 0]
    total = sum(values)
    return -sum(c / total * math.log2(c / total) for c in values) if total else 0.0


def compute_coverage(
    tree: EntityTree,
    mentions: Iterable[Any] | Mapping[str, int],
    reference: Iterable[str] | None = None,
    sparse_threshold: int = 2,
    plots_dir: Path | None = None,
    include_negated: bool = True,
) -> CoverageReport:
    """Coverage of `mentions` (records, lists of mentions, or an id -> count mapping) over the tree.

    `reference` is an optional set of entity ids (e.g. the entities of an evaluation set) for forward/backward
    coverage. With `plots_dir`, the long-tail and coverage-by-kind plots are written there as PNG.
    """
    raw = Counter(mentions) if isinstance(mentions, Mapping) else count_mentions(mentions, include_negated)
    counts: Counter = Counter()
    unknown = 0
    for entity_id, n in raw.items():
        resolved = tree.resolve(entity_id)
        if resolved is None:
            unknown += n
        else:
            counts[resolved] += n
    propagated: Counter = Counter(counts)
    for entity_id, n in counts.items():
        for ancestor in tree.ancestors(entity_id):
            propagated[ancestor] += n

    frame = tree.frame.loc[
        tree.frame["linkable"], ["id", "name", "kind", "depth", "rare", "parent_ids"]
    ].copy()
    frame["count"] = frame["id"].map(counts).fillna(0).astype("int64")
    frame["propagated"] = frame["id"].map(propagated).fillna(0).astype("int64")
    frame["tier"] = frame["count"].map(lambda c: frequency_tier(int(c), sparse_threshold))
    frame["covered"] = frame["count"] > 0
    frame["rarity"] = frame["rare"].map({True: "rare", False: "common"})

    def by(column: str) -> dict:
        grouped = frame.groupby(column)["covered"].agg(["size", "sum"])
        return {
            str(key): {
                "nodes": int(row["size"]),
                "covered": int(row["sum"]),
                "coverage": _ratio(row["sum"], row["size"]),
            }
            for key, row in grouped.iterrows()
        }

    total_mentions = int(frame["count"].sum())
    rare_mentions = int(frame.loc[frame["rare"], "count"].sum())
    breakdown: dict = {
        "by_kind": by("kind"),
        "by_depth": by("depth"),
        "by_rarity": by("rarity"),
        "tiers": {str(k): int(v) for k, v in frame["tier"].value_counts().items()},
    }
    summary = {
        "nodes": int(len(frame)),
        "covered_nodes": int(frame["covered"].sum()),
        "coverage": _ratio(frame["covered"].sum(), len(frame)),
        "rare_nodes": int(frame["rare"].sum()),
        "rare_coverage": breakdown["by_rarity"].get("rare", {}).get("coverage", 0.0),
        "mentions": total_mentions,
        "unknown_mentions": unknown,
        "rare_mention_share": _ratio(rare_mentions, total_mentions),
        "distinct_entities": int((frame["count"] > 0).sum()),
        "sparse_nodes": int((frame["tier"] == "sparse").sum()),
        "uncovered_nodes": int((frame["tier"] == "uncovered").sum()),
        "entropy_bits": round(_entropy_bits(frame["count"]), 4),
    }
    if reference is not None:
        reference_ids = {tree.resolve(r) or r for r in reference}
        mentioned = set(counts)
        hit = reference_ids & mentioned
        breakdown["reference"] = {
            "entities": len(reference_ids),
            "forward_coverage": _ratio(len(hit), len(reference_ids)),
            "backward_coverage": _ratio(len(hit), len(mentioned)),
            "backward_mention_coverage": _ratio(sum(counts[e] for e in hit), sum(counts.values())),
            "missing": sorted(reference_ids - mentioned)[:200],
        }
        summary["forward_coverage"] = breakdown["reference"]["forward_coverage"]
        summary["backward_coverage"] = breakdown["reference"]["backward_coverage"]
    report = CoverageReport(summary, breakdown, frame, sparse_threshold)
    if plots_dir is not None:
        report.plots = plot_coverage(report, Path(plots_dir))
    _log_to_active_mlflow_run(report)
    return report


def plot_coverage(report: CoverageReport, folder: Path) -> dict[str, Path]:
    """Long-tail rank-frequency (log-log, rare nodes marked) and coverage by kind (rare vs common) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    frame = report.frame[report.frame["count"] > 0].sort_values("count", ascending=False)
    paths = {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if len(frame):
        ranks = np.arange(1, len(frame) + 1)
        counts = frame["count"].to_numpy()
        rare = frame["rare"].to_numpy(dtype=bool)
        ax.loglog(ranks, counts, color="#4477aa", linewidth=1.2, label="all mentioned entities")
        ax.scatter(
            ranks[rare],
            counts[rare],
            s=8,
            color="#cc3311",
            label="rare (Orphanet/OMIM/DO rare slim)",
            zorder=3,
        )
        ax.axhline(
            report.sparse_threshold, color="grey", linestyle="--", linewidth=0.8, label="sparse threshold"
        )
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("entity rank")
    ax.set_ylabel("mentions")
    ax.set_title(
        f"Entity long tail ({report.summary['distinct_entities']} entities, {report.summary['mentions']} mentions)"
    )
    fig.tight_layout()
    paths["long_tail"] = folder / LONG_TAIL_PNG
    fig.savefig(paths["long_tail"], dpi=110)
    plt.close(fig)

    by_kind = report.frame.groupby(["kind", "rarity"])["covered"].mean().unstack(fill_value=0.0)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    kinds = list(by_kind.index)
    x = np.arange(len(kinds))
    width = 0.4
    for offset, rarity, color in ((-width / 2, "common", "#4477aa"), (width / 2, "rare", "#cc3311")):
        if rarity in by_kind:
            ax.bar(x + offset, by_kind[rarity].to_numpy() * 100, width, label=rarity, color=color)
    ax.set_xticks(x, kinds, rotation=30, ha="right")
    ax.set_ylabel("nodes mentioned (%)")
    ax.set_title("MET coverage by kind and rarity")
    ax.legend()
    fig.tight_layout()
    paths["coverage_by_kind"] = folder / COVERAGE_PNG
    fig.savefig(paths["coverage_by_kind"], dpi=110)
    plt.close(fig)
    return paths


def _log_to_active_mlflow_run(report: CoverageReport) -> None:
    mlflow = sys.modules.get("mlflow")  # only when the caller already uses MLflow: importing it costs seconds
    if mlflow is None or mlflow.active_run() is None:
        return
    mlflow.log_metrics({f"coverage.{key}": float(value) for key, value in report.summary.items()})
    for path in report.plots.values():
        mlflow.log_artifact(str(path), artifact_path="coverage")
