"""Entity linking for evaluation, through the Medical Entity Tree's linker (`medfoundry.entities`).

It gives each item a rarity tier (from the question and its gold answer: "rare" when any linked entity is rare in
the tree, "common" when entities were linked but none is rare, "no_entity" otherwise) and the entity sets that
report generation is scored on. When the entities package or its tree is unavailable, evaluation runs without
them and the report says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RARE, COMMON, NO_ENTITY = "rare", "common", "no_entity"


class EntityLinkerAdapter:
    """Wraps `medfoundry.entities.linker.Linker`; negated mentions ("no effusion") keep their polarity."""

    def __init__(self, linker: Any, source: str = ""):
        self.linker = linker
        self.source = source

    def entity_ids(self, text: str) -> set[str]:
        return {f"!{m.id}" if m.negated else m.id for m in self.linker.link(text)}

    def rarity_tier(self, text: str) -> str:
        mentions = self.linker.link(text)
        if not mentions:
            return NO_ENTITY
        return RARE if any(m.rare for m in mentions) else COMMON

    def __repr__(self) -> str:
        return f"entity linker ({self.source})"


def load_linker(tree: str | Path | None = "auto", ontology_dir: str | None = None,
                max_nodes_per_source: int | None = None, workspace: str = "") -> EntityLinkerAdapter | None:
    """The linker over a saved tree folder (`tree`), or over the workspace's cached tree for these ontology inputs
    (`tree="auto"`: the cache the curate stage fills, built once when missing); None when `tree` is None/"none" or
    the entities package is missing."""
    if tree is None or str(tree) == "none":
        return None
    try:
        from medfoundry.entities.linker import Linker
        from medfoundry.entities.tree import EntityTree, load_or_build_tree
    except ImportError as err:
        log.warning("medfoundry.entities is not available (%s): no rarity tiers or entity metrics", err)
        return None
    try:
        if str(tree) == "auto":
            from medfoundry.workspace import Workspace

            loaded, folder = load_or_build_tree(
                Path(ontology_dir) if ontology_dir else None,
                max_nodes_per_source,
                cache_dir=Workspace.resolve(workspace).cache / "entity_tree",
            )
        else:
            folder = Path(tree)
            loaded = EntityTree.load(folder)
    except (OSError, ValueError) as err:
        log.warning("entity tree %s unavailable (%s): no rarity tiers or entity metrics", tree, err)
        return None
    try:
        linker = Linker.cached(loaded, folder)  # the automaton pickled beside the tree: ~0.5 s instead of ~5 s
    except OSError:  # a read-only tree folder
        linker = Linker.from_tree(loaded)
    return EntityLinkerAdapter(linker, f"{len(loaded)} nodes, {folder}")
