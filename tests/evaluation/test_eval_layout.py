"""Layout: evaluation and training share medfoundry.tasks and never import each other; one benchmark per file."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "medfoundry"


def _imports(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.setdefault(node.module, set()).add(str(path.relative_to(PACKAGE)))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    found.setdefault(alias.name, set()).add(str(path.relative_to(PACKAGE)))
    return found


def test_evaluation_and_training_do_not_import_each_other():
    evaluation, training = _imports(PACKAGE / "evaluation"), _imports(PACKAGE / "training")
    assert {m: f for m, f in evaluation.items() if m.startswith("medfoundry.training")} == {}
    assert {m: f for m, f in training.items() if m.startswith("medfoundry.evaluation")} == {}
    assert any(m.startswith("medfoundry.tasks") for m in training) and any(m.startswith("medfoundry.tasks") for m in evaluation)


def test_one_benchmark_per_file():
    from medfoundry.evaluation.benchmarks import BENCHMARKS

    files = {cls.__module__.rsplit(".", 1)[1]: name for name, cls in BENCHMARKS.items()}
    assert sorted(files) == sorted(BENCHMARKS) and all(module == name for module, name in files.items())
