"""The curate orchestrator: read -> clean (PHI, dedup, quality) -> decontaminate -> link entities -> coverage ->
synthesize for sparse entities -> rebalance -> validate -> write a versioned dataset.

Every input record ends as kept, removed (on purpose, with a reason) or quarantined (could not be used, with a
reason); synthesized records count as input, so `input == kept + removed + quarantined` holds exactly.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from medfoundry.config import Profile
from medfoundry.curation.cleaning import Removal, exact_dedup, near_dedup, quality, record_text
from medfoundry.curation.decontam import EvalIndex, decontaminate, profile_eval_index
from medfoundry.curation.phi import scrub_record
from medfoundry.curation.readers import read_corpora
from medfoundry.curation.shards import clean_in_shards
from medfoundry.data.records import (
    IMAGES,
    MANIFEST,
    QUARANTINE,
    RECORDS,
    REMOVED,
    Record,
    read_manifest,
    write_jsonl,
    write_manifest,
)
from medfoundry.data.validation import VALIDATION_FILE, validate_records

log = logging.getLogger("medfoundry.curate")

COVERAGE_FILE = "coverage.json"
DECONTAMINATION_FILE = "decontamination.json"
HELDOUT_BENCHMARK = "heldout"  # the evaluate stage's name for the dataset's own held-out split
PLOTS = "plots"
_OUTPUTS = (
    RECORDS,
    REMOVED,
    QUARANTINE,
    MANIFEST,
    COVERAGE_FILE,
    DECONTAMINATION_FILE,
    VALIDATION_FILE,
    "node_counts.parquet",
)

Progress = Callable[[str], None]


def curate(
    profile: Profile,
    input_dirs: list[Path],
    out_dir: Path,
    eval_sets: list[Path] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Curate `input_dirs` (dataset folders, corpus files or folders, s3:// URIs) into the dataset `out_dir`.

    Returns flat figures (counts, removal reasons, PHI spans, coverage); the same figures land in manifest.json.
    """
    say = progress or (lambda message: log.info(message))
    cfg = profile.curation
    out_dir = Path(out_dir)
    for source in input_dirs:
        if not str(source).startswith("s3://") and Path(source).resolve() == out_dir.resolve():
            raise ValueError(f"{out_dir}: the output folder cannot also be an input (it is cleared first)")
    _reset(out_dir)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    # -- read -----------------------------------------------------------------------------------------------------
    say("reading inputs")
    records: list[Record] = []
    quarantined: list[dict] = []
    for item in read_corpora([str(p) for p in input_dirs], out_dir, profile):
        if isinstance(item, Record):
            records.append(item)
        else:
            quarantined.append({**item, "stage": "read"})
    read_count = len(records) + len(quarantined)
    lap("read")

    removed: list[Removal] = []

    # -- clean ----------------------------------------------------------------------------------------------------
    phi_counts: Counter[str] = Counter()
    if cfg.scrub_phi:
        say("scrubbing PHI")
        records = [scrub_record(record, phi_counts, out_dir) for record in records]
    lap("phi")

    digests = _image_digests(records, out_dir)
    if cfg.shards > 1:
        say(f"removing duplicates and scoring quality in {cfg.shards} shards")
        with tempfile.TemporaryDirectory(prefix="curate-shards-") as work:
            records, dropped = clean_in_shards(
                records, digests, Path(work), cfg.shards, cfg.min_quality, cfg.near_duplicate_threshold,
                cfg.near_duplicate_min_words,
            )
        removed += dropped
        lap("clean_in_shards")
    else:
        say("removing duplicates")
        records, dropped = exact_dedup(records, digests)
        removed += dropped
        records, dropped = near_dedup(
            records, threshold=cfg.near_duplicate_threshold, min_words=cfg.near_duplicate_min_words
        )
        removed += dropped
        lap("dedup")

        say("scoring quality")
        kept_quality: list[Record] = []
        for record in records:
            q = quality(record_text(record), record.kind)
            record.meta["quality"] = q.score
            if q.score < cfg.min_quality:
                removed.append(Removal(record, "low_quality", {"quality": q.score, "problems": q.problems}))
            else:
                kept_quality.append(record)
        records = kept_quality
        lap("quality")

    # -- decontaminate --------------------------------------------------------------------------------------------
    say("decontaminating against evaluation sets and the profile's benchmarks")
    index = profile_eval_index(profile, eval_sets or [])
    eval_items = len(index.item_ids)
    if cfg.decontaminate_holdout:
        # The evaluate stage scores the held-out split as its "heldout" (and "report_findings") benchmark, the only
        # benchmarks a profile without ../shared evaluates on: its texts and images are evaluation items too.
        held_out = [record for record in records if record.split == "holdout"]
        for record in held_out:
            image = out_dir / record.image if record.image else None
            index.add(f"{HELDOUT_BENCHMARK}:{record.id}", record_text(record), image)
        if held_out:
            index.benchmarks[HELDOUT_BENCHMARK] = len(held_out)
    train = [r for r in records if r.split == "train"]
    holdout = [r for r in records if r.split != "train"]
    train, contaminated = decontaminate(train, index, image_root=out_dir)
    removed += contaminated
    records = train + holdout
    decontam_report = {
        "ngram": cfg.decontamination_ngram,
        "eval_sets": [str(p) for p in eval_sets or []],
        "eval_items": eval_items,
        "holdout_items": len(index.item_ids) - eval_items,
        "indexed_ngrams": len(index),
        "removed": len(contaminated),
        "removed_by_eval_set": dict(Counter(r.detail["item_id"].split(":", 1)[0] for r in contaminated)),
        "removed_by_method": dict(Counter(r.detail["method"] for r in contaminated)),
        "benchmarks": index.benchmarks,
        "benchmarks_skipped": index.skipped,
        "eval_images": len(index.image_hashes),
        "examples": [r.as_row() for r in contaminated[:20]],
    }
    lap("decontaminate")

    # -- entities: link, coverage, synthesis, rebalancing ---------------------------------------------------------
    records, synthesized_records, dropped, coverage, entity_figures = _entity_steps(
        profile, records, out_dir, say, index
    )
    synthesized = len(synthesized_records)
    removed += dropped
    records.sort(key=lambda r: r.id)
    lap("entities")

    # -- validate -------------------------------------------------------------------------------------------------
    say("validating")
    outcome = validate_records(records, out_dir, stage="curate")
    records = outcome.kept
    quarantined += [{**row, "stage": "validate"} for row in outcome.quarantined]
    lap("validate")

    # -- write ----------------------------------------------------------------------------------------------------
    say("writing dataset")
    _drop_unreferenced_images(out_dir, records)
    write_jsonl(out_dir / RECORDS, records)
    write_jsonl(
        out_dir / REMOVED, [{**r.as_row(), "record": r.record.model_dump(mode="json")} for r in removed]
    )
    write_jsonl(out_dir / QUARANTINE, quarantined)
    (out_dir / COVERAGE_FILE).write_text(json.dumps(coverage, indent=2, sort_keys=True, default=str))
    decontam_report["removed_synthesized"] = len(dropped)
    (out_dir / DECONTAMINATION_FILE).write_text(json.dumps(decontam_report, indent=2, sort_keys=True))
    (out_dir / VALIDATION_FILE).write_text(json.dumps(outcome.summary, indent=2, sort_keys=True))
    counts = {
        "input": read_count + synthesized,
        "read": read_count,
        "synthesized": synthesized,
        "kept": len(records),
        "removed": len(removed),
        "quarantined": len(quarantined),
    }
    if counts["input"] != counts["kept"] + counts["removed"] + counts["quarantined"]:
        raise RuntimeError(f"curation lost records: {counts}")  # a bug, never expected
    removal_reasons = Counter(r.reason for r in removed)
    quarantine_reasons = Counter(_reason_key(row) for row in quarantined)
    lap("write")
    figures: dict[str, Any] = {
        **counts,
        **{f"removed/{k}": v for k, v in sorted(removal_reasons.items())},
        **{f"quarantined/{k}": v for k, v in sorted(quarantine_reasons.items())},
        "phi_spans": sum(phi_counts.values()),
        **{f"phi/{k}": v for k, v in sorted(phi_counts.items())},
        "eval_items_indexed": eval_items,
        "gx_success": outcome.summary["success"],
        "gx_evaluated_expectations": outcome.summary["evaluated_expectations"],
        "images": sum(1 for r in records if r.image),
        "holdout": sum(1 for r in records if r.split == "holdout"),
        "curation_shards": cfg.shards,
        **entity_figures,
    }
    upstream = [
        {"input": str(p), "content_hash": read_manifest(Path(p)).get("content_hash")}
        for p in input_dirs
        if Path(str(p)).is_dir()
    ]
    write_manifest(
        out_dir,
        stage="curate",
        counts=counts,
        figures=figures,
        timings_s=timings,
        profile=profile.name,
        curation=cfg.model_dump(mode="json"),
        upstream=upstream,
    )
    if cfg.feast:
        say("publishing features to Feast")
        from medfoundry.curation.features import publish_features
        from medfoundry.workspace import Workspace

        figures.update(
            publish_features(
                out_dir, Workspace.resolve(profile.workspace).sub("feast"), cfg.sparse_threshold, profile.feast
            )
        )
        figures.pop("feast_workdir", None)
    figures = {k: v.item() if hasattr(v, "item") else v for k, v in figures.items()}  # numpy -> plain numbers
    _log_to_mlflow(out_dir, figures)
    say(f"kept {counts['kept']} of {counts['input']} records")
    return figures


