"""kfp-kubernetes settings from the profile's cluster section, read back from the compiled pipeline spec."""

# No `from __future__ import annotations`: kfp reads the component's type annotations as real types.
import pytest
import yaml

from medfoundry.cluster.kfp_settings import apply_kubernetes_settings
from medfoundry.config import load_profile


def _compile(tmp_path, profile, kinds):
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11.14-slim", install_kfp_package=False)
    def step(x: int) -> int:
        return x

    @dsl.pipeline(name="settings-probe")
    def probe():
        for index, kind in enumerate(kinds):
            task = step(x=index)
            apply_kubernetes_settings(task, profile, kind)

    path = tmp_path / "probe.yaml"
    compiler.Compiler().compile(probe, str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    spec = docs[0]
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    return spec["deploymentSpec"]["executors"], platform


def test_gpu_cpu_and_trainjob_steps_on_the_production_profile(tmp_path):
    executors, platform = _compile(tmp_path, load_profile("production-7b"), ["gpu", "cpu", "trainjob"])
    gpu, cpu, launcher = platform["exec-step"], platform["exec-step-2"], platform["exec-step-3"]
    for settings in (gpu, cpu, launcher):
        secrets = {s["secretName"]: {k["secretKey"]: k["envVar"] for k in s["keyToEnv"]} for s in settings["secretAsEnv"]}
        assert secrets["medfoundry-s3"] == {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
                                            "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
        # production-7b's Feast is the chart's PostgreSQL: feast.url's ${PGPASSWORD} comes from its Secret.
        assert secrets["medfoundry-postgresql"] == {"password": "PGPASSWORD"}
        assert settings["pvcMount"][0]["mountPath"] == "/cache"
        assert settings["securityContext"] == {"runAsNonRoot": True, "runAsUser": "10001"}
    assert gpu["nodeSelector"]["labels"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert gpu["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeSelector" not in cpu and "tolerations" not in launcher
    assert gpu["podMetadata"]["labels"]["medfoundry.io/stage-kind"] == "gpu"
    gpu_resources = executors["exec-step"]["container"]["resources"]["accelerator"]
    assert gpu_resources["resourceType"] == "nvidia.com/gpu" and gpu_resources["resourceCount"] == "8"
    cpu_resources = executors["exec-step-2"]["container"]["resources"]
    assert cpu_resources["cpuRequest"] == 1 and cpu_resources["memoryRequest"] == 4 * 2**30 / 1e9
    assert "accelerator" not in cpu_resources
    # A TrainJob launcher only waits on its job: CPU image, small requests.
    launcher_container = executors["exec-step-3"]["container"]
    assert "/medfoundry-cpu:" in launcher_container["image"] and "/medfoundry-gpu:" in executors["exec-step"]["container"]["image"]
    assert launcher_container["resources"]["cpuRequest"] == 0.25
    env = {e["name"]: e["value"] for e in executors["exec-step"]["container"]["env"]}
    assert env["HF_HOME"] == "/cache/huggingface"


def test_local_profiles_get_no_kubernetes_settings(tmp_path):
    _, platform = _compile(tmp_path, load_profile("tiny"), ["gpu", "cpu"])
    assert platform == {}


def test_unknown_stage_kind_is_refused():
    with pytest.raises(ValueError, match="stage_kind"):
        apply_kubernetes_settings(object(), load_profile("production-7b"), "tpu")


def test_operator_registry_and_retries_from_the_profile(tmp_path):
    profile = load_profile(
        "production-7b", {"cluster.image_registry": "registry.example.org/mlops", "cluster.step_retries": 3}
    )
    executors, platform = _compile(tmp_path, profile, ["cpu"])
    assert executors["exec-step"]["container"]["image"].startswith("registry.example.org/mlops/medfoundry-cpu:")
    [field] = platform["exec-step"]["fieldPathAsEnv"]
    assert field == {"name": "MEDFOUNDRY_PIPELINE_RUN_ID", "fieldPath": "metadata.labels['pipeline/runid']"}
