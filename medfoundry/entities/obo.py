"""A small OBO 1.2 reader: [Term] stanzas into plain dicts (id, name, synonyms, is_a, xrefs, subsets, def).

Only the tags the entity tree uses are kept; obsolete terms are skipped. hp.obo (19k terms) parses in ~1 s.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"\s*([A-Z]+)?\s*([^\s\[]+)?')


def _unescape(text: str) -> str:
    return text.replace('\\"', '"').replace("\\:", ":").replace("\\\\", "\\")


def _term(tags: dict[str, list[str]]) -> dict | None:
    if "id" not in tags or tags.get("is_obsolete", ["false"])[0] == "true":
        return None
    synonyms: list[dict] = []
    for raw in tags.get("synonym", []):
        match = _QUOTED.match(raw)
        if match:
            synonyms.append(
                {
                    "text": _unescape(match.group(1)),
                    "scope": match.group(2) or "RELATED",
                    "type": match.group(3) or "",
                }
            )
    definition = ""
    if tags.get("def"):
        match = _QUOTED.match(tags["def"][0])
        definition = _unescape(match.group(1)) if match else ""
    return {
        "id": tags["id"][0],
        "name": tags.get("name", [""])[0],
        "def": definition,
        "synonyms": synonyms,
        "is_a": [value.split("!")[0].strip().split()[0] for value in tags.get("is_a", [])],
        "xrefs": [value.split()[0] for value in tags.get("xref", [])],
        "alt_ids": tags.get("alt_id", []),
        "subsets": tags.get("subset", []),
    }


def iter_obo_terms(path: Path) -> Iterator[dict]:
    """Yield each non-obsolete [Term] stanza of an OBO file."""
    tags: dict[str, list[str]] | None = None
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if line.startswith("["):
                if tags is not None and (term := _term(tags)):
                    yield term
                tags = {} if line.strip() == "[Term]" else None
                continue
            if tags is None or not line or line.startswith("!"):
                continue
            key, _, value = line.partition(":")
            tags.setdefault(key.strip(), []).append(value.strip())
    if tags is not None and (term := _term(tags)):
        yield term


def obo_data_version(path: Path) -> str:
    """The `data-version:` header of an OBO file ('' when absent)."""
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("data-version:"):
                return line.split(":", 1)[1].strip()
            if line.startswith("["):
                break
    return ""
