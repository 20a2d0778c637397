"""Registered model versions: listing, evaluation figures, paired comparison, promotion, rollback, GitOps history."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medfoundry.config import Profile
from medfoundry.release import registry
from medfoundry.release.gates import benchmarks, main_score


def list_versions(name: str | None = None, max_results: int = 1000) -> list[registry.ModelVersionInfo]:
    """Registered versions (of one model, or all), newest first."""
    return page_versions(name, max_results)[0]


def page_versions(
    name: str | None = None, max_results: int = 25, page_token: str | None = None
) -> tuple[list[registry.ModelVersionInfo], str | None]:
    """One page of registered versions, newest first, with their aliases, and the token of the next page (None at
    the end): two registry queries whatever the size of the registry."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    filter_string = f"name = '{name}'" if name else ""
    try:
        models = [client.get_registered_model(name)] if name else client.search_registered_models(max_results=1000)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return [], None  # nothing registered yet
        raise
    found = client.search_model_versions(
        filter_string, max_results=max_results, order_by=["name ASC", "version_number DESC"], page_token=page_token
    )
    infos = [_row(mv) for mv in found]
    # A version search leaves `aliases` empty; the registered models carry them (alias -> version).
    aliases: dict[tuple[str, str], list[str]] = {}
    for model in models:
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault((model.name, str(version)), []).append(alias)
    for info in infos:
        info.aliases = sorted(aliases.get((info.name, info.version), []))
    token = found.token.decode() if isinstance(found.token, bytes) else found.token
    return infos, token or None


def _row(mv: Any) -> registry.ModelVersionInfo:
    """A version as the list shows it: lineage, tags, aliases. Its metrics live on its LoggedModel and are read on
    the version's own page (one more query per version would make a page of 50 cost 50 queries)."""
    tags = dict(mv.tags or {})
    lineage = {k[len(registry.LINEAGE_PREFIX) :]: v for k, v in tags.items() if k.startswith(registry.LINEAGE_PREFIX)}
    return registry.ModelVersionInfo(
        name=mv.name, version=str(mv.version), source=mv.source, run_id=mv.run_id or None, lineage=lineage, tags=tags
    )


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


def _eval_folder(info: registry.ModelVersionInfo, out: Path) -> Path:
    """The version's per-item scores (kept with its registration) in the evaluation folder layout
    (<benchmark>/predictions.parquet), so the comparison is the one `medfoundry eval-compare` makes."""
    import pandas as pd

    from medfoundry.evaluation.runner import PREDICTIONS

    scores = registry.item_scores(info)
    if not scores:
        raise registry.RegistryError(f"{info.name} v{info.version} has no per-item evaluation scores to pair")
    for bench, items in scores.items():
        target = out / bench
        target.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame({"id": list(items), "score": [float(v) for v in items.values()]})
        frame.to_parquet(target / PREDICTIONS)
    return out


def compare_versions(name: str, base: str, candidate: str, n_resamples: int = 1000) -> dict[str, Any]:
    """Paired per-item deltas (candidate − base) with bootstrap 95% intervals over the items both versions were
    scored on, computed by `medfoundry eval-compare`'s `compare_runs`."""
    from medfoundry.evaluation.compare import compare_runs

    base_info, cand_info = registry.get_version(name, base), registry.get_version(name, candidate)
    with tempfile.TemporaryDirectory(prefix="mf-compare-") as tmp:
        base_dir = _eval_folder(base_info, Path(tmp) / "base")
        cand_dir = _eval_folder(cand_info, Path(tmp) / "candidate")
        result = compare_runs(base_dir, cand_dir, n_resamples=n_resamples)
    result["base"], result["candidate"] = f"{name} v{base}", f"{name} v{candidate}"
    return result


def gate_preview(profile: Profile, name: str, version: str, env: str | None = None):
    """The gate's checklist for a version against the version it would replace, without recording anything."""
    from medfoundry.release.promote import gate_for

    decision, _, champion = gate_for(profile, name, version, env or profile.gitops.environment)
    return decision, champion


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


