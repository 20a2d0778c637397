"""Read owl:Class entries of an OBO-style OWL (RDF/XML) file, e.g. the DO imports symp_import.owl / uberon_import.owl."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

_NS = {
    "owl": "http://www.w3.org/2002/07/owl#",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "oboInOwl": "http://www.geneontology.org/formats/oboInOwl#",
    "obo": "http://purl.obolibrary.org/obo/",
}
_RDF_ABOUT = f"{{{_NS['rdf']}}}about"
_RDF_RESOURCE = f"{{{_NS['rdf']}}}resource"
_SYNONYM_TAGS = ("hasExactSynonym", "hasRelatedSynonym", "hasNarrowSynonym")


def _curie(iri: str) -> str:
    """http://purl.obolibrary.org/obo/UBERON_0000057 -> UBERON:0000057."""
    local = iri.rsplit("/", 1)[-1]
    prefix, _, number = local.partition("_")
    return f"{prefix}:{number}" if number else local


def iter_owl_classes(path: Path) -> Iterator[dict]:
    """Yield {id, name, def, synonyms, is_a, xrefs} for each named, non-deprecated owl:Class."""
    for _, element in ET.iterparse(str(path), events=("end",)):
        if element.tag != f"{{{_NS['owl']}}}Class" or _RDF_ABOUT not in element.attrib:
            continue
        if element.findtext("owl:deprecated", default="", namespaces=_NS).strip() == "true":
            element.clear()
            continue
        name = element.findtext("rdfs:label", default="", namespaces=_NS).strip()
        if name:
            yield {
                "id": element.findtext("oboInOwl:id", default="", namespaces=_NS)
                or _curie(element.attrib[_RDF_ABOUT]),
                "name": name,
                "def": element.findtext("obo:IAO_0000115", default="", namespaces=_NS).strip(),
                "synonyms": [
                    node.text.strip()
                    for tag in _SYNONYM_TAGS
                    for node in element.findall(f"oboInOwl:{tag}", _NS)
                    if node.text and node.text.strip()
                ],
                "is_a": [
                    _curie(node.attrib[_RDF_RESOURCE])
                    for node in element.findall("rdfs:subClassOf", _NS)
                    if _RDF_RESOURCE in node.attrib
                ],
                "xrefs": [
                    node.text.strip() for node in element.findall("oboInOwl:hasDbXref", _NS) if node.text
                ],
            }
        element.clear()
