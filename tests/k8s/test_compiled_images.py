"""Every component of every compiled pipeline names a versioned image: <registry>/medfoundry-<kind>:<version>-<sha7>."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from medfoundry import __version__
from medfoundry.images import is_versioned_image

REPO = Path(__file__).resolve().parents[2]


def test_compiled_components_name_versioned_images(tmp_path):
    # A fresh process: component decorators resolve their base image at import time.
    env = {**os.environ, "MEDFOUNDRY_GIT_SHA": "abcdef0123", "MEDFOUNDRY_IMAGE_REGISTRY": "registry.example.org/ml"}
    env.pop("MEDFOUNDRY_IMAGE", None)
    code = "import sys; from pathlib import Path; from medfoundry.pipeline.compiler import compile_all; compile_all(Path(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, env=env, check=True, timeout=300)
    compiled = sorted(tmp_path.glob("*.yaml"))
    assert compiled, "no pipeline compiled"
    for path in compiled:
        spec = next(yaml.safe_load_all(path.read_text()))
        executors = spec["deploymentSpec"]["executors"]
        assert executors
        for name, executor in executors.items():
            image = executor["container"]["image"]
            assert is_versioned_image(image), f"{path.name}: {name} uses unversioned image {image}"
            assert image in (
                f"registry.example.org/ml/medfoundry-cpu:{__version__}-abcdef0",
                f"registry.example.org/ml/medfoundry-gpu:{__version__}-abcdef0",
            ), f"{path.name}: {name} uses {image}, not a medfoundry image of this build"
