"""Gated promotion of a registered model version to an environment, and rollback.

Promotion: evaluate the gate (candidate vs the `champion` alias, paired over the items both were scored on), record
the decision (JSON artifact + model version tags), commit the environment's InferenceService to the GitOps repository
(and push), then move the `<env>` alias, and `champion` too when the environment is production. A refused candidate
changes nothing but the recorded decision.
Rollback: undo the newest not-yet-undone promotion of an environment in one commit and restore both aliases.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medfoundry.config import Profile
from medfoundry.release import registry
from medfoundry.release.gates import GateDecision, baseline, evaluate_gate
from medfoundry.release.gitops import GitOpsError, GitOpsRepo
from medfoundry.release.manifests import (
    MODEL_NAME,
    MODEL_VERSION,
    model_storage_uri,
    render_inference_service,
)
from medfoundry.workspace import Workspace

ENVIRONMENTS = ("dev", "staging", "prod")
# Only a production promotion moves `champion` (the version the gate compares against); the others move their own
# `<env>` alias.
CHAMPION_ENVIRONMENT = "prod"


class PromotionError(RuntimeError):
    pass


@dataclass
class PromotionResult:
    name: str
    version: str
    env: str
    promoted: bool
    decision: GateDecision | None  # None when the caller had already checked the gate
    commit: str | None = None  # None when refused, or when the environment already served this version
    pushed: bool = False
    previous_version: str | None = None
    manifest_path: Path | None = None
    decision_path: Path | None = None
    message: str = ""


@dataclass
class RollbackResult:
    name: str
    env: str
    rolled_back_version: str
    restored_version: str | None  # None: the environment had no model before that promotion
    commit: str
    pushed: bool = False
    message: str = ""


def _env(profile: Profile, env: str | None) -> str:
    env = env or profile.gitops.environment
    if env not in ENVIRONMENTS:
        raise PromotionError(f"unknown environment {env!r}: use one of {', '.join(ENVIRONMENTS)}")
    return env


def open_repo(profile: Profile) -> GitOpsRepo:
    return GitOpsRepo.open(profile.gitops, Workspace.resolve(profile.workspace).gitops)


def _namespace(profile: Profile, env: str) -> str:
    return profile.gitops.namespaces.get(env, f"medfoundry-{env}")


def gate_for(
    profile: Profile, name: str, version: str, env: str
) -> tuple[GateDecision, registry.ModelVersionInfo, registry.ModelVersionInfo | None]:
    """The gate's decision for a version against the version it would replace in `env`; records nothing."""
    candidate = registry.get_version(name, version)
    champion = baseline(name, env, exclude_version=candidate.version)
    decision = evaluate_gate(
        profile.gates,
        candidate.metrics,
        champion.metrics if champion else None,
        registry.item_scores(candidate),
        registry.item_scores(champion) if champion else None,
    )
    return decision, candidate, champion


def gate_model_version(profile: Profile, name: str, version: str, env: str | None = None) -> tuple[GateDecision, Path]:
    """Evaluate the gate for a registered version against the current champion and record the decision:
    version tags `gate.<env>.*`, a JSON file in the workspace, and the same JSON as an artifact of the version's run."""
    env = _env(profile, env)
    decision, candidate, champion = gate_for(profile, name, version, env)
    record = {
        "model": name,
        "version": candidate.version,
        "environment": env,
        "champion_version": champion.version if champion else None,
        "decided_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "policy": profile.gates.model_dump(mode="json"),
        **decision.to_dict(),
    }
    folder = Workspace.resolve(profile.workspace).sub("promotions")
    path = folder / f"{name}-v{candidate.version}-{env}-{int(time.time() * 1000)}.json"
    path.write_text(json.dumps(record, indent=2))
    registry.set_version_tags(
        name,
        candidate.version,
        {
            f"gate.{env}.passed": str(decision.passed).lower(),
            f"gate.{env}.reasons": "; ".join(decision.reasons)[:4900],
            f"gate.{env}.champion_version": record["champion_version"] or "none",
            f"gate.{env}.decided_at": record["decided_at"],
        },
    )
    if candidate.run_id:
        from mlflow import MlflowClient

        MlflowClient().log_dict(candidate.run_id, record, f"promotion/{env}/gate_decision-v{candidate.version}.json")
    return decision, path


