"""The images carry the Feast feature repository (before: `.dockerignore` kept `feature_store/` out of the build
context, so the Feast servers and curation in a pod had no repository), and `make images` says what it did."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_feature_store_is_in_the_build_context_and_the_images():
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    assert "!feature_store/" in lines
    for kind in ("cpu", "gpu"):
        assert "COPY feature_store /opt/medfoundry/feature_store" in (REPO / "containers" / kind / "Containerfile").read_text()


def test_make_images_says_so_when_no_container_tool_exists(tmp_path):
    import shutil

    # A PATH without podman/docker/buildah (this test never builds images, whatever the machine has).
    out = subprocess.run(
        [shutil.which("make"), "-s", "images"], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"PATH": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert "make images: no container tool (podman, docker or buildah)" in out.stdout
