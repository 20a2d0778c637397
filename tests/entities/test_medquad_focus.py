"""The linker finds each MedQuAD document's Focus entity in its questions (GHR and NINDS collections)."""

import re
import xml.etree.ElementTree as ET
from collections import defaultdict

import pytest

from medfoundry.entities.linker import Linker
from medfoundry.entities.tree import load_or_build_tree

pytestmark = pytest.mark.shared


def _documents(medquad):
    for folder in ("3_GHR_QA", "6_NINDS_QA"):
        for path in sorted((medquad / folder).glob("*.xml")):
            root = ET.parse(path).getroot()
            yield {
                "focus": (root.findtext("Focus") or "").strip(),
                "synonyms": [s.text for s in root.iter("Synonym") if s.text],
                "cuis": [c.text for c in root.iter("CUI") if c.text],
                "questions": [q.text or "" for q in root.iter("Question")],
            }


def test_focus_entity_found_in_questions(shared_dir):
    ontology_dir = shared_dir / "data" / "ontologies" / "disease_ontology"
    medquad = shared_dir / "data" / "medquad"
    if not ontology_dir.is_dir() or not medquad.is_dir():
        pytest.skip("shared/data lacks the Disease Ontology or MedQuAD")
    # the workspace cache (keyed by source versions): built once (~20 s), then reused by later runs and the demo
    tree, folder = load_or_build_tree(ontology_dir)
    linker = Linker.cached(tree, folder)
    nodes_by_cui = defaultdict(set)
    for node_id, codes in zip(tree.frame["id"], tree.frame["source_codes"], strict=True):
        for code in codes:
            if code.startswith(("UMLS:", "UMLS_CUI:")):
                nodes_by_cui[code.split(":", 1)[1]].add(node_id)
    documents = [d for d in _documents(medquad) if d["focus"]]
    assert len(documents) > 1300
    linked = iter(linker.link_batch([q for d in documents for q in d["questions"]]))
    found = 0
    for document in documents:
        # the Focus entity: the node its name (or a listed synonym, or its UMLS CUI) links to in the tree
        names = [document["focus"], re.sub(r"\s*\([^)]*\)", "", document["focus"]), *document["synonyms"]]
        focus = {linker.lookup(name) for name in names} - {None}
        focus |= {node for cui in document["cuis"] for node in nodes_by_cui.get(cui, ())}
        in_questions = {m.id for _ in document["questions"] for m in next(linked)}
        found += bool(focus & in_questions)
    assert found / len(documents) >= 0.80, f"{found}/{len(documents)}"
