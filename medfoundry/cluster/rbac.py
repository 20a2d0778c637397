"""What the pipeline runner's ServiceAccount may do, and why: the Kubernetes API calls of our own steps plus what
Kubeflow Pipelines v2 (driver, launcher) and Argo's executor do as the run's ServiceAccount. The chart's Role
(charts/medfoundry/templates/rbac.yaml) is exactly `runner_rules()`; tests/k8s keep the three in step by scanning our
source for API calls and rendering the chart.
"""

from __future__ import annotations

from typing import Any

# (apiGroup, resource) -> verbs our steps call (medfoundry.cluster.trainjob: create, then poll, delete on timeout).
STEP_CALLS: dict[tuple[str, str], frozenset[str]] = {
    ("trainer.kubeflow.org", "trainjobs"): frozenset({"create", "get", "delete"}),
}

# Kubeflow Pipelines v2 on Argo Workflows, per KFP's own pipeline-runner Role (manifests/kustomize/.../pipeline-runner
# and the argo permissions it adds): the Argo executor reports each step's outputs as a WorkflowTaskResult; the driver
# and launcher read their own Pod, the `kfp-launcher` ConfigMap (pipeline root) and the object-store credentials
# Secret it names.
KFP_RUNTIME_NEEDS: dict[tuple[str, str], frozenset[str]] = {
    ("argoproj.io", "workflowtaskresults"): frozenset({"create", "patch"}),
    ("", "pods"): frozenset({"get", "watch"}),
    ("", "configmaps"): frozenset({"get"}),
    ("", "secrets"): frozenset({"get"}),
}

# Only these objects of a resource (the launcher reads KFP's default object-store credentials Secret, no other).
RESOURCE_NAMES: dict[tuple[str, str], list[str]] = {("", "secrets"): ["mlpipeline-minio-artifact"]}

_VERB_ORDER = ("get", "watch", "list", "create", "patch", "update", "delete")


def runner_permissions() -> dict[tuple[str, str], frozenset[str]]:
    merged: dict[tuple[str, str], frozenset[str]] = {}
    for source in (STEP_CALLS, KFP_RUNTIME_NEEDS):
        for key, verbs in source.items():
            merged[key] = merged.get(key, frozenset()) | verbs
    return merged


def runner_rules() -> list[dict[str, Any]]:
    """The Role's rules, one per resource, in a stable order."""
    rules = []
    for (group, resource), verbs in sorted(runner_permissions().items()):
        rule: dict[str, Any] = {"apiGroups": [group], "resources": [resource]}
        if (group, resource) in RESOURCE_NAMES:
            rule["resourceNames"] = RESOURCE_NAMES[(group, resource)]
        rule["verbs"] = [v for v in _VERB_ORDER if v in verbs]
        rules.append(rule)
    return rules
