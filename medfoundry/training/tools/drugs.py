"""Drug lookup over the dictionary shipped by PyPI `drug-named-entity-recognition` (MIT; MeSH, DrugBank ids)."""

from __future__ import annotations


def drug_lookup(name: str) -> str:
    """
    Look up a drug by generic or brand name: its canonical name, synonyms and identifiers.

    Args:
        name: A drug name such as "metformin" or "Glucophage".

    Returns:
        The canonical name, MeSH tree numbers, DrugBank id and a few synonyms, or a not-found message.
    """
    from drug_named_entity_recognition import find_drugs

    tokens = name.strip().split()
    if not tokens:
        return "empty name: give a drug name"
    found = find_drugs(tokens, is_include_structure=False)
    if not found:
        return f"no drug named {name!r} in the dictionary"
    drug = found[0][0]
    synonyms = ", ".join(sorted(drug.get("synonyms", []))[:5])
    mesh = ", ".join(drug.get("mesh_tree") or []) or "none"
    return (
        f"{drug['name']} (DrugBank {drug.get('drugbank_id') or 'n/a'}, MeSH tree {mesh})"
        + (f"; synonyms: {synonyms}" if synonyms else "")
    )
