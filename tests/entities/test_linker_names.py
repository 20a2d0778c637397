"""How the linker finds a disease written as prose writes it, not as the ontology spells it (issue 11): punctuation
inside a name, upper-case titles, compounds with hyphens, CDG and "syndrome" spellings, and qualified names
("autosomal dominant X", "familial X", "GENE-related X") resolved through what the tree records, never by widening
to the unqualified node."""

import pytest

from medfoundry.entities.linker import Linker
from medfoundry.entities.tree import EntityTree

AD, AR, XL = "HP:0000006", "HP:0000007", "HP:0001417"
ROWS = [
    {"id": "A:ad", "name": "Autosomal dominant inheritance", "kind": "clinical_attribute", "synonyms": ["autosomal dominant"]},
    {"id": AD, "name": "Autosomal dominant", "kind": "clinical_attribute"},
    {"id": AR, "name": "Autosomal recessive inheritance", "kind": "clinical_attribute", "synonyms": ["autosomal recessive"]},
    {"id": XL, "name": "X-linked inheritance", "kind": "clinical_attribute", "synonyms": ["X-linked"]},
    {
        "id": "OMIM:158590",
        "name": "Neuronopathy, distal hereditary motor, type IIA",
        "kind": "disease",
        "synonyms": ["distal hereditary motor neuropathy type II"],
    },
    {"id": "OMIM:169600", "name": "Hailey-Hailey disease", "kind": "disease", "synonyms": ["BENIGN CHRONIC PEMPHIGUS"]},
    {"id": "D:pemphigus", "name": "Pemphigus", "kind": "disease"},
    {"id": "D:chest-pain", "name": "Chest pain", "kind": "phenotype"},
    {"id": "D:pain-fever", "name": "Pain fever", "kind": "phenotype"},
    {"id": "ORPHA:137888", "name": "Auriculocondylar syndrome", "kind": "disease"},
    {"id": "D:condylar", "name": "Condylar hyperplasia", "kind": "disease"},
    {"id": "ORPHA:79327", "name": "ALG1-CDG", "kind": "disease"},
    {"id": "D:cdg", "name": "Congenital disorder of glycosylation", "kind": "disease"},
    {"id": "ORPHA:71277", "name": "GLUT1 deficiency", "kind": "disease"},
    {"id": "ORPHA:90791", "name": "Congenital adrenal hyperplasia due to 3-beta-hydroxysteroid dehydrogenase deficiency", "kind": "disease"},
    {
        "id": "OMIM:177735",
        "name": "Pseudohypoaldosteronism, type I, autosomal dominant",
        "kind": "disease",
        "attributes": {"inheritance": [AD]},
    },
    {"id": "HP:0008242", "name": "Pseudohypoaldosteronism", "kind": "phenotype"},
    {
        "id": "OMIM:600512",
        "name": "Partial epilepsy with auditory features",
        "kind": "disease",
        "attributes": {"inheritance": [AD]},
    },
    # hyper-IgE syndrome: one AD child (STAT3) and one AR child (DOCK8)
    {"id": "DOID:0080545", "name": "Hyper-IgE syndrome", "kind": "disease"},
    {
        "id": "OMIM:147060",
        "name": "Hyper-IgE recurrent infection syndrome 1",
        "kind": "disease",
        "parent_ids": ["DOID:0080545"],
        "attributes": {"inheritance": [AD]},
    },
    {
        "id": "OMIM:243700",
        "name": "Hyper-IgE recurrent infection syndrome 2",
        "kind": "disease",
        "parent_ids": ["DOID:0080545"],
        "attributes": {"inheritance": [AR]},
    },
    # night blindness: children of every mode but two X-linked ones -> "X-linked ..." names no single node
    {"id": "ORPHA:215", "name": "Congenital stationary night blindness", "kind": "disease", "rare": True},
    *[
        {
            "id": f"OMIM:CSNB{i}",
            "name": f"Congenital stationary night blindness {i}",
            "kind": "disease",
            "parent_ids": ["ORPHA:215"],
            "attributes": {"inheritance": [mode]},
        }
        for i, mode in enumerate((XL, XL, AR), start=1)
    ],
    {
        "id": "ORPHA:98809",
        "name": "Paroxysmal kinesigenic dyskinesia",
        "kind": "disease",
        "rare": True,
        "attributes": {"genes": ["PRRT2"]},
    },
    {
        "id": "D:alzheimer",
        "name": "Alzheimer disease",
        "kind": "disease",
        "attributes": {"genes": ["APP", "PSEN1"], "inheritance": [AD]},
    },
    {"id": "D:distal-myopathy", "name": "Distal myopathy", "kind": "disease"},
    {
        "id": "ORPHA:488650",
        "name": "Distal myopathy, Tateyama type",
        "kind": "disease",
        "attributes": {"genes": ["CAV3"]},
    },
    {"id": "D:lgmd", "name": "Limb-girdle muscular dystrophy 1C", "kind": "disease", "attributes": {"genes": ["CAV3"]}},
    {"id": "D:dcm", "name": "Dilated cardiomyopathy", "kind": "disease"},
    {"id": "D:dcm-a", "name": "Cardiomyopathy, dilated, 1A", "kind": "disease", "attributes": {"genes": ["LMNA"]}},
    {"id": "D:dcm-b", "name": "Cardiomyopathy, dilated, 1B", "kind": "disease", "attributes": {"genes": ["LMNA"]}},
]


