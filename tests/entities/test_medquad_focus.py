"""The linker finds each MedQuAD document's Focus entity in its questions (GHR and NINDS collections), and the GHR
conditions that the Disease Ontology's rare slim or Orphanet call rare are flagged rare."""

import re
import xml.etree.ElementTree as ET
from collections import defaultdict

import pytest

from medfoundry.entities.normalize import normalize_form

pytestmark = pytest.mark.shared


def _documents(medquad, folders=("3_GHR_QA", "6_NINDS_QA")):
    for folder in folders:
        for path in sorted((medquad / folder).glob("*.xml")):
            root = ET.parse(path).getroot()
            yield {
                "collection": folder,
                "focus": (root.findtext("Focus") or "").strip(),
                "synonyms": [s.text for s in root.iter("Synonym") if s.text],
                "cuis": [c.text for c in root.iter("CUI") if c.text],
                "questions": [q.text or "" for q in root.iter("Question")],
            }


def _found(shared_dir, do_tree):
    """Per document with a Focus: its collection and the focus nodes the linker found in its questions."""
    medquad = shared_dir / "data" / "medquad"
    if not medquad.is_dir():
        pytest.skip("shared/data lacks MedQuAD")
    tree, linker = do_tree
    nodes_by_cui = defaultdict(set)
    for node_id, codes in zip(tree.frame["id"], tree.frame["source_codes"], strict=True):
        for code in codes:
            if code.startswith(("UMLS:", "UMLS_CUI:")):
                nodes_by_cui[code.split(":", 1)[1]].add(node_id)
    documents = [d for d in _documents(medquad) if d["focus"]]
    assert len(documents) > 1300
    linked = iter(linker.link_batch([q for d in documents for q in d["questions"]]))
    out = []
    for document in documents:
        # the Focus entity: the node its name (or a listed synonym, or its UMLS CUI) links to in the tree
        focus_name = normalize_form(document["focus"])
        names = [document["focus"], re.sub(r"\s*\([^)]*\)", "", document["focus"]), *document["synonyms"]]
        focus = {linker.lookup(name) for name in names} - {None}
        focus |= {node for cui in document["cuis"] for node in nodes_by_cui.get(cui, ())}
        hits = set()
        for question in document["questions"]:
            full_name_present = focus_name in normalize_form(question)
            for mention in next(linked):
                surface = normalize_form(question[mention.start : mention.end])
                # the longest full name wins: a shorter name inside the Focus ("Spastic paraplegia" inside
                # "Spastic paraplegia facial cutaneous lesions") found where the full name is written is no find
                if full_name_present and surface != focus_name and surface in focus_name:
                    continue
                if mention.id in focus:
                    hits.add(mention.id)
        out.append((document, hits))
    return out


@pytest.fixture(scope="module")
def found(shared_dir, do_tree):
    return _found(shared_dir, do_tree)


def _shares(found):
    ghr = [hits for document, hits in found if document["collection"] == "3_GHR_QA"]
    share_all = sum(bool(hits) for _, hits in found) / len(found)
    share_ghr = sum(bool(hits) for hits in ghr) / len(ghr)
    return share_ghr, share_all, f"GHR {share_ghr:.4f} ({sum(bool(h) for h in ghr)}/{len(ghr)}), all {share_all:.4f}"


def test_focus_entity_found_in_questions(found):
    share_ghr, share_all, figures = _shares(found)
    # Measured with the longest-name rule: GHR 86.5% (939/1,086), GHR + NINDS 85.3% (1,159/1,359). Before this
    # session's linking changes: 82.9% (900/1,086) and 82.3%. docs/entities.md lists the misses by kind.
    assert share_ghr >= 0.86, figures
    assert share_all >= 0.85, figures


@pytest.mark.xfail(
    strict=True,
    reason="issue 11 asks 90% of GHR Focus entities; 86.5% measured: 31 Focus names are in no source under any "
    "name MedQuAD gives, 39 carry a qualifier (nonsyndromic, isolated, juvenile ...) the tree has no node for",
)
def test_focus_entity_found_meets_the_issue_target(found):
    share_ghr, _, figures = _shares(found)
    assert share_ghr >= 0.90, figures


def test_found_ghr_conditions_called_rare_are_flagged_rare(found, do_tree):
    """Of the GHR focus nodes that DO's rare slim (with an Orphanet/OMIM link) or Orphanet call rare, >= 90% rare."""
    tree, _ = do_tree
    called_rare = flagged = 0
    for document, hits in found:
        if document["collection"] != "3_GHR_QA":
            continue
        for node_id in hits:
            node = tree.node(node_id)
            codes = {node_id, *node["merged_ids"], *node["source_codes"]}
            if any(code.startswith(("ORPHA:", "ORDO:")) for code in codes) or any(
                b.get("source") == "Disease Ontology" for b in node["attributes"].get("rare_basis", [])
            ):
                called_rare += 1
                flagged += bool(node["rare"])
    assert called_rare > 500
    assert flagged / called_rare >= 0.90, f"{flagged}/{called_rare}"
