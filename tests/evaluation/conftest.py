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
    tree = build_tree(None, 300)
    # Rarity comes from Orphanet / the DO rare slim, which the first 300 nodes per source do not reach: flag one
    # linkable disease rare so the rare tier is exercised (rarity rules themselves are tested in tests/entities).
    frame = tree.frame
    diseases = frame.index[(frame["kind"] == "disease") & frame["linkable"].astype(bool)
                           & (frame["name"].str.len() > 8) & ~frame["name"].str.contains(r"[(,\[]")]
    frame.loc[diseases[0], "rare"] = True
    tree.save(folder)
    return folder
