"""Fixtures for the evaluation tests (file builders and test servers live in evalfixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from evalfixtures import write_benchmarks


@pytest.fixture
def bench_root(tmp_path) -> Path:
    return write_benchmarks(tmp_path / "data")


@pytest.fixture(scope="session")
def small_tree(tmp_path_factory) -> Path:
    """A Medical Entity Tree from the first 300 nodes of each PyPI-shipped source, saved to a folder."""
    from medfoundry.entities.tree import build_tree

    folder = tmp_path_factory.mktemp("entity-tree") / "tree"
    build_tree(None, 300).save(folder)
    return folder
