"""Entity-tree lookup: the Medical Entity Tree's facts about a node (kind, rarity and its basis, depth, parents,
children), by id or by name. The tree is the one the curate stage built (`use_entity_tree`, set by the RL stage from
the workspace's cached tree), so the facts the policy reads are the ones the rewards and curation use."""

from __future__ import annotations

from typing import Any

MAX_LISTED = 5
_state: dict[str, Any] = {"tree": None, "names": None}


def use_entity_tree(tree: Any) -> None:
    """Point `entity_lookup` at a medfoundry.entities.tree.EntityTree."""
    _state.update(tree=tree, names=None)


def _by_name(name: str) -> str | None:
    if _state["names"] is None:  # lower-cased name and synonyms -> node id, the first (priority-sorted) wins
        tree, names = _state["tree"], {}
        for node_id, node_name, synonyms in zip(tree.frame["id"], tree.frame["name"], tree.frame["synonyms"],
                                                strict=True):
            for form in (node_name, *synonyms):
                names.setdefault(" ".join(form.lower().split()), node_id)
        _state["names"] = names
    return _state["names"].get(" ".join(name.lower().split()))


def _rarity(node: dict[str, Any]) -> str:
    if node["rare"]:
        codes = [b["code"] for b in node["attributes"].get("rare_basis", [])]
        return "rare" + (f" (basis: {', '.join(codes[:MAX_LISTED])})" if codes else "")
    reason = node["attributes"].get("not_rare_reason")
    return f"not rare ({reason})" if reason else "not rare"


def entity_lookup(query: str) -> str:
    """
    Look up a node of the Medical Entity Tree (ICD-10-CM, HPO, diseases, drugs) by id or exact name or synonym: its
    kind, rarity, depth, parents and children.

    Args:
        query: A node id such as "ORPHA:558" or "HP:0001250", or a name such as "Marfan syndrome".

    Returns:
        One line per fact: "id: name", kind, rarity, depth, parents and children (at most five listed each).
    """
    tree = _state["tree"]
    if tree is None:
        raise RuntimeError("entity_lookup has no entity tree: the RL stage sets it (use_entity_tree)")
    query = query.strip()
    if not query:
        return "empty query: give an entity id or name"
    node_id = tree.resolve(query) or tree.resolve(query.upper()) or _by_name(query)
    if node_id is None:
        return f"no entity {query!r} in the tree"
    node = tree.node(node_id)
    parents, children = node["parent_ids"], tree.children(node_id)

    def listed(ids: list[str]) -> str:
        shown = ", ".join(f"{i} {tree.name(i)}" for i in ids[:MAX_LISTED] if i in tree)
        return (shown or "none") + (f" (+{len(ids) - MAX_LISTED} more)" if len(ids) > MAX_LISTED else "")

    return "\n".join([
        f"{node_id}: {node['name']}",
        f"kind: {node['kind']}",
        f"rarity: {_rarity(node)}",
        f"depth: {node['depth']}",
        f"parents: {listed(parents)}",
        f"children: {len(children)}" + (f": {listed(children)}" if children else ""),
    ])
