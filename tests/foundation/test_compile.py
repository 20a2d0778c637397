"""Every pipeline compiles to KFP v2 IR with the expected components, versioned images and the promotion gate."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from medfoundry import __version__
from medfoundry.pipeline.compiler import PIPELINES, compile_pipeline, pipeline_module


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("ir")
    return {name: yaml.safe_load(compile_pipeline(name, out).read_text()) for name in PIPELINES}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_stage_is_a_component_with_a_versioned_image(compiled, name):
    ir = compiled[name]
    executors = ir["deploymentSpec"]["executors"]
    components = {key.removeprefix("comp-") for key in ir["components"]}
    for stage in pipeline_module(name).STAGES:
        assert stage in components, f"stage {stage} missing from the compiled pipeline"
    assert executors, "no executors compiled"
    for executor, spec in executors.items():
        image = spec["container"]["image"]
        assert image.rsplit(":", 1)[1].startswith(f"{__version__}-"), f"{executor} uses unversioned {image}"
        # Components import medfoundry from the image: nothing is pip-installed at run time.
        assert "pip install" not in " ".join(spec["container"].get("command", []))


def test_recipe_promotes_only_inside_the_gate(compiled):
    ir = compiled["medical-mllm-recipe"]
    dag = ir["root"]["dag"]["tasks"]
    assert "promote" not in dag, "promote must not run unconditionally"
    condition_tasks = [task for task in dag.values() if task.get("triggerPolicy", {}).get("condition")]
    assert len(condition_tasks) == 1
    condition = condition_tasks[0]
    assert condition["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--gate-Output'] == true"
    inner = ir["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert list(inner) == ["promote"]


def test_recipe_stage_order(compiled):
    tasks = compiled["medical-mllm-recipe"]["root"]["dag"]["tasks"]
    expected_upstream = {
        "ingest": "start-tracking",
        "validate": "ingest",
        "curate": "validate",
        "pretrain": "curate",
        "sft": "pretrain",
        "rl": "sft",
        "evaluate": "rl",
        "register": "evaluate",
        "gate": "register",
    }
    for task, upstream in expected_upstream.items():
        assert upstream in tasks[task].get("dependentTasks", []), f"{task} should follow {upstream}"


def test_cli_compile_writes_every_pipeline(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "medfoundry.cli", "compile", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.stem for p in tmp_path.glob("*.yaml")) == sorted(PIPELINES)


def test_cluster_profile_adds_kubernetes_settings(tmp_path):
    from medfoundry.config import load_profile

    path = compile_pipeline("medical-mllm-recipe", tmp_path, load_profile("production-7b"))
    documents = list(yaml.safe_load_all(path.read_text()))
    assert len(documents) == 2, "expected the pipeline spec plus its Kubernetes platform spec"
    executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    evaluate = executors["exec-evaluate"]
    assert evaluate["nodeSelector"]["labels"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert evaluate["tolerations"][0]["key"] == "nvidia.com/gpu"
    for name, spec in executors.items():
        assert spec["secretAsEnv"][0]["secretName"] == "medfoundry-s3", name
        assert spec["pvcMount"][0]["mountPath"] == "/cache", name
    # Training steps only launch TrainJobs: the GPUs belong to the job, not to the step's pod.
    assert "nodeSelector" not in executors["exec-sft"]
