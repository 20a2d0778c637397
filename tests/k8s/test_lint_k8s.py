"""`make lint-k8s` on the repository as it is: every check passes (this is how `make test` runs it)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_lint_k8s_passes_on_the_repository(run_lint):
    result = run_lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("chart", "kustomize", "builtin", "policy", "references", "hadolint", "checkov"):
        assert f"ok    {check}" in result.stdout, result.stdout
    assert "lint-k8s passed" in result.stdout
