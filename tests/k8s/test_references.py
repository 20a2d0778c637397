"""The `references` check of `make lint-k8s` fails on each kind of broken reference, and on an app deploying into a
namespace its AppProject does not allow. Unit cases run the check's functions on small manifests; one case breaks a
copy of the repository and runs the lint as `make lint-k8s` does."""

from __future__ import annotations

import copy

import pytest


def _deployment(**pod):
    return {
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "ns"},
        "spec": {"template": {"spec": {"containers": [{"name": "c"}], **pod}}},
    }


def _defined(kind, name, namespace="ns"):
    return {"kind": kind, "metadata": {"name": name, "namespace": namespace}}


CASES = {
    "Secret": (
        {"containers": [{"name": "c", "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]}]},
        "creds",
    ),
    "ConfigMap": ({"volumes": [{"name": "v", "configMap": {"name": "settings"}}]}, "settings"),
    "PersistentVolumeClaim": ({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "cache"}}]}, "cache"),
    "ServiceAccount": ({"serviceAccountName": "runner"}, "runner"),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_kind_of_missing_reference_fails(lint_k8s, kind):
    pod, name = CASES[kind]
    workload = _deployment(**pod)
    [error] = lint_k8s.reference_errors([workload], "ns", set(), "case")
    assert f"refers to {kind} {name!r}" in error
    # Rendered in the same namespace, or operator-provided: resolved.
    assert lint_k8s.reference_errors([workload, _defined(kind, name)], "ns", set(), "case") == []
    assert lint_k8s.reference_errors([workload], "ns", {(kind, name)}, "case") == []
    # Rendered in another namespace does not count.
    assert lint_k8s.reference_errors([workload, _defined(kind, name, "elsewhere")], "ns", set(), "case")


def test_trainjob_and_serviceaccount_references_are_checked(lint_k8s):
    from medfoundry.cluster.trainjob import build_trainjob
    from medfoundry.config import load_profile

    trainjob = build_trainjob(load_profile("production-7b"), "sft", ["train", "sft"], "mf-sft")
    errors = lint_k8s.reference_errors([trainjob], "medfoundry", set(), "case")
    named = " ".join(errors)
    assert "ServiceAccount 'medfoundry-training'" in named and "Secret 'medfoundry-s3'" in named
    account = {"kind": "ServiceAccount", "metadata": {"name": "sa"}, "secrets": [{"name": "pull"}]}
    assert "Secret 'pull'" in lint_k8s.reference_errors([account], "ns", set(), "case")[0]


def test_an_app_outside_its_projects_namespaces_fails(lint_k8s):
    project = {"kind": "AppProject", "metadata": {"name": "p"}, "spec": {"destinations": [{"namespace": "medfoundry-*"}]}}
    app = {
        "kind": "Application",
        "metadata": {"name": "platform-dev"},
        "spec": {
            "project": "p",
            "destination": {"namespace": "medfoundry-dev"},
            "source": {"helm": {"valueFiles": ["values-dev.yaml"]}},
        },
    }
    assert lint_k8s.app_namespace_errors([project, app], {"values-dev.yaml": {"medfoundry-dev"}}) == []
    [error] = lint_k8s.app_namespace_errors([project, app], {"values-dev.yaml": {"medfoundry-dev", "kubeflow"}})
    assert "deploys into kubeflow" in error
    moved = copy.deepcopy(app)
    moved["spec"]["destination"]["namespace"] = "default"
    assert "deploys into default" in lint_k8s.app_namespace_errors([project, moved], {})[0]


def test_operator_provided_table_is_read_from_the_deploy_doc(lint_k8s):
    from pathlib import Path

    provided = lint_k8s.operator_provided(Path(__file__).resolve().parents[2] / "docs" / "deploy.md")
    assert ("Secret", "medfoundry-serving-api-key") in provided and ("Secret", "medfoundry-s3") in provided


def test_lint_fails_on_a_repository_with_an_undocumented_secret(repo_copy, run_lint):
    import shutil
    from pathlib import Path

    (repo_copy / "docs").mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "docs" / "deploy.md", repo_copy / "docs" / "deploy.md")
    values = repo_copy / "charts/medfoundry/values-dev.yaml"
    text = values.read_text()
    assert "existingSecret: medfoundry-s3" in text
    values.write_text(text.replace("existingSecret: medfoundry-s3", "existingSecret: nobody-made-this", 1))
    result = run_lint(repo_copy, "references")
    assert result.returncode == 1
    assert "refers to Secret 'nobody-made-this'" in result.stdout