# ------------------------------------------------------------------------------------------------------- helpers


def _reset(out_dir: Path) -> None:
    """Clear what a previous curate run wrote here (only our own outputs), so a re-run never mixes versions."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in _OUTPUTS:
        (out_dir / name).unlink(missing_ok=True)
    for folder in (IMAGES, PLOTS):
        shutil.rmtree(out_dir / folder, ignore_errors=True)


def _image_digests(records: Iterable[Record], out_dir: Path) -> dict[str, str]:
    import hashlib

    digests: dict[str, str] = {}
    cache: dict[str, str] = {}
    for record in records:
        if record.image:
            if record.image not in cache:
                path = out_dir / record.image
                cache[record.image] = (
                    hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
                )
            digests[record.id] = cache[record.image]
    return digests


def _drop_unreferenced_images(out_dir: Path, records: list[Record]) -> None:
    referenced = {r.image for r in records if r.image}
    folder = out_dir / IMAGES
    if folder.is_dir():
        for path in folder.rglob("*"):
            if path.is_file() and path.relative_to(out_dir).as_posix() not in referenced:
                path.unlink()


def _reason_key(row: dict) -> str:
    if row.get("expectations"):
        return "validation"
    reason = str(row.get("reason", "unknown"))
    return reason.split(":", 1)[0].strip().replace(" ", "_")[:40]


def _entity_steps(
    profile: Profile, records: list[Record], out_dir: Path, say: Progress, index: EvalIndex
) -> tuple[list[Record], list[Record], list[Removal], dict, dict[str, Any]]:
    """Link entities, report coverage (with plots), synthesize records for sparse entities, set sample weights.

    Returns (records, synthesized, removed synthesized records, coverage.json content, figures).
    """
    from medfoundry.entities.coverage import compute_coverage
    from medfoundry.entities.linker import Linker
    from medfoundry.entities.rebalance import rebalance_weights
    from medfoundry.entities.synthesis import rewriter_from_config, synthesize_for_sparse
    from medfoundry.entities.tree import load_or_build_tree
    from medfoundry.workspace import Workspace

    cfg = profile.curation
    say("loading the medical entity tree")
    tree, _ = load_or_build_tree(
        Path(cfg.ontology_dir) if cfg.ontology_dir else None,
        cfg.max_nodes_per_source,
        cache_dir=Workspace.resolve(profile.workspace).cache / "entity_tree",
        progress=say,
    )
    say("linking entities")
    linker = Linker.from_tree(tree)
    records = linker.annotate(records)
    figures: dict[str, Any] = {"entity_tree_nodes": len(tree)}
    before = compute_coverage(tree, records, sparse_threshold=cfg.sparse_threshold)
    figures.update({f"coverage/before_{k}": v for k, v in before.summary.items()})

    synthesized: list[Record] = []
    dropped: list[Removal] = []
    if cfg.synthesize and cfg.synthesis_max_entities > 0:
        say("synthesizing records for sparse entities")
        synthesized = synthesize_for_sparse(
            tree,
            before,
            max_entities=cfg.synthesis_max_entities,
            sparse_threshold=cfg.sparse_threshold,
            seed=profile.data.seed,
            rewriter=rewriter_from_config(cfg.rewriter_endpoint, cfg.rewriter_model),
            linker=linker,
        )
        synthesized = linker.annotate(synthesized)
        for record in synthesized:
            record.meta["quality"] = quality(record_text(record), record.kind).score
        # Synthetic text is held to the same rule as the rest: nothing that overlaps evaluation data.
        clean, dropped = decontaminate(synthesized, index)
        records = records + clean
    synthesized_count = len(synthesized)
    figures["synthesized_kept"] = synthesized_count - len(dropped)

    say("computing coverage")
    plots = out_dir / PLOTS
    after = compute_coverage(tree, records, sparse_threshold=cfg.sparse_threshold, plots_dir=plots)
    after.plots = {name: Path(path).relative_to(out_dir) for name, path in after.plots.items()}
    after.save(out_dir)
    coverage = json.loads((out_dir / COVERAGE_FILE).read_text())
    coverage["before_synthesis"] = before.summary
    figures.update({f"coverage/{k}": v for k, v in after.summary.items()})

    say("rebalancing")
    result = rebalance_weights(
        records, temperature=cfg.rebalance_temperature, max_weight=cfg.rebalance_max_weight
    )
    records = result.apply(records)
    coverage["rebalance"] = result.report
    figures.update({f"rebalance/{k}": v for k, v in result.report.items() if isinstance(v, int | float)})
    figures["entities_linked"] = sum(len(r.entities) for r in records)
    return records, synthesized, dropped, coverage, figures


def _log_to_mlflow(out_dir: Path, figures: dict[str, Any]) -> None:
    try:
        import mlflow
    except ImportError:
        return
    if mlflow.active_run() is None:
        return
    for name in (COVERAGE_FILE, DECONTAMINATION_FILE, VALIDATION_FILE, MANIFEST):
        if (out_dir / name).exists():
            mlflow.log_artifact(str(out_dir / name), artifact_path="curation")
    # coverage plots are logged by entities.coverage itself
