"""ICD-10-CM lookup over the code set shipped by PyPI `simple-icd-10-cm` (public domain, CDC/NCHS)."""

from __future__ import annotations

import re
from functools import lru_cache

MAX_RESULTS = 5


@lru_cache(maxsize=1)
def _index() -> list[tuple[str, str]]:
    import simple_icd_10_cm as icd

    return [(code, icd.get_description(code).lower()) for code in icd.get_all_codes(with_dots=True)]


def icd10_lookup(query: str) -> str:
    """
    Look up ICD-10-CM diagnosis codes: the description of a code, or the codes whose description contains every
    word of a diagnosis.

    Args:
        query: An ICD-10-CM code such as "E11.9", or diagnosis words such as "type 2 diabetes".

    Returns:
        Matching "CODE: description" lines, at most five.
    """
    import simple_icd_10_cm as icd

    query = query.strip()
    if not query:
        return "empty query: give an ICD-10-CM code or diagnosis words"
    code = query.upper()
    if icd.is_valid_item(code):
        return f"{code}: {icd.get_description(code)}"
    words = re.findall(r"[a-z0-9]+", query.lower())
    hits = [c for c, description in _index() if all(re.search(rf"\b{re.escape(w)}", description) for w in words)]
    if not hits:
        return f"no ICD-10-CM code matches {query!r}"
    hits.sort(key=lambda c: (len(c), c))  # categories before their subcodes
    return "\n".join(f"{c}: {icd.get_description(c)}" for c in hits[:MAX_RESULTS])