def promote_model(
    profile: Profile, name: str, version: str, env: str | None = None, *, gate_checked: bool = False, actor: str = ""
) -> PromotionResult:
    """Promote `name` version `version` (empty: the `candidate` alias) to `env` (default: the profile's).

    `gate_checked=True` when the pipeline's gate step already passed this version; otherwise the gate is evaluated
    and recorded here, and a refused candidate returns `promoted=False` with the reasons and commits nothing.
    `actor` (who promoted) goes into the commit trailer `Medfoundry-Actor` and the version tag `promoted.<env>.by`.
    """
    env = _env(profile, env)
    if not version:
        candidate = registry.version_by_alias(name, registry.CANDIDATE)
        if candidate is None:
            raise PromotionError(f"model {name!r} has no version given and no {registry.CANDIDATE!r} alias")
        version = candidate.version
    info = registry.get_version(name, version)

    decision, decision_path = (None, None) if gate_checked else gate_model_version(profile, name, info.version, env)
    if decision is not None and not decision.passed:
        return PromotionResult(
            name, info.version, env, False, decision, decision_path=decision_path,
            message=f"refused: {'; '.join(decision.reasons)}",
        )
    gate_label = "passed" if decision is not None else "passed (pipeline gate step)"

    storage_uri = model_storage_uri(info, profile)
    repo = open_repo(profile)
    previous_champion = registry.version_by_alias(name, registry.CHAMPION)
    with repo.locked():
        repo.sync()
        existing = repo.read_manifest(env)
        previous_version = _served_version(existing, name)
        manifest = render_inference_service(
            info, env, profile.gitops, gate_label, existing, storage_uri, profile.model
        )
        commit = None
        pushed = False
        if manifest != existing:
            paths = repo.write_manifest(env, manifest, _namespace(profile, env))
            commit = repo.commit(
                f"Promote {name} v{info.version} to {env} (gate {gate_label})",
                {
                    "Action": "promote",
                    "Env": env,
                    "Model": name,
                    "Version": info.version,
                    "Previous-Version": previous_version or "none",
                    "Previous-Champion": previous_champion.version if previous_champion else "none",
                    "Gate": gate_label,
                    "Actor": actor or "unknown",
                },
                body=_body(info, decision),
                paths=paths,
            )
            try:
                pushed = repo.push()
            except GitOpsError:
                repo.drop_last_commit()
                raise
    if env == CHAMPION_ENVIRONMENT:
        registry.set_alias(name, registry.CHAMPION, info.version)
    registry.set_alias(name, env, info.version)
    if commit:
        registry.set_version_tags(
            name, info.version, {f"promoted.{env}.commit": commit, f"promoted.{env}.by": actor or "unknown"}
        )
    message = (
        f"promoted {name} v{info.version} to {env}" + (f" in {commit[:10]}" if commit else " (already served there)")
    )
    return PromotionResult(
        name, info.version, env, True, decision, commit, pushed, previous_version, repo.manifest_path(env),
        decision_path, message,
    )


def rollback(profile: Profile, env: str | None = None, actor: str = "") -> RollbackResult:
    """Undo the newest promotion of `env` that is not undone yet: restore the previous manifest in one commit, point
    the `<env>` alias at the restored version, and give `champion` back to the version it had before."""
    env = _env(profile, env)
    repo = open_repo(profile)
    with repo.locked():
        repo.sync()
        target = repo.last_promotion(env)
        if target is None:
            raise PromotionError(f"nothing to roll back in {env}: no promotion found in {repo.path}")
        name, version = target.trailers.get("Model", ""), target.trailers.get("Version", "")
        paths = repo.restore_before(target.sha)
        restored = _served_version(repo.read_manifest(env), name)
        commit = repo.commit(
            f"Roll back {name} v{version} in {env}" + (f" to v{restored}" if restored else " (no model served)"),
            {
                "Action": "rollback", "Env": env, "Model": name, "Version": restored or "none", "Reverts": target.sha,
                "Actor": actor or "unknown",
            },
            paths=paths,
        )
        try:
            pushed = repo.push()
        except GitOpsError:
            repo.drop_last_commit()
            raise
    registry.set_alias(name, env, restored)
    registry.set_version_tags(name, version, {f"rolled_back.{env}.by": actor or "unknown", f"rolled_back.{env}.commit": commit})
    champion = registry.version_by_alias(name, registry.CHAMPION)
    if champion is not None and champion.version == version:
        previous = target.trailers.get("Previous-Champion", "none")
        registry.set_alias(name, registry.CHAMPION, None if previous == "none" else previous)
    message = f"rolled back {name} v{version} in {env}; " + (f"now serving v{restored}" if restored else "no model served")
    return RollbackResult(name, env, version, restored, commit, pushed, message)


def _served_version(manifest: dict[str, Any] | None, name: str) -> str | None:
    annotations = ((manifest or {}).get("metadata") or {}).get("annotations") or {}
    if annotations.get(MODEL_NAME) != name:
        return None
    return annotations.get(MODEL_VERSION)


def _body(info: registry.ModelVersionInfo, decision: GateDecision | None) -> str:
    lines = [f"storageUri source: {info.source}"]
    lines += [f"lineage {k}: {v}" for k, v in sorted(info.lineage.items())]
    if decision is not None:
        lines += ["", "Gate checks:"] + [f"- [{'x' if c.passed else ' '}] {c.detail}" for c in decision.checks]
    return "\n".join(lines)
