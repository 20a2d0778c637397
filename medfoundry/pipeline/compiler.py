"""The pipeline registry and compilation to KFP v2 IR YAML."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

# name -> module exposing `pipeline` and `PIPELINE_NAME`
PIPELINES: dict[str, str] = {
    "medical-mllm-recipe": "pipelines.medical_mllm_recipe",
}


class UnknownPipeline(KeyError):
    def __str__(self) -> str:
        return f"unknown pipeline {self.args[0]!r}: available {', '.join(sorted(PIPELINES))}"


def pipeline_module(name: str) -> ModuleType:
    if name not in PIPELINES:
        raise UnknownPipeline(name)
    return importlib.import_module(PIPELINES[name])


def compile_pipeline(name: str, out_dir: Path) -> Path:
    from kfp import compiler

    from medfoundry import __version__

    module = pipeline_module(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.yaml"
    compiler.Compiler().compile(module.pipeline, str(target), pipeline_parameters=None, type_check=True)
    # The package version travels inside the IR so an uploaded version can be traced back to its source.
    text = target.read_text()
    target.write_text(f"# medfoundry {__version__}\n{text}")
    return target


def compile_all(out_dir: Path) -> list[Path]:
    return [compile_pipeline(name, out_dir) for name in sorted(PIPELINES)]
