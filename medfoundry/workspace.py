"""The local workspace: where an embedded (laptop) run keeps its state.

<root>/mlflow.db        sqlite MLflow backend store
<root>/mlartifacts/     MLflow artifact root (when tracking locally)
<root>/pipeline_root/   kfp.local artifacts of each task
<root>/store/           the default Storage for versioned datasets and models
<root>/gitops/          the default GitOps repository that promotion commits to
<root>/runs/            one JSON per local pipeline run (status per stage)
<root>/cache/           tokenizers, extracted ontologies, built models
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_root() -> Path | None:
    """The read-only shared folder (real data splits, CRD schemas) that tests and benchmarks use:
    $MEDFOUNDRY_SHARED, else `../shared` beside the checkout; None when absent. Nothing at run time needs it."""
    configured = os.environ.get("MEDFOUNDRY_SHARED")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared"
    return path if path.is_dir() else None


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def resolve(cls, configured: str = "") -> Workspace:
        root = configured or os.environ.get("MEDFOUNDRY_HOME") or ".medfoundry"
        path = Path(root).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def sub(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.sub("mlartifacts")

    @property
    def pipeline_root(self) -> Path:
        return self.sub("pipeline_root")

    @property
    def store(self) -> Path:
        return self.sub("store")

    @property
    def gitops(self) -> Path:
        return self.root / "gitops"

    @property
    def runs(self) -> Path:
        return self.sub("runs")

    @property
    def cache(self) -> Path:
        return self.sub("cache")
