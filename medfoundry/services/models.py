"""Registered model versions: listing, evaluation figures, paired comparison, promotion, rollback, GitOps history."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medfoundry.config import Profile
from medfoundry.release import registry
from medfoundry.release.gates import benchmarks, main_score


def list_versions(name: str | None = None, max_results: int = 1000) -> list[registry.ModelVersionInfo]:
    """Every registered version (of one model, or all), newest first, in one registry query."""
    from mlflow import MlflowClient

    client = MlflowClient()
    filter_string = f"name = '{name}'" if name else ""
    infos = [registry._info(mv) for mv in client.search_model_versions(filter_string, max_results=max_results)]
    # A version search leaves `aliases` empty; the registered models carry them (alias -> version).
    aliases: dict[tuple[str, str], list[str]] = {}
    for model in client.search_registered_models(filter_string, max_results=1000):
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault((model.name, str(version)), []).append(alias)
    for info in infos:
        info.aliases = sorted(aliases.get((info.name, info.version), []))
    return sorted(infos, key=lambda i: (i.name, int(i.version)), reverse=True)


@dataclass
class BenchmarkScore:
    benchmark: str
    score: float
    ci95: tuple[float | None, float | None]
    tiers: dict[str, float]


def eval_scores(info: registry.ModelVersionInfo) -> list[BenchmarkScore]:
    """Main score with its bootstrap interval and the score per rarity tier, for each benchmark the version reports."""
    rows = []
    for bench in benchmarks(info.metrics):
        score = main_score(info.metrics, bench)
        prefix = f"{bench}/rarity/"
        tiers = {k[len(prefix) :]: v for k, v in sorted(info.metrics.items()) if k.startswith(prefix)}
        rows.append(
            BenchmarkScore(
                bench, score, (info.metrics.get(f"{bench}/ci95_lo"), info.metrics.get(f"{bench}/ci95_hi")), tiers
            )
        )
    return rows


def _evaluate_run_id(info: registry.ModelVersionInfo) -> str | None:
    """The MLflow run of the evaluate stage that scored this version (same pipeline run as its registration)."""
    from mlflow import MlflowClient

    from medfoundry import tracking

    pipeline_run = info.lineage.get("pipeline_run_id")
    if not pipeline_run:
        return None
    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(
        experiments,
        filter_string=f"tags.`{tracking.PIPELINE_RUN_TAG}` = '{pipeline_run}' and tags.`{tracking.STAGE_TAG}` = 'evaluate'",
        max_results=1,
    )
    return found[0].info.run_id if found else None


def _eval_folder(info: registry.ModelVersionInfo, out: Path) -> Path:
    """The version's per-item predictions as the evaluation folder layout (<benchmark>/predictions.parquet)."""
    import mlflow.artifacts
    import pandas as pd

    from medfoundry.evaluation.runner import PREDICTIONS

    run_id = _evaluate_run_id(info)
    if run_id is None:
        raise registry.RegistryError(
            f"{info.name} v{info.version}: no evaluate stage run found for its pipeline run (lineage pipeline_run_id)"
        )
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="eval", dst_path=str(out / "raw")))
    for table in local.glob("*/predictions.json"):
        data = json.loads(table.read_text())
        target = out / table.parent.name
        target.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(data["data"], columns=data["columns"]).to_parquet(target / PREDICTIONS)
    return out


def compare_versions(name: str, base: str, candidate: str, n_resamples: int = 1000) -> dict[str, Any]:
    """Paired per-item deltas (candidate − base) with bootstrap 95% intervals, as `medfoundry eval-compare` computes
    them, on the predictions each version's evaluate stage logged."""
    from medfoundry.evaluation.compare import compare_runs

    base_info, cand_info = registry.get_version(name, base), registry.get_version(name, candidate)
    with tempfile.TemporaryDirectory(prefix="mf-compare-") as tmp:
        base_dir = _eval_folder(base_info, Path(tmp) / "base")
        cand_dir = _eval_folder(cand_info, Path(tmp) / "candidate")
        result = compare_runs(base_dir, cand_dir, n_resamples=n_resamples)
    result["base"], result["candidate"] = f"{name} v{base}", f"{name} v{candidate}"
    return result


def gate_preview(profile: Profile, name: str, version: str, env: str | None = None):
    """The gate's checklist for a version against the current champion, without recording anything."""
    from medfoundry.release.gates import evaluate_gate

    candidate = registry.get_version(name, version)
    champion = registry.version_by_alias(name, registry.CHAMPION)
    if champion is not None and champion.version == candidate.version:
        champion = None
    return evaluate_gate(profile.gates, candidate.metrics, champion.metrics if champion else None), champion


def promote(profile: Profile, name: str, version: str, env: str | None, actor: str):
    from medfoundry.release.promote import promote_model

    return promote_model(profile, name, version, env, actor=actor)


def rollback(profile: Profile, env: str | None, actor: str):
    from medfoundry.release.promote import rollback as rollback_env

    return rollback_env(profile, env, actor=actor)


def gitops_history(profile: Profile, env: str):
    from medfoundry.release.promote import open_repo

    return open_repo(profile).history(env)


def gitops_commit(profile: Profile, sha: str) -> str:
    """`git show --stat -p` of one commit of the GitOps repository (sha checked to be hex)."""
    from medfoundry.release.gitops import GitOpsError
    from medfoundry.release.promote import open_repo

    if not sha or any(c not in "0123456789abcdef" for c in sha.lower()) or len(sha) > 40:
        raise GitOpsError(f"{sha!r} is not a commit id")
    repo = open_repo(profile)
    proc = subprocess.run(
        ["git", "show", "--stat", "-p", sha], cwd=repo.path, capture_output=True, text=True, timeout=30
    )
    if proc.returncode != 0:
        raise GitOpsError(f"no commit {sha} in the GitOps repository")
    return proc.stdout


