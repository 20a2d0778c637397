"""The pipeline registry and compilation to KFP v2 IR YAML."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medfoundry.config import Profile

# name -> module exposing `pipeline`, `build(cluster_settings)`, `STAGES` and `PIPELINE_NAME`
PIPELINES: dict[str, str] = {
    "medical-mllm-recipe": "pipelines.medical_mllm_recipe",
    "medical-data-curation": "pipelines.medical_data_curation",
}


class UnknownPipeline(KeyError):
    def __str__(self) -> str:
        return f"unknown pipeline {self.args[0]!r}: available {', '.join(sorted(PIPELINES))}"


def pipeline_module(name: str) -> ModuleType:
    if name not in PIPELINES:
        raise UnknownPipeline(name)
    return importlib.import_module(PIPELINES[name])


def compile_pipeline(name: str, out_dir: Path, profile: Profile | None = None) -> Path:
    from kfp import compiler

    from medfoundry import __version__

    module = pipeline_module(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.yaml"
    pipeline = module.build(profile) if profile is not None else module.pipeline
    compiler.Compiler().compile(pipeline, str(target), type_check=True)
    # The package version travels inside the IR so an uploaded version can be traced back to its source.
    text = target.read_text()
    target.write_text(f"# medfoundry {__version__}\n{text}")
    return target


def compile_all(out_dir: Path, profile: Profile | None = None) -> list[Path]:
    return [compile_pipeline(name, out_dir, profile) for name in sorted(PIPELINES)]
