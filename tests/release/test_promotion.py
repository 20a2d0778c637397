"""Registry + gate + GitOps promotion and rollback against a sqlite MLflow store and local git repositories."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from medfoundry.cluster.crds import validate_custom_resource
from medfoundry.release import registry
from medfoundry.release.gitops import GitOpsRepo
from medfoundry.release.promote import PromotionError, open_repo, promote_model, rollback

GOOD = {"heldout/accuracy": 0.62, "heldout/ci95_lo": 0.55, "heldout/ci95_hi": 0.69, "heldout/rare/accuracy": 0.4,
        "report_findings/hallucination_rate": 0.1}
BETTER = {"heldout/accuracy": 0.66, "heldout/ci95_lo": 0.60, "heldout/ci95_hi": 0.70, "heldout/rare/accuracy": 0.45,
          "report_findings/hallucination_rate": 0.1}
REGRESSED = {"heldout/accuracy": 0.50, "heldout/ci95_lo": 0.44, "heldout/ci95_hi": 0.56, "heldout/rare/accuracy": 0.4,
             "report_findings/hallucination_rate": 0.1}
LINEAGE = {"pipeline_run_id": "run-1", "dataset_hash": "abc123", "base_model": "tiny", "config_hash": "cfg", "git_sha": "deadbee"}
NAME = "medvlm-test"


def _commits(repo: GitOpsRepo) -> list[str]:
    out = subprocess.run(["git", "rev-list", "HEAD"], cwd=repo.path, capture_output=True, text=True, check=True)
    return out.stdout.split()


def _register(model_dir, metrics, run_id=None):
    return registry.register_model_version(model_dir, NAME, LINEAGE, metrics, run_id=run_id)


def test_register_sets_lineage_metrics_and_candidate(profile, model_dir):
    import mlflow

    with mlflow.start_run() as run:
        info = _register(model_dir, {**GOOD, "not_a_number": float("nan")})
    assert info.run_id == run.info.run_id and info.aliases == ["candidate"]
    assert info.lineage["dataset_hash"] == "abc123" and info.lineage["git_sha"] == "deadbee"
    assert info.metrics == GOOD
    # The version is an MLflow Model: its metrics are linked to the LoggedModel, its source is that model.
    assert info.model_id and info.source == f"models:/{info.model_id}"
    logged = mlflow.get_logged_model(info.model_id)
    assert {m.key: m.value for m in logged.metrics} == GOOD
    assert logged.source_run_id == run.info.run_id and str(logged.status) == "READY"
    assert not any(key.startswith("metric.") for key in info.tags)
    assert (registry.download_model(f"models:/{NAME}@candidate") / "config.json").is_file()
    assert (registry.download_model(info.source) / "model.safetensors").is_file()
    second = _register(model_dir, GOOD)  # no active run: a registration run is created
    assert second.version == "2" and second.run_id != run.info.run_id
    assert registry.resolve(f"models:/{NAME}@candidate").version == "2"
    assert registry.resolve(f"models:/{NAME}/1").aliases == []


def test_promote_refuse_promote_rollback(profile, model_dir, tmp_path, shared_dir):
    crd = shared_dir / "k8s-crds"
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    profile.gitops.remote = str(remote)

    v1 = _register(model_dir, GOOD)
    first = promote_model(profile, NAME, v1.version, "dev")
    assert first.promoted and first.commit and first.pushed
    repo = open_repo(profile)
    manifest_v1 = repo.manifest_path("dev").read_text()
    assert validate_custom_resource(yaml.safe_load(manifest_v1), crd) == []

    # A regressed candidate is refused with reasons; nothing is committed and no alias moves.
    v2 = _register(model_dir, REGRESSED)
    head_before = _commits(repo)
    refused = promote_model(profile, NAME, v2.version, "dev")
    assert not refused.promoted and refused.commit is None
    assert any("regression beyond policy" in r for r in refused.decision.reasons)
    assert _commits(repo) == head_before
    assert registry.version_by_alias(NAME, "dev").version == v1.version
    assert registry.get_version(NAME, v2.version).tags["gate.dev.passed"] == "false"
    assert refused.decision_path.is_file()

    # A better one: exactly one commit, valid InferenceService, aliases moved, pushed to the remote.
    v3 = _register(model_dir, BETTER)
    good = promote_model(profile, NAME, v3.version, "dev")
    assert good.promoted and good.previous_version == v1.version
    assert _commits(repo)[1:] == head_before
    manifest = yaml.safe_load(repo.manifest_path("dev").read_text())
    assert validate_custom_resource(manifest, crd) == []
    v3_model = registry.get_version(NAME, v3.version)
    assert manifest["spec"]["predictor"]["model"]["storageUri"].endswith(f"/models/{v3_model.model_id}/artifacts")
    assert manifest["metadata"]["annotations"]["medfoundry.io/model-version"] == v3.version
    # Promoting to dev moves `dev` only: `champion` is production's.
    assert registry.version_by_alias(NAME, "dev").version == v3.version
    assert registry.version_by_alias(NAME, "champion") is None
    remote_head = subprocess.run(["git", "rev-parse", "main"], cwd=remote, capture_output=True, text=True).stdout.strip()
    assert remote_head == good.commit

    # Rollback restores the previous manifest and both aliases, in one pushed commit.
    back = rollback(profile, "dev")
    assert (back.rolled_back_version, back.restored_version) == (v3.version, v1.version)
    assert repo.manifest_path("dev").read_text() == manifest_v1
    assert registry.version_by_alias(NAME, "dev").version == v1.version
    assert _commits(repo)[1:3] == [good.commit, *head_before[:1]]

    # Rolling back the first promotion leaves the environment without a model (the seeded placeholder, or no
    # manifest at all) and without aliases.
    first_back = rollback(profile, "dev")
    assert first_back.restored_version is None
    seeded = repo.read_manifest("dev")
    assert seeded is None or "storageUri" not in seeded["spec"]["predictor"]["model"]
    assert registry.version_by_alias(NAME, "dev") is None
    with pytest.raises(PromotionError, match="nothing to roll back"):
        rollback(profile, "dev")


def test_template_seed_keeps_platform_fields_and_comments(profile, model_dir, shared_dir):
    from medfoundry.release.gitops import TEMPLATE_DIR

    if not TEMPLATE_DIR.is_dir():
        pytest.skip("platform/gitops-template/ is not in this checkout")
    template = (TEMPLATE_DIR / "apps/medfoundry-model/overlays/prod/inferenceservice.yaml").read_text()
    v1 = _register(model_dir, GOOD)
    promote_model(profile, NAME, v1.version, "prod")
    repo = open_repo(profile)
    text = repo.manifest_path("prod").read_text()
    assert text.splitlines()[0] == template.splitlines()[0]  # the platform's comment survives
    manifest, seeded = yaml.safe_load(text), yaml.safe_load(template)
    assert manifest["spec"]["predictor"]["nodeSelector"] == seeded["spec"]["predictor"]["nodeSelector"]
    assert manifest["spec"]["predictor"]["model"]["resources"] == seeded["spec"]["predictor"]["model"]["resources"]
    crd = shared_dir / "k8s-crds"
    assert validate_custom_resource(manifest, crd) == []
    if shutil.which("kubectl"):  # what Argo CD applies: the overlay built by kustomize
        built = subprocess.run(
            ["kubectl", "kustomize", str(repo.overlay_dir("prod"))], capture_output=True, text=True, check=True
        ).stdout
        rendered = yaml.safe_load(built)
        assert rendered["metadata"]["namespace"] == "medfoundry-prod"
        assert rendered["spec"]["predictor"]["model"]["storageUri"] == manifest["spec"]["predictor"]["model"]["storageUri"]
        assert validate_custom_resource(rendered, crd) == []


def test_minimal_seed_same_version_twice_and_default_version(profile, model_dir, monkeypatch, tmp_path):
    from medfoundry.release import gitops

    monkeypatch.setattr(gitops, "TEMPLATE_DIR", tmp_path / "no-template")
    v1 = _register(model_dir, GOOD)
    first = promote_model(profile, NAME, "", "staging")  # empty version: the candidate alias
    assert first.version == v1.version and first.commit
    again = promote_model(profile, NAME, v1.version, "staging")
    assert again.promoted and again.commit is None
    checked = promote_model(profile, NAME, v1.version, "prod", gate_checked=True)
    assert checked.decision is None and checked.commit
    repo = open_repo(profile)
    assert sorted(p.name for p in (repo.path / "apps/medfoundry-model/overlays").iterdir()) == ["prod", "staging"]
    overlay = yaml.safe_load((repo.overlay_dir("prod") / "kustomization.yaml").read_text())
    assert overlay["namespace"] == "medfoundry-prod" and overlay["resources"] == ["../../base"]


def test_remote_url_repo_is_cloned_and_rollback_works_from_a_fresh_checkout(profile, model_dir, tmp_path):
    """gitops.repo as a URL (production-7b style): promotion clones, commits, pushes; another machine's checkout
    (a new workspace) sees the history and can roll back."""
    remote = tmp_path / "gitops.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(remote)], check=True)
    profile.gitops.repo = remote.as_uri()
    v1 = _register(model_dir, GOOD)
    assert promote_model(profile, NAME, v1.version, "staging").pushed

    other = profile.model_copy(deep=True)
    other.workspace = str(tmp_path / "other-machine")
    back = rollback(other, "staging")
    assert back.pushed and back.rolled_back_version == v1.version
    log = subprocess.run(["git", "log", "--format=%s", "main"], cwd=remote, capture_output=True, text=True).stdout
    assert log.splitlines()[:2] == [f"Roll back {NAME} v1 in staging (no model served)", f"Promote {NAME} v1 to staging (gate passed)"]


def _item_scores(correct: int, n: int = 100) -> dict[str, dict[str, float]]:
    return {"medqa": {f"q{i}": float(i < correct) for i in range(n)}}


def test_champion_moves_only_for_prod_and_a_paired_drop_is_refused(profile, model_dir):
    """Gate and aliases through the registry: per-item scores kept with each version are paired by the gate."""
    profile.gates.max_regression = 0.01
    profile.gates.min_scores = {}
    profile.gates.max_hallucination_rate = None
    v1 = registry.register_model_version(
        model_dir, NAME, LINEAGE, {"medqa/accuracy": 0.60, "medqa/ci95_hi": 0.70}, item_scores=_item_scores(60)
    )
    assert promote_model(profile, NAME, v1.version, "prod").promoted
    assert registry.version_by_alias(NAME, "champion").version == v1.version

    # 12 points worse on the same 100 items; its own interval (ci95_hi 0.58 here) is irrelevant to the decision.
    worse = registry.register_model_version(
        model_dir, NAME, LINEAGE, {"medqa/accuracy": 0.48, "medqa/ci95_hi": 0.58}, item_scores=_item_scores(48)
    )
    refused = promote_model(profile, NAME, worse.version, "prod")
    assert not refused.promoted
    assert any("paired delta -0.1200 over 100 shared items" in r for r in refused.decision.reasons)

    # An equal candidate goes to dev: `dev` moves, `champion` stays on v1.
    equal = registry.register_model_version(
        model_dir, NAME, LINEAGE, {"medqa/accuracy": 0.60}, item_scores=_item_scores(60)
    )
    assert promote_model(profile, NAME, equal.version, "dev").promoted
    assert registry.version_by_alias(NAME, "dev").version == equal.version
    assert registry.version_by_alias(NAME, "champion").version == v1.version


def test_curated_dataset_is_a_dataset_input_with_its_content_hash(profile, tmp_path):
    import mlflow

    from medfoundry import tracking
    from medfoundry.data.records import write_manifest

    dataset = tmp_path / "curated"
    dataset.mkdir()
    (dataset / "records.jsonl").write_text('{"id": "r1"}\n')
    write_manifest(dataset, records=1)
    content_hash = json.loads((dataset / "manifest.json").read_text())["content_hash"]
    with mlflow.start_run() as run:
        digest = tracking.log_dataset_input(dataset, context="training")
    (logged,) = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert logged.dataset.digest == digest == content_hash[:36] and logged.dataset.name == "curated"
    tags = {t.key: t.value for t in logged.tags}
    assert tags == {"mlflow.data.context": "training", "medfoundry.content_hash": content_hash}
    assert tracking.log_dataset_input(tmp_path, context="training") is None  # no manifest: nothing to claim