@pytest.fixture(scope="module")
def linker():
    return Linker.from_tree(EntityTree.from_rows(ROWS))


def _links(linker, text):
    return [(text[m.start : m.end], m.id) for m in linker.link(text)]


def test_punctuation_inside_a_name_does_not_break_it_but_a_sentence_end_does(linker):
    assert _links(linker, "What is distal hereditary motor neuropathy, type II?") == [
        ("distal hereditary motor neuropathy, type II", "OMIM:158590")
    ]
    assert ("Chest pain", "D:chest-pain") in _links(linker, "Chest pain, fever and cough")
    # a form must not run across a sentence or clause end: "... pain. Fever" is no "pain fever"
    assert all(node != "D:pain-fever" for _, node in _links(linker, "It caused pain. Fever followed; pain: fever"))
    assert ("pain, fever", "D:pain-fever") in _links(linker, "with pain, fever")


def test_an_upper_case_title_matches_in_lower_case(linker):
    # OMIM's upper-case title "BENIGN CHRONIC PEMPHIGUS" is no acronym: it links where prose writes it in lower case
    assert _links(linker, "What is benign chronic pemphigus?") == [("benign chronic pemphigus", "OMIM:169600")]


def test_compounds_written_with_hyphens(linker):
    assert _links(linker, "auriculo-condylar syndrome") == [("auriculo-condylar syndrome", "ORPHA:137888")]


def test_cdg_syndrome_and_due_to_spellings(linker):
    assert _links(linker, "ALG1-congenital disorder of glycosylation") == [
        ("ALG1-congenital disorder of glycosylation", "ORPHA:79327")
    ]
    assert _links(linker, "GLUT1 deficiency syndrome") == [("GLUT1 deficiency syndrome", "ORPHA:71277")]
    assert _links(linker, "3-beta-hydroxysteroid dehydrogenase deficiency") == [
        ("3-beta-hydroxysteroid dehydrogenase deficiency", "ORPHA:90791")
    ]
    # "Pseudohypoaldosteronism, type I, autosomal dominant" keeps its type when un-inverted
    assert _links(linker, "pseudohypoaldosteronism type 1") == [("pseudohypoaldosteronism type 1", "OMIM:177735")]


def test_inheritance_written_before_a_disease_of_that_one_mode(linker):
    text = "autosomal dominant partial epilepsy with auditory features"
    assert _links(linker, text) == [(text, "OMIM:600512")]
    # the one AD / AR disease below hyper-IgE syndrome
    assert _links(linker, "autosomal dominant hyper-IgE syndrome") == [("autosomal dominant hyper-IgE syndrome", "OMIM:147060")]
    assert _links(linker, "autosomal recessive hyper-IgE syndrome") == [("autosomal recessive hyper-IgE syndrome", "OMIM:243700")]


def test_a_qualifier_the_tree_cannot_resolve_does_not_widen(linker):
    # two X-linked forms below it: not linked to either, nor to the unqualified node as "X-linked CSNB"
    links = _links(linker, "X-linked congenital stationary night blindness")
    assert ("congenital stationary night blindness", "ORPHA:215") in links
    assert all(span != "X-linked congenital stationary night blindness" for span, _ in links)
    # "familial" before a disease that is not a rare genetic one stays outside the mention
    assert _links(linker, "familial Alzheimer disease") == [("Alzheimer disease", "D:alzheimer")]


def test_familial_before_a_rare_genetic_disease(linker):
    text = "familial paroxysmal kinesigenic dyskinesia"
    assert _links(linker, text) == [(text, "ORPHA:98809")]


def test_gene_related_names_link_the_gene_specific_disease(linker):
    assert _links(linker, "CAV3-related distal myopathy is rare") == [("CAV3-related distal myopathy", "ORPHA:488650")]
    # LMNA has two dilated cardiomyopathies: the gene does not say which, so the mention stays the general one
    assert _links(linker, "LMNA-related dilated cardiomyopathy") == [("dilated cardiomyopathy", "D:dcm")]
    # an unknown gene symbol changes nothing
    assert _links(linker, "XYZ9-related distal myopathy") == [("distal myopathy", "D:distal-myopathy")]
