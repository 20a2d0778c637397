"""The contract with promotion: it copies platform/gitops-template into the GitOps repo and rewrites
overlays/<env>/inferenceservice.yaml; the overlay must still build and match the InferenceService CRD."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from medfoundry.cluster.crds import shared_crd_dir, validate_custom_resource
from medfoundry.config.release import GitOpsConfig
from medfoundry.release.manifests import render_inference_service
from medfoundry.release.registry import ModelVersionInfo

TEMPLATE = Path(__file__).resolve().parents[2] / "platform" / "gitops-template"


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_promoted_overlay_builds_and_validates(tmp_path, k8s_tools, env):
    repo = tmp_path / "gitops"
    shutil.copytree(TEMPLATE, repo)
    overlay = repo / "apps/medfoundry-model/overlays" / env
    existing = yaml.safe_load((overlay / "inferenceservice.yaml").read_text())
    info = ModelVersionInfo(
        name="medfoundry-medvlm",
        version="7",
        source="s3://medfoundry-models/medfoundry-medvlm/7",
        run_id="0123456789abcdef",
        lineage={"git_sha": "abcdef0", "config_hash": "feedbeef"},
    )
    manifest = render_inference_service(info, env, GitOpsConfig(environment=env), "passed", existing=existing)
    (overlay / "inferenceservice.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))

    out = subprocess.run([str(k8s_tools.kubectl), "kustomize", str(overlay)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    [isvc] = list(yaml.safe_load_all(out.stdout))
    predictor = isvc["spec"]["predictor"]
    assert isvc["metadata"]["namespace"] == f"medfoundry-{env}"
    assert predictor["model"]["storageUri"] == "s3://medfoundry-models/medfoundry-medvlm/7"
    assert predictor["serviceAccountName"] == "medfoundry-serving"  # from base/, untouched by promotion
    assert predictor["model"]["runtime"] == "medfoundry-vlm"
    assert isvc["metadata"]["labels"]["medfoundry.io/model-version"] == "7"
    crds = shared_crd_dir()
    if crds is not None:
        assert validate_custom_resource(isvc, crds) == []
