"""Versioned container image names for pipeline components, TrainJobs and serving.

Tags are `<package version>-<git sha7>` so a compiled pipeline always names the exact image built from its source.
Import-light on purpose: the pipeline compiler calls this at compile time.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Literal

from medfoundry import __version__

ImageKind = Literal["cpu", "gpu"]

DEFAULT_REGISTRY = "ghcr.io/medfoundry"
NO_GIT = "nogit"
_SHA = re.compile(r"^[0-9a-f]{7,40}$")


@lru_cache(maxsize=1)
def _git_sha_from_repo() -> str | None:
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=7", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip().lower()
    return sha if _SHA.match(sha) else None


def git_sha() -> str:
    """Seven hex digits of the source commit: $MEDFOUNDRY_GIT_SHA, else `git rev-parse`, else "nogit"."""
    configured = os.environ.get("MEDFOUNDRY_GIT_SHA", "").strip().lower()
    if configured:
        if not _SHA.match(configured):
            raise ValueError(f"MEDFOUNDRY_GIT_SHA={configured!r} is not a hex commit id")
        return configured[:7]
    return _git_sha_from_repo() or NO_GIT


def image_tag() -> str:
    """`<package version>-<git sha7>`, e.g. 0.1.0-1a2b3c4."""
    return f"{__version__}-{git_sha()}"


def component_image(kind: ImageKind = "cpu", registry: str = "") -> str:
    """The image for a pipeline component: ghcr.io/medfoundry/medfoundry-<kind>:<version>-<sha7>.

    $MEDFOUNDRY_IMAGE replaces the whole name (cpu and gpu alike; use it for a single-image setup);
    `registry` (the profile's cluster.image_registry), else $MEDFOUNDRY_IMAGE_REGISTRY, replaces the registry prefix.
    """
    if kind not in ("cpu", "gpu"):
        raise ValueError(f"image kind must be 'cpu' or 'gpu', got {kind!r}")
    explicit = os.environ.get("MEDFOUNDRY_IMAGE", "").strip()
    if explicit:
        return explicit
    registry = (registry or os.environ.get("MEDFOUNDRY_IMAGE_REGISTRY", "")).strip().rstrip("/") or DEFAULT_REGISTRY
    return f"{registry}/medfoundry-{kind}:{image_tag()}"


def is_versioned_image(ref: str) -> bool:
    """True for an image pinned to a version tag or a digest (not latest, not untagged)."""
    if "@sha256:" in ref:
        return True
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag or tag in ("", "latest"):
        return False
    return any(ch.isdigit() for ch in tag)
