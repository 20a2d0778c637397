"""The lint fails, naming the problem, on a copy of the repository broken on purpose."""

from __future__ import annotations

import re

import pytest
import yaml

from medfoundry.cluster.crds import shared_crd_dir


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_a_misspelled_value_fails_helm_lint(repo_copy, run_lint):
    values = repo_copy / "charts/medfoundry/values-dev.yaml"
    _edit(values, "mlflow:\n  workers: 1", "mlflow:\n  worker: 1")
    result = run_lint(repo_copy, "chart")
    assert result.returncode == 1
    assert "helm lint values-dev.yaml" in result.stdout and "worker" in result.stdout


def test_a_wrongly_typed_value_fails_helm_lint(repo_copy, run_lint):
    values = repo_copy / "charts/medfoundry/values-prod.yaml"
    _edit(values, "  workers: 4", '  workers: "four"')
    result = run_lint(repo_copy, "chart")
    assert result.returncode == 1 and "values-prod.yaml" in result.stdout


def test_credentials_cannot_be_given_as_values(repo_copy, run_lint):
    values = repo_copy / "charts/medfoundry/values-dev.yaml"
    values.write_text(values.read_text() + "\nsecretKey: hunter2\n")
    result = run_lint(repo_copy, "chart")
    assert result.returncode == 1 and "secretKey" in result.stdout


def test_an_inferenceservice_with_a_wrong_field_fails_the_crd_check(repo_copy, run_lint):
    if shared_crd_dir() is None:
        pytest.skip("../shared/k8s-crds not found: CRD check skipped")
    overlay = repo_copy / "platform/gitops-template/apps/medfoundry-model/overlays/prod/inferenceservice.yaml"
    _edit(overlay, "      protocolVersion: v2", "      protocolVersion: v2\n      storageURI: s3://models/x")
    result = run_lint(repo_copy, "kustomize,crd")
    assert result.returncode == 1
    assert re.search(r"overlays/prod: InferenceService/medfoundry-model: spec/predictor/model: .*'storageURI'", result.stdout)


def test_a_chart_inferenceservice_with_a_bad_value_fails_the_crd_check(repo_copy, run_lint):
    if shared_crd_dir() is None:
        pytest.skip("../shared/k8s-crds not found: CRD check skipped")
    template = repo_copy / "charts/medfoundry/templates/inferenceservice.yaml"
    _edit(template, "    minReplicas: {{ $isvc.minReplicas }}", "    minReplicas: {{ $isvc.minReplicas | quote }}")
    result = run_lint(repo_copy, "chart,crd")
    assert result.returncode == 1 and "spec/predictor/minReplicas" in result.stdout


def test_a_container_running_as_root_fails_the_policy_check(repo_copy, run_lint):
    template = repo_copy / "charts/medfoundry/templates/mlflow.yaml"
    _edit(
        template,
        '          securityContext:\n            {{- include "medfoundry.containerSecurityContext" . | nindent 12 }}',
        "          securityContext:\n            runAsUser: 0\n            runAsNonRoot: false",
    )
    result = run_lint(repo_copy, "chart,policy")
    assert result.returncode == 1
    assert "Deployment/mlflow: container mlflow: runAsNonRoot must be true" in result.stdout
    assert "Deployment/mlflow: container mlflow: runs as root (runAsUser: 0)" in result.stdout


def test_a_containerfile_ending_as_root_fails_hadolint(repo_copy, run_lint):
    containerfile = repo_copy / "containers/cpu/Containerfile"
    _edit(containerfile, "USER 10001:10001", "USER root")
    result = run_lint(repo_copy, "hadolint")
    assert result.returncode == 1 and "DL3002" in result.stdout


def test_checkov_flags_a_privileged_root_container(repo_copy, run_lint):
    template = repo_copy / "charts/medfoundry/templates/minio.yaml"
    _edit(
        template,
        '          securityContext:\n            {{- include "medfoundry.containerSecurityContext" . | nindent 12 }}',
        "          securityContext:\n            privileged: true\n            runAsUser: 0",
    )
    result = run_lint(repo_copy, "chart,checkov")
    assert result.returncode == 1
    assert "CKV_K8S_16" in result.stdout  # privileged containers
    assert "StatefulSet.medfoundry.minio" in result.stdout


def test_a_secret_committed_to_the_gitops_repo_fails(repo_copy, run_lint):
    base = repo_copy / "platform/gitops-template/apps/medfoundry-model/base"
    (base / "secret.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3"}, "stringData": {"k": "v"}})
    )
    _edit(base / "kustomization.yaml", "  - inferenceservice.yaml", "  - inferenceservice.yaml\n  - secret.yaml")
    result = run_lint(repo_copy, "kustomize")
    assert result.returncode == 1 and "Secret/s3: credentials never go to git" in result.stdout
