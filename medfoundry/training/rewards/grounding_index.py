"""Entity-level evidence for rewards: the medical entity tree's linker finds the entities an answer claims and the
entities the item's evidence names; the tree supplies the relations between them (is-a, and the disease ->
phenotype / symptom / inheritance links in node attributes)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GroundingIndex:
    linker: Any  # medfoundry.entities.linker.Linker
    tree: Any  # medfoundry.entities.tree.EntityTree
    _related: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_tree(cls, tree: Any) -> GroundingIndex:
        from medfoundry.entities.linker import Linker

        return cls(Linker.from_tree(tree), tree)

    def entities(self, text: str) -> set[str]:
        """Node ids of the affirmed (not negated) entity mentions in `text`."""
        return {m.id for m in self.linker.link(text) if not m.negated} if text.strip() else set()

    def related(self, node_id: str) -> frozenset[str]:
        """The node, its ancestors, its children, and the nodes its attributes link to (both directions)."""
        cached = self._related.get(node_id)
        if cached is not None:
            return cached
        if node_id not in self.tree:
            return frozenset({node_id})
        linked = set(self.attribute_links().get(node_id, ()))
        result = frozenset({node_id, *self.tree.ancestors(node_id), *self.tree.children(node_id), *linked})
        self._related[node_id] = result
        return result

    def attribute_links(self) -> dict[str, set[str]]:
        links = self.__dict__.get("_links")
        if links is None:
            links = {}
            for node_id, raw in zip(self.tree.frame["id"], self.tree.frame["attributes"], strict=True):
                attributes = json.loads(raw) if isinstance(raw, str) else (raw or {})
                for value in attributes.values():
                    for target in value if isinstance(value, list) else []:
                        if isinstance(target, str) and target in self.tree:
                            links.setdefault(node_id, set()).add(target)
                            links.setdefault(target, set()).add(node_id)
            self.__dict__["_links"] = links
        return links

    def supported(self, claims: set[str], evidence: set[str]) -> set[str]:
        """The claims the evidence supports: named there, or related to an evidence entity through the tree."""
        return {c for c in claims if c in evidence or self.related(c) & evidence}
