"""The GitOps repository that promotion commits to (Argo CD syncs it to the cluster).

Layout (shared with platform/, which may seed it from platform/gitops-template/):
    apps/medfoundry-model/base/kustomization.yaml
    apps/medfoundry-model/base/inferenceservice.yaml
    apps/medfoundry-model/overlays/<env>/kustomization.yaml
    apps/medfoundry-model/overlays/<env>/inferenceservice.yaml   the full InferenceService promotion writes

Every promotion and rollback is one commit whose message ends in `Medfoundry-*` trailers (action, environment,
model, version, previous champion), so rollback finds what to undo from the history alone.
Plain `git` through subprocess; a lock file serializes writers on one machine.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfoundry.config.release import GitOpsConfig
from medfoundry.release.manifests import default_inference_service

APP_DIR = "apps/medfoundry-model"
MANIFEST_FILE = "inferenceservice.yaml"
KUSTOMIZATION = "kustomization.yaml"
TRAILER_PREFIX = "Medfoundry-"
TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "platform" / "gitops-template"
_URL = re.compile(r"^([a-z][a-z0-9+.-]*://|[^/\s]+@[^/\s]+:)", re.IGNORECASE)


class GitOpsError(RuntimeError):
    pass


@dataclass
class CommitInfo:
    sha: str
    subject: str
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def action(self) -> str:
        return self.trailers.get("Action", "")


def is_remote_url(value: str) -> bool:
    return bool(_URL.match(value))


class GitOpsRepo:
    """A local checkout of the GitOps repository; `push_target` (remote name or URL) is pushed after commits."""

    def __init__(self, path: Path, branch: str = "main", push_target: str | None = None):
        self.path = Path(path)
        self.branch = branch
        self.push_target = push_target

    # ------------------------------------------------------------------ setup
    @classmethod
    def open(cls, gitops: GitOpsConfig, workspace_gitops: Path) -> GitOpsRepo:
        """The configured checkout, created on first use: cloned from the remote when there is one, else a new
        repository seeded from platform/gitops-template/ (or a minimal base)."""
        if gitops.repo and is_remote_url(gitops.repo):
            path, clone_from, push_target = workspace_gitops, gitops.repo, gitops.remote or "origin"
        else:
            path = Path(gitops.repo).expanduser() if gitops.repo else workspace_gitops
            push_target = gitops.remote
            clone_from = gitops.remote if gitops.remote and (is_remote_url(gitops.remote) or Path(gitops.remote).exists()) else None
        repo = cls(path.resolve(), gitops.branch, push_target)
        if not (repo.path / ".git").exists():
            repo._create(clone_from, gitops)
        return repo

    def _create(self, clone_from: str | None, gitops: GitOpsConfig) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if clone_from:
            self._git_at(self.path.parent, "clone", "--quiet", clone_from, str(self.path))
            remote_branch = f"origin/{self.branch}"
            if self._run("rev-parse", "--verify", "--quiet", remote_branch, check=False).returncode == 0:
                self._run("checkout", "--quiet", "-B", self.branch, remote_branch)
                return
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._git_at(self.path, "init", "--quiet", f"--initial-branch={self.branch}")
        self._run("checkout", "--quiet", "-B", self.branch, check=False)
        self._seed(gitops)
        self._run("add", "-A")
        self.commit("Seed GitOps repository for medfoundry model serving", {"Action": "seed"})

    def _seed(self, gitops: GitOpsConfig) -> None:
        if TEMPLATE_DIR.is_dir():
            shutil.copytree(TEMPLATE_DIR, self.path, dirs_exist_ok=True)
            return
        base = self.path / APP_DIR / "base"
        base.mkdir(parents=True, exist_ok=True)
        _write_yaml(base / KUSTOMIZATION, _kustomization(resources=[MANIFEST_FILE]))
        _write_yaml(base / MANIFEST_FILE, default_inference_service(gitops, "base"))
        (self.path / "README.md").write_text(
            "# medfoundry GitOps repository\n\nWritten by `medfoundry promote` / `medfoundry rollback`; "
            "Argo CD syncs `apps/medfoundry-model/overlays/<env>`.\n"
        )

    # ------------------------------------------------------------------ manifests
    def overlay_dir(self, env: str) -> Path:
        return self.path / APP_DIR / "overlays" / env

    def manifest_path(self, env: str) -> Path:
        return self.overlay_dir(env) / MANIFEST_FILE

    def read_manifest(self, env: str) -> dict[str, Any] | None:
        path = self.manifest_path(env)
        return _yaml().load(path.read_text()) if path.is_file() else None

    def write_manifest(self, env: str, manifest: dict[str, Any], namespace: str) -> list[Path]:
        """Write the overlay's InferenceService (and a kustomization when the overlay is new); return paths written."""
        written = []
        kustomization = self.overlay_dir(env) / KUSTOMIZATION
        if not kustomization.is_file():
            _write_yaml(
                kustomization,
                _kustomization(resources=["../../base"], namespace=namespace, patches=[{"path": MANIFEST_FILE}]),
            )
            written.append(kustomization)
        _write_yaml(self.manifest_path(env), manifest)
        written.append(self.manifest_path(env))
        return written

    # ------------------------------------------------------------------ git
    def _git_at(self, cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        # Commits need an identity; a machine without git config still gets a clear author.
        env.setdefault("GIT_AUTHOR_NAME", "medfoundry")
        env.setdefault("GIT_AUTHOR_EMAIL", "medfoundry@localhost")
        env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
        env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
        proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise GitOpsError(f"git {' '.join(args[:2])} failed in {cwd}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self._git_at(self.path, *args, check=check)

    @contextmanager
    def locked(self) -> Iterator[None]:
        lock = self.path / ".git" / "medfoundry.lock"
        with lock.open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def sync(self) -> None:
        """Fast-forward from the push target before writing, so a push is never rejected for a stale checkout."""
        if not self.push_target:
            return
        if self._run("ls-remote", "--exit-code", "--heads", self.push_target, self.branch, check=False).returncode == 0:
            self._run("pull", "--quiet", "--ff-only", self.push_target, self.branch)

    def head(self) -> str:
        return self._run("rev-parse", "HEAD").stdout.strip()

    def is_dirty(self, paths: list[Path] | None = None) -> bool:
        args = ["status", "--porcelain"] + (["--", *[str(p) for p in paths]] if paths else [])
        return bool(self._run(*args).stdout.strip())

    def commit(self, subject: str, trailers: dict[str, str], body: str = "", paths: list[Path] | None = None) -> str:
        if paths:
            self._run("add", "-A", "--", *[str(p) for p in paths])
        lines = [f"{TRAILER_PREFIX}{k}: {v}" for k, v in trailers.items()]
        message = subject + "\n\n" + (body.strip() + "\n\n" if body.strip() else "") + "\n".join(lines) + "\n"
        self._run("commit", "--quiet", "-m", message)
        return self.head()

    def drop_last_commit(self) -> None:
        """Undo a local commit that could not be pushed (nothing else has seen it)."""
        self._run("reset", "--quiet", "--hard", "HEAD~1")

    def push(self) -> bool:
        if not self.push_target:
            return False
        self._run("push", "--quiet", self.push_target, f"HEAD:refs/heads/{self.branch}")
        return True

    def history(self, env: str) -> list[CommitInfo]:
        """Commits touching an environment's overlay, newest first."""
        out = self._run(
            "log", "--format=%H%x1f%s%x1f%B%x1e", "--", str(self.overlay_dir(env).relative_to(self.path))
        ).stdout
        commits = []
        for entry in out.split("\x1e"):
            if not entry.strip():
                continue
            sha, subject, body = entry.strip("\n").split("\x1f", 2)
            trailers = {}
            for line in body.splitlines():
                if line.startswith(TRAILER_PREFIX) and ":" in line:
                    key, _, value = line[len(TRAILER_PREFIX) :].partition(":")
                    trailers[key.strip()] = value.strip()
            commits.append(CommitInfo(sha, subject, trailers))
        return commits

    def last_promotion(self, env: str) -> CommitInfo | None:
        """The newest promotion of `env` that no rollback has undone yet."""
        undone = set()
        for info in self.history(env):
            if info.action == "rollback":
                undone.add(info.trailers.get("Reverts", ""))
            elif info.action == "promote" and info.sha not in undone:
                return info
        return None

    def changed_paths(self, sha: str) -> list[str]:
        out = self._run("diff-tree", "--no-commit-id", "--name-only", "-r", sha).stdout
        return [line for line in out.splitlines() if line]

    def restore_before(self, sha: str) -> list[Path]:
        """Put every file `sha` changed back to its content in the parent (deleting files it created)."""
        restored = []
        for rel in self.changed_paths(sha):
            target = self.path / rel
            exists_before = self._run("cat-file", "-e", f"{sha}^:{rel}", check=False).returncode == 0
            if exists_before:
                self._run("checkout", f"{sha}^", "--", rel)
            elif target.exists():
                target.unlink()
            restored.append(target)
        overlay_root = self.path / APP_DIR / "overlays"
        for folder in sorted(overlay_root.glob("*"), reverse=True) if overlay_root.exists() else []:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        return restored


def _kustomization(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", **fields}


def _yaml() -> Any:
    """Round-trip YAML: the platform's comments and key order survive a promotion, so the diff shows only what
    promotion changed."""
    from ruamel.yaml import YAML

    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.width = 4096
    return rt


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        _yaml().dump(data, fh)
