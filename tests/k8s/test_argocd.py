"""GitOps: one ApplicationSet generates every environment's platform and model apps, platform first; every
generated app deploys only where the AppProject allows."""

from __future__ import annotations

from pathlib import Path

import yaml

ARGOCD = Path(__file__).resolve().parents[2] / "platform" / "argocd"


def _docs():
    return [d for f in sorted(ARGOCD.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def test_one_applicationset_replaces_the_per_environment_applications():
    kinds = [d["kind"] for d in _docs() if d["kind"] != "Kustomization"]
    assert sorted(kinds) == ["AppProject", "ApplicationSet"]  # before: six hand-written Applications


def test_platform_syncs_before_models(lint_k8s):
    [appset] = [d for d in _docs() if d["kind"] == "ApplicationSet"]
    elements = appset["spec"]["generators"][0]["list"]["elements"]
    assert {(e["env"], e["layer"]) for e in elements} == {
        (env, layer) for env in ("dev", "staging", "prod") for layer in ("platform", "model")
    }
    waves = {e["layer"]: int(e["wave"]) for e in elements}
    assert waves["platform"] < waves["model"]
    assert appset["spec"]["template"]["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "{{.wave}}"
    steps = appset["spec"]["strategy"]["rollingSync"]["steps"]
    assert [s["matchExpressions"][0]["values"] for s in steps] == [["platform"], ["model"]]
    rendered = {f"values-{env}.yaml": {f"medfoundry-{env}"} for env in ("dev", "staging", "prod")}
    assert lint_k8s.app_namespace_errors(_docs(), rendered) == []
