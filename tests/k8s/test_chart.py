"""What the platform chart renders: least-privilege RBAC, credentials only through Secrets, the KServe pieces."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "medfoundry"


@pytest.fixture(scope="module")
def render(k8s_tools):
    def run(*args: str, namespace: str = "medfoundry") -> dict[tuple[str, str], dict]:
        out = subprocess.run(
            [str(k8s_tools.helm), "template", "medfoundry", str(CHART), "-n", namespace, *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.stdout) if d}

    return run


def _api_calls_in_source() -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs of every Kubernetes API call in medfoundry/ (kubernetes-client method names)."""
    import ast
    import re

    calls: dict[tuple[str, str], set[str]] = {}
    verb_of = {"read": "get", "get": "get", "list": "list", "create": "create", "patch": "patch",
               "replace": "update", "delete": "delete"}
    pattern = re.compile(r"^(read|get|list|create|patch|replace|delete)_namespaced_(\w+)$")
    for path in (CHART.parents[1] / "medfoundry").rglob("*.py"):
        tree = ast.parse(path.read_text())
        constants = {
            t.id: n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            for t in n.targets if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            match = pattern.match(node.func.attr)
            if not match:
                continue
            if match[2] == "custom_object":
                group, resource = (constants[a.id] if isinstance(a, ast.Name) else a.value
                                   for a in (node.args[0], node.args[3]))
            else:
                group, resource = "", match[2] + "s"
            calls.setdefault((group, resource), set()).add(verb_of[match[1]])
    return calls


def test_runner_rights_cover_our_api_calls_and_nothing_else_of_ours():
    from medfoundry.cluster.rbac import STEP_CALLS

    found = _api_calls_in_source()
    assert found, "the scan found no Kubernetes API call: it is broken"
    assert {k: set(v) for k, v in STEP_CALLS.items()} == found


def test_the_pipeline_roles_grant_exactly_the_runner_rules(render):
    """Before: InferenceService rights nothing used, and none of what the KFP launcher/driver need."""
    from medfoundry.cluster.rbac import runner_rules

    objects = render("--set", "serviceAccounts.pipeline.namespace=kubeflow")
    steps, kfp = objects[("Role", "medfoundry-pipeline")], objects[("Role", "medfoundry-pipeline-kfp")]
    assert steps["metadata"]["namespace"] == "medfoundry" and kfp["metadata"]["namespace"] == "kubeflow"
    rendered = sorted(steps["rules"] + kfp["rules"], key=lambda r: (r["apiGroups"], r["resources"]))
    assert rendered == runner_rules()
    assert {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]} in rendered
    assert not [r for r in rendered if "serving.kserve.io" in r["apiGroups"]]
    for name in ("medfoundry-pipeline", "medfoundry-pipeline-kfp"):
        [subject] = objects[("RoleBinding", name)]["subjects"]
        assert subject == {"kind": "ServiceAccount", "name": "medfoundry-pipeline", "namespace": "kubeflow"}
    objects = render()
    binding = objects[("RoleBinding", "medfoundry-pipeline")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "medfoundry-pipeline", "namespace": "medfoundry"}]
    assert not [k for k in objects if k[0] in ("ClusterRole", "ClusterRoleBinding")]
    for name in ("medfoundry-platform", "medfoundry-training", "medfoundry-serving"):
        assert objects[("ServiceAccount", name)]["automountServiceAccountToken"] is False


def test_runs_in_the_kubeflow_namespace_get_a_binding_there(render):
    objects = render("--set", "serviceAccounts.pipeline.namespace=kubeflow")
    assert objects[("ServiceAccount", "medfoundry-pipeline")]["metadata"]["namespace"] == "kubeflow"
    [subject] = objects[("RoleBinding", "medfoundry-pipeline")]["subjects"]
    assert subject["namespace"] == "kubeflow"
    minio_policy = objects[("NetworkPolicy", "minio-ingress")]["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}}} in minio_policy


def test_generated_credentials_are_random_and_reach_pods_only_through_secret_refs(render):
    first, second = render(), render()
    secret = first[("Secret", "medfoundry-s3")]
    assert set(secret["data"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert secret["data"] != second[("Secret", "medfoundry-s3")]["data"]  # nothing fixed ships in the chart
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    env = {e["name"]: e for e in first[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "medfoundry-s3"
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "medfoundry-postgresql", "key": "password"}


def test_existing_secrets_replace_generated_ones(render):
    objects = render("-f", str(CHART / "values-prod.yaml"), namespace="medfoundry-prod")
    assert not [k for k in objects if k[0] == "Secret"]
    serving = objects[("ServiceAccount", "medfoundry-serving")]
    assert serving["secrets"] == [{"name": "medfoundry-s3"}]
    assert serving["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"] == "minio.medfoundry-prod.svc:9000"
    assert serving["metadata"]["annotations"]["serving.kserve.io/s3-usehttps"] == "0"


def test_vllm_inferenceservice_on_gpu(render):
    objects = render("-f", str(CHART / "ci" / "all-features-values.yaml"))
    isvc = objects[("InferenceService", "medfoundry-model")]["spec"]["predictor"]
    assert isvc["serviceAccountName"] == "medfoundry-serving"
    assert isvc["model"]["modelFormat"] == {"name": "huggingface"}
    assert "--backend=vllm" in isvc["model"]["args"]
    assert isvc["model"]["storageUri"] == "s3://medfoundry-models/medfoundry-medvlm/7"
    assert isvc["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert isvc["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert ("Deployment", "console") in objects


def test_medfoundry_predictor_uses_the_chart_runtime(render):
    objects = render("-f", str(CHART / "ci" / "external-services-values.yaml"))
    model = objects[("InferenceService", "medfoundry-model")]["spec"]["predictor"]["model"]
    runtime = objects[("ServingRuntime", "medfoundry-vlm")]
    assert model["runtime"] == runtime["metadata"]["name"] == "medfoundry-vlm"
    assert model["modelFormat"]["name"] == runtime["spec"]["supportedModelFormats"][0]["name"]
    assert runtime["spec"]["containers"][0]["image"] == "ghcr.io/medfoundry/medfoundry-cpu:0.1.0-0123abc"
    assert "{{.Name}}" in runtime["spec"]["containers"][0]["args"]  # KServe fills in the model name
    assert ("StatefulSet", "minio") not in objects and ("StatefulSet", "postgresql") not in objects
    mlflow = objects[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
    assert "--backend-store-uri=postgresql+psycopg://medfoundry@postgres.databases.svc:5432/mlflow" in mlflow["args"]


def test_an_inferenceservice_without_a_model_location_is_refused(k8s_tools):
    out = subprocess.run(
        [str(k8s_tools.helm), "template", "m", str(CHART), "--set", "serving.inferenceService.enabled=true"],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "serving.inferenceService.storageUri is required" in out.stderr
