"""Fixtures for the entity tree tests: a hand-made vocabulary (fast, exact) and a capped tree from the real sources."""

from __future__ import annotations

import pytest

from medfoundry.entities.tree import EntityTree, build_tree

VOCABULARY = [
    {"id": "D:pneumonia", "name": "Pneumonia", "kind": "disease", "synonyms": ["lung infection"]},
    {
        "id": "D:ALL",
        "name": "Acute lymphoblastic leukemia",
        "kind": "disease",
        "synonyms": ["ALL", "acute lymphocytic leukaemia"],
        "rare": True,
    },
    {"id": "D:AS", "name": "Ankylosing spondylitis", "kind": "disease", "synonyms": ["AS"]},
    {"id": "D:cold", "name": "Common cold", "kind": "disease", "synonyms": ["cold", "coryza"]},
    {"id": "D:mi", "name": "Myocardial infarction", "kind": "disease", "synonyms": ["heart attack"]},
    {"id": "D:heart-disease", "name": "Heart disease", "kind": "disease"},
    {"id": "D:diabetes", "name": "Diabetes mellitus", "kind": "disease"},
    {"id": "D:t2dm", "name": "Type 2 diabetes mellitus", "kind": "disease", "parent_ids": ["D:diabetes"]},
    {
        "id": "D:marfan",
        "name": "Marfan syndrome",
        "kind": "disease",
        "rare": True,
        "attributes": {"phenotypes": ["P:tall", "P:arachnodactyly", "P:aortic"], "inheritance": ["P:ad"]},
    },
    {
        "id": "D:noonan",
        "name": "Noonan syndrome",
        "kind": "disease",
        "rare": True,
        "attributes": {"phenotypes": ["P:short", "P:ptosis"]},
    },
    {
        "id": "D:sjogren",
        "name": "Sjögren syndrome",
        "kind": "disease",
        "attributes": {"phenotypes": ["P:dry-eye"]},
    },
    {"id": "D:crohn", "name": "Crohn's disease", "kind": "disease"},
    {"id": "P:abn", "name": "Phenotypic abnormality", "kind": "phenotype"},
    {"id": "P:tall", "name": "Tall stature", "kind": "phenotype", "parent_ids": ["P:abn"]},
    {"id": "P:short", "name": "Short stature", "kind": "phenotype", "parent_ids": ["P:abn"]},
    {"id": "P:arachnodactyly", "name": "Arachnodactyly", "kind": "phenotype", "parent_ids": ["P:abn"]},
    {"id": "P:aortic", "name": "Aortic root dilatation", "kind": "phenotype", "parent_ids": ["P:abn"]},
    {"id": "P:ptosis", "name": "Ptosis", "kind": "phenotype", "parent_ids": ["P:abn"]},
    {"id": "P:dry-eye", "name": "Dry eye", "kind": "phenotype", "parent_ids": ["P:abn"]},
    {"id": "P:fever", "name": "Fever", "kind": "phenotype", "parent_ids": ["P:abn"], "synonyms": ["pyrexia"]},
    {"id": "P:cough", "name": "Cough", "kind": "phenotype", "parent_ids": ["P:abn"]},
    {"id": "P:chest-pain", "name": "Chest pain", "kind": "phenotype", "parent_ids": ["P:abn"]},
    {"id": "P:ad", "name": "Autosomal dominant inheritance", "kind": "clinical_attribute"},
    {"id": "C:nsaid", "name": "Salicylates", "kind": "drug_class"},
    {"id": "C:opioid", "name": "Opioids", "kind": "drug_class"},
    {"id": "C:statin", "name": "Statins", "kind": "drug_class"},
    {"id": "C:beta", "name": "Beta blockers", "kind": "drug_class"},
    {
        "id": "R:aspirin",
        "name": "Aspirin",
        "kind": "drug",
        "parent_ids": ["C:nsaid"],
        "synonyms": ["acetylsalicylic acid", "gaba"],
        "attributes": {"brands": ["bayer"]},
    },
]


@pytest.fixture(scope="session")
def vocab_tree() -> EntityTree:
    return EntityTree.from_rows(VOCABULARY)


@pytest.fixture(scope="session")
def vocab_linker(vocab_tree):
    from medfoundry.entities.linker import Linker

    return Linker.from_tree(vocab_tree)


@pytest.fixture(scope="session")
def capped_tree() -> EntityTree:
    """The real PyPI-shipped sources, 150 nodes each (a few seconds)."""
    return build_tree(max_nodes_per_source=150)


@pytest.fixture(scope="session")
def do_tree(shared_dir):
    """The full tree with the Disease Ontology from ../shared merged, and its linker (the workspace cache: built
    once, ~25-40 s, then reused by later runs and the demo)."""
    from medfoundry.entities.linker import Linker
    from medfoundry.entities.tree import load_or_build_tree

    ontology_dir = shared_dir / "data" / "ontologies" / "disease_ontology"
    if not ontology_dir.is_dir():
        pytest.skip("shared/data lacks the Disease Ontology")
    tree, folder = load_or_build_tree(ontology_dir)
    return tree, Linker.cached(tree, folder)
