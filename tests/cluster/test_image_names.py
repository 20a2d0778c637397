"""Versioned image names: <registry>/medfoundry-<kind>:<package version>-<git sha7>, with env overrides."""

from __future__ import annotations

import pytest

from medfoundry import __version__, images


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("MEDFOUNDRY_IMAGE", "MEDFOUNDRY_IMAGE_REGISTRY", "MEDFOUNDRY_GIT_SHA"):
        monkeypatch.delenv(name, raising=False)


def test_default_names_carry_version_and_git_sha():
    sha = images.git_sha()
    assert sha == "nogit" or len(sha) == 7
    assert images.component_image() == f"ghcr.io/medfoundry/medfoundry-cpu:{__version__}-{sha}"
    assert images.component_image("gpu") == f"ghcr.io/medfoundry/medfoundry-gpu:{__version__}-{sha}"


def test_git_sha_from_the_environment_wins(monkeypatch):
    monkeypatch.setenv("MEDFOUNDRY_GIT_SHA", "0123456789ABCDEF")
    assert images.image_tag() == f"{__version__}-0123456"
    monkeypatch.setenv("MEDFOUNDRY_GIT_SHA", "not-a-sha")
    with pytest.raises(ValueError, match="not a hex commit id"):
        images.git_sha()


def test_without_git_the_tag_says_nogit(monkeypatch):
    monkeypatch.setattr(images, "_git_sha_from_repo", lambda: None)
    assert images.image_tag() == f"{__version__}-nogit"


def test_registry_and_full_overrides(monkeypatch):
    monkeypatch.setenv("MEDFOUNDRY_GIT_SHA", "abcdef0")
    monkeypatch.setenv("MEDFOUNDRY_IMAGE_REGISTRY", "registry.example.org:5000/ml/")
    assert images.component_image("gpu") == f"registry.example.org:5000/ml/medfoundry-gpu:{__version__}-abcdef0"
    monkeypatch.setenv("MEDFOUNDRY_IMAGE", "registry.example.org/medfoundry:2.0.0")
    assert images.component_image("cpu") == images.component_image("gpu") == "registry.example.org/medfoundry:2.0.0"


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="cpu' or 'gpu"):
        images.component_image("tpu")


@pytest.mark.parametrize(
    ("ref", "versioned"),
    [
        ("ghcr.io/medfoundry/medfoundry-cpu:0.1.0-abcdef0", True),
        ("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", True),
        ("python@sha256:" + "a" * 64, True),
        ("python:latest", False),
        ("python", False),
        ("localhost:5000/python", False),
    ],
)
def test_is_versioned_image(ref, versioned):
    assert images.is_versioned_image(ref) is versioned
