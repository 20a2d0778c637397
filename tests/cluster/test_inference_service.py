"""The InferenceService promotion writes, as KServe expects it: deployment mode, a startup probe long enough for the
profile's model, a scale metric and target, resources from the profile, and KServe's huggingface runtime (vLLM) for
GPU-serving profiles while CPU profiles keep our own runtime. Every variant validates against the KServe CRD.
Before: none of these were written, and GPU profiles got the CPU runtime."""

from __future__ import annotations

import pytest

from medfoundry.cluster.crds import shared_crd_dir, validate_custom_resource
from medfoundry.config import load_profile
from medfoundry.release.manifests import DEPLOYMENT_MODE, render_inference_service
from medfoundry.release.registry import ModelVersionInfo

INFO = ModelVersionInfo("medfoundry-medvlm", "7", "s3://medfoundry-mlflow/1/abc/artifacts/model", "abc")


def _render(profile_name: str, existing=None):
    profile = load_profile(profile_name)
    return render_inference_service(
        INFO, "prod", profile.gitops, "passed", existing, "s3://medfoundry-mlflow/1/abc/artifacts/model", profile.model
    )


def _check_crd(manifest):
    crds = shared_crd_dir()
    if crds is not None:
        assert validate_custom_resource(manifest, crds) == []


def test_gpu_profile_is_served_by_vllm_with_a_long_startup_probe():
    manifest = _render("production-7b")
    predictor = manifest["spec"]["predictor"]
    model = predictor["model"]
    assert manifest["metadata"]["annotations"][DEPLOYMENT_MODE] == "RawDeployment"
    assert model["modelFormat"] == {"name": "huggingface"} and model["runtime"] == "kserve-huggingfaceserver"
    assert "--backend=vllm" in model["args"] and "--max_model_len=4096" in model["args"]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert model["resources"]["requests"] == {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "1"}
    probe = model["startupProbe"]
    # 16.6 GB of bfloat16 weights: at least 7 minutes before Kubernetes gives up (the default would be ~30 s).
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 7 * 60
    assert probe["httpGet"]["path"] == "/v2/health/ready"
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 8)
    _check_crd(manifest)


def test_cpu_profile_keeps_the_custom_runtime_and_a_short_probe():
    manifest = _render("tiny")
    model = manifest["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "medfoundry-vlm"} and model["runtime"] == "medfoundry-vlm"
    assert "nvidia.com/gpu" not in model["resources"]["limits"] and "args" not in model
    assert model["resources"]["requests"] == {"cpu": "1", "memory": "4Gi"}  # the overlay's, kept
    probe = model["startupProbe"]
    assert 2 * 60 <= probe["periodSeconds"] * probe["failureThreshold"] <= 3 * 60
    _check_crd(manifest)


def test_switching_a_served_cpu_manifest_to_gpu_replaces_the_runtime():
    cpu = _render("tiny")
    gpu = _render("production-7b", existing=cpu)
    assert gpu["spec"]["predictor"]["model"]["runtime"] == "kserve-huggingfaceserver"
    back = _render("tiny", existing=gpu)
    assert "args" not in back["spec"]["predictor"]["model"]
    assert back["spec"]["predictor"]["model"]["runtime"] == "medfoundry-vlm"


@pytest.mark.parametrize("mode", ["RawDeployment", "Serverless"])
def test_deployment_mode_comes_from_the_profile(mode):
    profile = load_profile("tiny", {"gitops.predictor.deployment_mode": mode})
    manifest = render_inference_service(INFO, "dev", profile.gitops, "passed", None, None, profile.model)
    assert manifest["metadata"]["annotations"][DEPLOYMENT_MODE] == mode
