import json

import pytest

from medfoundry.entities import tree as tree_module
from medfoundry.entities.tree import EntityTree, build_tree, load_or_build_tree

REQUIRED = {"id", "name", "synonyms", "kind", "parent_ids", "depth", "rare"}


def test_capped_tree_from_real_sources(capped_tree):
    frame = capped_tree.frame
    assert REQUIRED <= set(frame.columns)
    assert frame["id"].is_unique
    kinds = set(frame["kind"])
    assert {"disease", "phenotype", "drug"} <= kinds
    # every node but the MET roots has parents that exist, and depth = 1 + min parent depth
    depth = dict(zip(frame["id"], frame["depth"], strict=True))
    for node_id, parents in zip(frame["id"], frame["parent_ids"], strict=True):
        if node_id.startswith("MET:"):
            assert depth[node_id] == 0 and len(parents) == 0
        else:
            assert len(parents) and all(p in depth for p in parents)
            assert depth[node_id] == 1 + min(depth[p] for p in parents)
    # the first 150 annotated diseases are OMIM entries: HPO annotations alone make nothing rare (Orphanet-listed
    # and Disease Ontology rare-slim diseases are; see test_rarity.py)
    assert not frame["rare"].any()
    cholera = capped_tree.node("ICD10CM:A00")
    assert cholera["name"] == "Cholera" and cholera["parent_ids"] == ["ICD10CM:A00-A09"]
    assert "ICD10CM:A00-A09" in capped_tree.ancestors("ICD10CM:A00.0")
    meta = capped_tree.meta
    assert meta["counts"]["by_kind"]["disease"]["rare"] == meta["counts"]["rare_diseases"] == 0
    assert meta["options"]["max_nodes_per_source"] == 150


def test_save_and_load_roundtrip(capped_tree, tmp_path):
    capped_tree.save(tmp_path / "met")
    meta = json.loads((tmp_path / "met" / "meta.json").read_text())
    assert meta["tree_sha256"] and meta["counts"]["nodes"] == len(capped_tree)
    loaded = EntityTree.load(tmp_path / "met")
    assert len(loaded) == len(capped_tree)
    assert loaded.node("ICD10CM:A00.0")["parent_ids"] == ["ICD10CM:A00"]
    with pytest.raises(FileNotFoundError, match="entities build"):
        EntityTree.load(tmp_path / "missing")


def _write_disease_ontology(folder, capped_tree):
    """A miniature Disease Ontology whose xrefs point at nodes of the capped tree."""
    omims = [i for i in capped_tree.frame["id"] if i.startswith("OMIM:")]
    first, second = omims[0], omims[1]  # a capped tree holds the first annotated diseases: OMIM entries
    folder.mkdir()
    (folder / "HumanDO.tsv").write_text(
        'id\tlabel\tsubClassOf\n"DOID:4"\t"disease"\t""\n"DOID:1"\t"first rare thing"\t"disease"\n'
        '"DOID:2"\t"second thing"\t"disease"\n"DOID:3"\t"ambiguous thing"\t"disease"\n'
        '"DOID:5"\t"also ambiguous"\t"disease"\n'
    )
    (folder / "allXREFinDO.tsv").write_text(
        f'id\tlabel\txref\n"DOID:1"\t"first rare thing"\t"MIM:{first.split(":")[1]}"\n'
        f'"DOID:2"\t"second thing"\t"MIM:{second.split(":")[1]}"\n'
        '"DOID:3"\t"ambiguous thing"\t"ICD10CM:A00.1"\n"DOID:5"\t"also ambiguous"\t"ICD10CM:A00.1"\n'
    )
    (folder / "DO_rare_slim.obo").write_text(
        'format-version: 1.2\n\n[Term]\nid: DOID:1\nname: first rare thing\nsynonym: "FRT" EXACT []\n'
        "subset: DO_rare_slim\n"
    )
    return first, second


def test_disease_ontology_merges_through_one_to_one_xrefs(capped_tree, tmp_path):
    first, second = _write_disease_ontology(tmp_path / "do", capped_tree)
    merged = build_tree(tmp_path / "do", max_nodes_per_source=150)
    merges = merged.meta["merges"]
    assert merges["nodes_merged"] == 2 and merges["by_pair"] == {"do->hpoa:omim": 2}
    # the PyPI id survives; the DO id resolves to it and its synonyms join the node
    assert merged.resolve("DOID:1") == first and "DOID:1" not in set(merged.frame["id"])
    node = merged.node(first)
    assert "first rare thing" in node["synonyms"] and "FRT" in node["synonyms"] and node["rare"]
    assert node["attributes"]["rare_basis"] == [
        {"source": "Disease Ontology", "rule": tree_module.RARITY_RULES["do_rare_slim"][1], "code": "DOID:1"}
    ]
    assert not merged.node(second)["rare"]  # an OMIM entry with HPO annotations is not rare by that alone
    assert merged.resolve("DOID:2") == second
    # two DO terms pointing at the same code: no merge
    assert merged.resolve("DOID:3") == "DOID:3" and merged.resolve("DOID:5") == "DOID:5"
    assert merged.node("DOID:3")["parent_ids"] == ["DOID:4"]


def test_load_or_build_tree_caches_by_inputs(tmp_path, monkeypatch, capped_tree):
    calls = []

    def fake_build(ontology_dir, max_nodes, progress=None):
        calls.append(max_nodes)
        return capped_tree

    monkeypatch.setattr(tree_module, "build_tree", fake_build)
    first, folder = load_or_build_tree(None, 150, cache_dir=tmp_path)
    second, folder_again = load_or_build_tree(None, 150, cache_dir=tmp_path)
    assert calls == [150] and folder == folder_again and len(second) == len(first)
    _, other = load_or_build_tree(None, 151, cache_dir=tmp_path)
    assert calls == [150, 151] and other != folder


def test_workspace_cache_is_the_default(workspace, monkeypatch, capped_tree):
    monkeypatch.setattr(tree_module, "build_tree", lambda *a, **k: capped_tree)
    _, folder = load_or_build_tree(None, 150)
    assert folder.parent == workspace / "cache" / "entity_tree"


def test_from_rows_builds_depths_and_roots(vocab_tree):
    assert vocab_tree.node("D:t2dm")["depth"] == 2
    assert vocab_tree.parents("D:pneumonia") == ["MET:disease"]
    assert vocab_tree.ancestors("D:t2dm") == {"D:diabetes", "MET:disease"}
    assert not vocab_tree.node("MET:disease")["linkable"]
