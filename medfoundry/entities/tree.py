"""The Medical Entity Tree (MET): one graph of diseases, phenotypes, drugs, anatomy and symptoms from real ontologies.

Sources (PyPI-shipped, always): ICD-10-CM (chapter > block > category > code), HPO phenotypes, HPO-annotated diseases
(OMIM / Orphanet / DECIPHER), drugs with MeSH tree numbers. Optional, from `ontology_dir`: the Human Disease Ontology (HumanDO.tsv, DO_rare_slim.obo,
allXREFinDO.tsv, disease-symptom.tsv) with its symptom (symp_import.owl) and anatomy (uberon_import.owl) imports.

Disease Ontology and symptom terms are merged into the other sources' nodes through one-to-one cross-references
(DO MIM -> OMIM, ORDO -> ORPHA, ICD10CM -> ICD-10-CM, UMLS_CUI -> HPO's UMLS xref). A merged node keeps the id of its
highest-priority member (ICD-10-CM > ORPHA > OMIM > DECIPHER > HP > drugs > DOID > SYMP > UBERON), so ids from the
PyPI sources do not change when the Disease Ontology is added; absorbed ids are kept in `merged_ids`.

Rarity comes from sources that define it (`RARITY_RULES`), never from "has HPO annotations": Orphanet-listed diseases,
Disease Ontology rare-slim terms and the OMIM/Orphanet entries those terms cross-reference. OMIM's common-disease
susceptibility entries are never rare. Each rare node records why in `attributes["rare_basis"]` (source, rule, code).

HPO-annotated diseases hang under parents: the Disease Ontology term that cross-references them (DO is_a), the ICD-10-CM
code a merged DO term names, else the ICD-10-CM chapter of the organ system most of their phenotypes belong to
(`attributes["parent_basis"]` says which).

Every kind hangs under a synthetic, non-linkable root `MET:<kind>` (depth 0).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from medfoundry.entities import sources
from medfoundry.entities.normalize import normalize_form

TREE_FILE = "tree.parquet"
META_FILE = "meta.json"
BUILDER_VERSION = "6"  # 2: rarity from Orphanet / DO rare slim; HPO-annotated diseases under parents

KINDS = (
    "disease",
    "injury",
    "external_cause",
    "health_factor",
    "phenotype",
    "clinical_attribute",
    "symptom",
    "drug",
    "drug_class",
    "anatomy",
)
ROOT_NAMES = {
    "disease": "Diseases",
    "injury": "Injuries and poisonings",
    "external_cause": "External causes of morbidity",
    "health_factor": "Factors influencing health status",
    "phenotype": "Phenotypic abnormalities",
    "clinical_attribute": "Clinical attributes (inheritance, onset, course, modifiers)",
    "symptom": "Symptoms",
    "drug": "Drugs and chemicals",
    "drug_class": "Drug classes",
    "anatomy": "Anatomy",
}
# ICD-10-CM chapters 19-21 are not diseases.
_ICD_CHAPTER_KIND = {"19": "injury", "20": "external_cause", "21": "health_factor"}
_ID_PRIORITY = (
    "ICD10CM",
    "ORPHA",
    "OMIM",
    "DECIPHER",
    "HP",
    "DRUGBANK",
    "MEDLINEPLUS",
    "DRUG",
    "MESH",
    "DOID",
    "SYMP",
)
_KIND_PRIORITY = {kind: rank for rank, kind in enumerate(KINDS)}
# Generic ontology roots that are never entity mentions of their own.
_UNLINKABLE = {"HP:0000001", "DOID:4", "SYMP:0000462", "UBERON:0000061", "UBERON:0001062"}
# DO cross-reference prefixes -> the prefix of the tree ids (or the xref key) they point to.
_XREF_TARGETS = {
    "MIM": "OMIM",
    "OMIM": "OMIM",
    "ORDO": "ORPHA",
    "ORPHA": "ORPHA",
    "ICD10CM": "ICD10CM",
    "UMLS_CUI": "UMLS",
}
# ICD-10-CM residual categories ("Other ...", "..., unspecified") are never merge targets.
_RESIDUAL = re.compile(r"^other\b|\bunspecified\b|not elsewhere classified|\bNEC\b", re.IGNORECASE)
# Why a node is rare: (source, rule) per basis; each rare node lists its bases with the code that triggered them.
RARITY_RULES = {
    "orphanet": (
        "Orphanet",
        "listed in Orphanet's nomenclature of rare diseases (ORPHA entry of HPO's phenotype.hpoa)",
    ),
    "do_rare_slim": (
        "Disease Ontology",
        "term of the DO_rare_slim subset with an Orphanet (ORDO) or OMIM cross-reference",
    ),
    "do_rare_slim_xref": ("Disease Ontology", "OMIM/Orphanet entry cross-referenced by a DO_rare_slim term"),
}
# Diseases a rare-disease source lists (Orphanet lists malaria: rare in Europe; DO's rare slim, built from GARD,
# lists Parkinson's disease) whose prevalence is far above both thresholds (US Orphan Drug Act: < 200,000 people;
# EU: < 1 in 2,000). Keyed by DO id; each entry cites its prevalence. Never rare.
COMMON_BY_PREVALENCE = {
    "DOID:14330": "Parkinson's disease: ~1 million people in the US (Parkinson's Foundation Prevalence Project, 2022)",
    "DOID:2841": "asthma: ~25 million people in the US (CDC, Most Recent National Asthma Data, 2021)",
    "DOID:2377": "multiple sclerosis: ~1 million people in the US (Wallin et al., Neurology 2019)",
    "DOID:8893": "psoriasis: ~7.5 million US adults (Armstrong et al., JAMA Dermatology 2021)",
    "DOID:9744": "type 1 diabetes: ~2 million people in the US (CDC National Diabetes Statistics Report, 2023)",
    "DOID:10825": "essential hypertension: ~48% of US adults (CDC, Facts About Hypertension, 2023)",
    "DOID:10283": "prostate cancer: ~3.3 million US survivors (American Cancer Society, Cancer Facts & Figures 2024)",
    "DOID:11054": "bladder cancer: ~730,000 people in the US (NCI SEER Cancer Stat Facts, 2021)",
    "DOID:0060060": "non-Hodgkin lymphoma: ~850,000 people in the US (NCI SEER Cancer Stat Facts, 2021)",
    "DOID:4448": "macular degeneration: ~19.8 million people in the US (Rein et al., JAMA Ophthalmology 2022)",
    "DOID:12365": "malaria: ~249 million cases worldwide in 2022 (WHO World Malaria Report 2023)",
}
# OMIM entries for susceptibility to common diseases ("Migraine with or without aura, susceptibility to, 1").
_SUSCEPTIBILITY = re.compile(r"\bsusceptibility\b|\bmodifier of\b|\{", re.IGNORECASE)
# HPO organ systems (children of Phenotypic abnormality) -> the ICD-10-CM chapter of diseases of that system; systems
# that name no organ (growth, head/neck, constitutional, prenatal) do not vote.
_SYSTEM_CHAPTER = {
    "HP:0000119": "14",  # genitourinary
    "HP:0000478": "7",  # eye
    "HP:0000598": "8",  # ear
    "HP:0000707": "6",  # nervous system
    "HP:0000818": "4",  # endocrine
    "HP:0001939": "4",  # metabolism/homeostasis
    "HP:0001626": "9",  # cardiovascular
    "HP:0001871": "3",  # blood
    "HP:0002715": "3",  # immune system
    "HP:0002086": "10",  # respiratory
    "HP:0002664": "2",  # neoplasm
    "HP:0025031": "11",  # digestive
    "HP:0001574": "12",  # integument
    "HP:0033127": "13",  # musculoskeletal
    "HP:0040064": "13",  # limbs
}
# Multisystem disorders without an organ majority: Congenital malformations, deformations and chromosomal abnormalities.
_DEFAULT_CHAPTER = "17"
DO_FILES = (
    "HumanDO.tsv",
    "DO_rare_slim.obo",
    "allXREFinDO.tsv",
    "disease-symptom.tsv",
    "symp_import.owl",
    "uberon_import.owl",
)


def _priority(node_id: str) -> tuple[int, str]:
    prefix = node_id.split(":", 1)[0]
    return (_ID_PRIORITY.index(prefix) if prefix in _ID_PRIORITY else len(_ID_PRIORITY), node_id)


@dataclass
class _Node:
    id: str
    name: str
    kind: str
    source: str
    synonyms: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    xrefs: list[str] = field(default_factory=list)
    rare: bool = False
    definition: str = ""
    attributes: dict = field(default_factory=dict)


def _strip_code_range(description: str) -> str:
    """'Intestinal infectious diseases (A00-A09)' -> 'Intestinal infectious diseases'."""
    if description.endswith(")") and "(" in description:
        head, _, tail = description.rpartition("(")
        if "-" in tail and len(tail) <= 12:
            return head.strip()
    return description


def _basis(rule: str, code: str) -> dict:
    source, text = RARITY_RULES[rule]
    return {"source": source, "rule": text, "code": code}


# HPO inheritance annotations of common complex diseases and sporadic cancers (not of a Mendelian rare disease):
# multifactorial (HP:0001426) and somatic (HP:0001442 somatic mosaicism, HP:0001428 somatic mutation).
_NON_MENDELIAN_INHERITANCE = frozenset({"HP:0001426", "HP:0001442", "HP:0001428"})


def _non_mendelian(node) -> bool:
    """An OMIM entry for susceptibility to a common disease, or annotated multifactorial or somatic by HPO."""
    inheritance = set(node.attributes.get("inheritance", ()))
    return bool(_SUSCEPTIBILITY.search(node.name) or inheritance & _NON_MENDELIAN_INHERITANCE)


def _name_key(name: str) -> str:
    """Names compared across sources: "Marfan's syndrome" and "Marfan syndrome" are one name."""
    return normalize_form(re.sub(r"['’]s\b", "", name))


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {}
        self.merge_edges: list[tuple[str, str, str]] = []  # (DO-side id, target id, xref vocabulary)
        self.counts: Counter = Counter()
        self.alias: dict[str, str] = {}
        # OMIM/ORPHA id -> the DO term(s) cross-referencing it (their is_a places the entry in the hierarchy)
        self.do_terms_of: dict[str, list[str]] = defaultdict(list)
        self.rare_xrefs: dict[str, str] = {}  # OMIM/ORPHA id -> the DO_rare_slim term naming it

    def add(self, node: _Node) -> None:
        if node.id in self.nodes:
            return
        self.nodes[node.id] = node
        self.counts[f"source:{node.source}"] += 1

    # -- PyPI sources -------------------------------------------------------------------------------------------
    def add_icd10cm(self, limit: int | None) -> None:
        for row in sources.iter_icd10cm(limit=limit):
            kind = _ICD_CHAPTER_KIND.get(row["chapter"], "disease")
            self.add(
                _Node(
                    id=f"ICD10CM:{row['code']}",
                    name=_strip_code_range(row["description"]),
                    kind=kind,
                    source="icd10cm",
                    synonyms=row["inclusion_terms"],
                    parents=[f"ICD10CM:{p}" for p in row["parents"]],
                    attributes={
                        "icd10cm": row["code"],
                        "icd_level": row["level"],
                        "billable": row["billable"],
                    },
                )
            )

    def add_hpo_terms(self, limit: int | None) -> None:
        for row in sources.iter_hpo_terms(limit=limit):
            if row["id"] == "HP:0000001":  # "All": its sub-ontologies hang under the MET roots instead
                continue
            self.add(
                _Node(
                    id=row["id"],
                    name=row["name"],
                    kind="phenotype" if row["category"] == "phenotype" else "clinical_attribute",
                    source="hpo",
                    synonyms=row["synonyms"],
                    parents=[p for p in row["parents"] if p != "HP:0000001"],
                    xrefs=row["xrefs"],
                    definition=row["definition"],
                )
            )

    def add_hpo_diseases(self, limit: int | None) -> None:
        for row in sources.iter_hpo_diseases(limit=limit):
            orphanet = row["database"] == "ORPHA"
            attributes = {
                "phenotypes": row["phenotypes"],
                "inheritance": row["inheritance"],
                "onset": row["onset"],
            }
            if row["genes"]:
                attributes["genes"] = row["genes"]
            if orphanet:
                attributes["rare_basis"] = [_basis("orphanet", row["id"])]
            self.add(
                _Node(
                    id=row["id"],
                    name=row["name"],
                    kind="disease",
                    source=f"hpoa:{row['database'].lower()}",
                    rare=orphanet,
                    attributes=attributes,
                )
            )

    def add_drugs(self, limit: int | None) -> None:
        drugs = list(sources.iter_drugs(limit=limit))
        by_tree_number = {number: drug["id"] for drug in drugs for number in drug["mesh_tree"]}
        for category, name in sources.MESH_D_CATEGORIES.items():
            self.add(_Node(id=f"MESH:{category}", name=name, kind="drug_class", source="mesh"))
        parents_of: dict[str, list[str]] = {}
        for drug in drugs:
            parents = []
            for number in drug["mesh_tree"]:
                parts = number.split(".")
                parent = next(
                    (
                        by_tree_number[".".join(parts[:cut])]
                        for cut in range(len(parts) - 1, 0, -1)
                        if by_tree_number.get(".".join(parts[:cut]), drug["id"]) != drug["id"]
                    ),
                    f"MESH:{parts[0]}",
                )
                parents.append(parent)
            parents_of[drug["id"]] = list(dict.fromkeys(parents))
        # MeSH descriptors without a DrugBank/MedlinePlus entry that other drugs sit under are classes
        # ("imidazoles", "enzyme inhibitors"); a DrugBank drug with derivatives under it stays a drug.
        class_ids = {p for parents in parents_of.values() for p in parents if p.startswith("DRUG:")}
        for drug in drugs:
            self.add(
                _Node(
                    id=drug["id"],
                    name=drug["name"],
                    kind="drug_class" if drug["id"] in class_ids else "drug",
                    source="drugs",
                    synonyms=drug["synonyms"],
                    parents=parents_of[drug["id"]],
                    xrefs=[f"MESH:{drug['mesh_id']}"] if drug["mesh_id"] else [],
                    attributes={
                        key: drug[key]
                        for key in ("brands", "mesh_tree", "drugbank_id", "medline_plus_id")
                        if drug[key]
                    },
                )
            )

    # -- Disease Ontology and its imports -----------------------------------------------------------------------
    def add_disease_ontology(self, folder: Path, limit: int | None) -> None:
        from medfoundry.entities.obo import iter_obo_terms
        from medfoundry.entities.owl import iter_owl_classes

        missing = [name for name in ("HumanDO.tsv",) if not (folder / name).exists()]
        if missing:
            raise FileNotFoundError(f"ontology dir {folder} lacks {', '.join(missing)}")
        rows = list(_read_tsv(folder / "HumanDO.tsv"))[:limit]
        id_by_label = {row["label"]: row["id"] for row in rows}
        xrefs: dict[str, list[str]] = defaultdict(list)
        if (folder / "allXREFinDO.tsv").exists():
            for row in _read_tsv(folder / "allXREFinDO.tsv"):
                xrefs[row["id"]].append(row["xref"])
        rare_terms = {}
        if (folder / "DO_rare_slim.obo").exists():
            rare_terms = {term["id"]: term for term in iter_obo_terms(folder / "DO_rare_slim.obo")}
        symptoms: dict[str, list[str]] = defaultdict(list)
        if (folder / "disease-symptom.tsv").exists():
            for row in _read_tsv(folder / "disease-symptom.tsv"):
                symptoms[row["disease_id"]].append(row["symptom_id"])
        for row in rows:
            term = rare_terms.get(row["id"], {})
            parent = id_by_label.get(row["subClassOf"])
            node_xrefs = list(dict.fromkeys(xrefs.get(row["id"], []) + term.get("xrefs", [])))
            self.add(
                _Node(
                    id=row["id"],
                    name=row["label"],
                    kind="disease",
                    source="do",
                    synonyms=[s["text"] for s in term.get("synonyms", []) if s["scope"] != "BROAD"],
                    parents=list(dict.fromkeys(([parent] if parent else []) + term.get("is_a", []))),
                    xrefs=node_xrefs,
                    rare=bool(term),
                    definition=term.get("def", ""),
                    attributes={"symptoms": symptoms[row["id"]]} if symptoms.get(row["id"]) else {},
                )
            )
            unconfirmed = self._rare_slim_unconfirmed(row["label"], term, node_xrefs) if term else ""
            confirmed = bool(term) and not unconfirmed
            if confirmed:
                self.nodes[row["id"]].attributes["rare_basis"] = [_basis("do_rare_slim", row["id"])]
            elif term:
                self.nodes[row["id"]].rare = False
                self.nodes[row["id"]].attributes["not_rare_reason"] = unconfirmed
            for xref in node_xrefs:
                prefix, _, value = xref.partition(":")
                if prefix in ("MIM", "OMIM", "ORDO", "ORPHA"):
                    target = f"{_XREF_TARGETS[prefix]}:{value}"
                    self.do_terms_of[target].append(row["id"])
                    entry = self.nodes.get(target)
                    if confirmed and not (entry is not None and _non_mendelian(entry)):
                        self.rare_xrefs.setdefault(target, row["id"])
            self._add_merge_edges(row["id"], node_xrefs)
        for filename, kind, source in (
            ("symp_import.owl", "symptom", "symp"),
            ("uberon_import.owl", "anatomy", "uberon"),
        ):
            if not (folder / filename).exists():
                continue
            for term in list(iter_owl_classes(folder / filename))[:limit]:
                self.add(
                    _Node(
                        id=term["id"],
                        name=term["name"],
                        kind=kind,
                        source=source,
                        synonyms=term["synonyms"],
                        parents=term["is_a"],
                        xrefs=term["xrefs"],
                        definition=term["def"],
                    )
                )
                if kind == "symptom":
                    self._add_merge_edges(term["id"], term["xrefs"])

    def _rare_slim_unconfirmed(self, label: str, term: dict, xrefs: list[str]) -> str:
        """Why a DO_rare_slim term is not confirmed rare by its OMIM/Orphanet cross-references ("" when it is).

        The rare slim is built from GARD, which lists common diseases with rare forms (asthma, psoriasis, Parkinson
        disease); a cross-reference confirms the term only when it names the same disease: the one OMIM/Orphanet
        entry the term points to, or an entry (from HPO's phenotype.hpoa) carrying the term's name or a synonym.
        A term whose entries are susceptibility loci or an OMIM phenotypic series (MIM:PS...) of a common disease,
        or that points to several entries none of which carries its name (the familial or early-onset forms of
        hypertension or prostate cancer), is not confirmed."""
        entries = [x for x in xrefs if x.split(":", 1)[0] in ("MIM", "OMIM", "ORDO", "ORPHA")]
        if not entries:  # GARD-only rare-slim terms include Alzheimer disease, tuberculosis and bipolar disorder
            return "DO_rare_slim term without an Orphanet or OMIM cross-reference"
        names = {_name_key(label), *(_name_key(s["text"]) for s in term.get("synonyms", []) if s["scope"] == "EXACT")}
        targets = []
        for xref in entries:
            prefix, _, value = xref.partition(":")
            node = self.nodes.get(f"{_XREF_TARGETS[prefix]}:{value}")
            if node is not None and _non_mendelian(node):
                targets.append((value, node))
                continue
            if node is not None and _name_key(node.name) in names:
                return ""  # an entry of the same name
            targets.append((value, node))
        if len(targets) == 1:
            value, node = targets[0]
            if value.startswith("PS"):
                return "DO_rare_slim term whose only OMIM cross-reference is a phenotypic series of a common disease"
            if node is None:
                return "DO_rare_slim term whose only OMIM/Orphanet cross-reference is no disease entry of phenotype.hpoa"
            if _non_mendelian(node):
                return (
                    f"DO_rare_slim term whose only OMIM cross-reference ({node.name}) is a susceptibility entry or "
                    "multifactorial/somatic by HPO's inheritance annotation"
                )
            return ""  # one-to-one: the term and its one entry are the same disease
        return "DO_rare_slim term whose OMIM/Orphanet cross-references name other (rarer or susceptibility) entries"

    def _add_merge_edges(self, node_id: str, xrefs: Iterable[str]) -> None:
        for xref in xrefs:
            prefix, _, value = xref.partition(":")
            target = _XREF_TARGETS.get(prefix)
            if target:
                self.merge_edges.append((node_id, f"{target}:{value}", target))

    # -- merging and finishing ----------------------------------------------------------------------------------
    def merge(self) -> dict:
        """Union DO/SYMP terms with the nodes their one-to-one cross-references point to."""
        xref_index: dict[str, list[str]] = defaultdict(list)
        for node in self.nodes.values():
            if node.source in ("do", "symp"):
                continue
            xref_index[node.id].append(node.id)
            for xref in node.xrefs:
                xref_index[xref].append(node.id)
        per_source_vocab = Counter((source, vocab) for source, _, vocab in self.merge_edges)
        per_target = Counter(target for _, target, _ in set(self.merge_edges))
        parent: dict[str, str] = {}

        def find(node_id: str) -> str:
            while parent.get(node_id, node_id) != node_id:
                node_id = parent[node_id]
            return node_id

        pairs: Counter = Counter()
        skipped_residual = 0
        name_confirmed = 0
        for source_id, target, vocab in dict.fromkeys(self.merge_edges):
            targets = xref_index.get(target, [])
            if source_id not in self.nodes or len(targets) != 1:
                continue
            if per_source_vocab[(source_id, vocab)] != 1 or per_target[target] != 1:
                # Not one-to-one, but the xref plus the same name say it is the same disease ("Marfan syndrome"
                # DOID:14323 -> MIM:154700 "Marfan syndrome" while it also names the subtype entries).
                if _name_key(self.nodes[source_id].name) != _name_key(self.nodes[targets[0]].name):
                    continue
                name_confirmed += 1
            if _RESIDUAL.search(self.nodes[targets[0]].name):
                skipped_residual += (
                    1  # "Other disorders of lung" is a bucket, not the concept: keep it an xref
                )
                continue
            a, b = find(source_id), find(targets[0])
            if a != b:
                keep, drop = sorted((a, b), key=_priority)
                parent[drop] = keep
                pairs[f"{self.nodes[source_id].source}->{self.nodes[targets[0]].source}"] += 1
        same_name = self._merge_same_names(find, parent)
        groups: dict[str, list[str]] = defaultdict(list)
        for node_id in list(parent):
            groups[find(node_id)].append(node_id)
        for keep_id, members in groups.items():
            keep = self.nodes[keep_id]
            merged = [self.nodes.pop(member) for member in members if member != keep_id]
            for other in merged:
                keep.synonyms = keep.synonyms + [other.name] + other.synonyms
                keep.parents = keep.parents + other.parents
                keep.xrefs = keep.xrefs + [other.id] + other.xrefs
                keep.rare = keep.rare or other.rare
                keep.definition = keep.definition or other.definition
                for key, value in other.attributes.items():
                    if key == "rare_basis":
                        keep.attributes[key] = keep.attributes.get(key, []) + value
                    elif key in ("genes", "inheritance"):  # one disease: its members' genes and modes together
                        keep.attributes[key] = list(dict.fromkeys([*keep.attributes.get(key, []), *value]))
                    else:
                        keep.attributes.setdefault(key, value)
                if _KIND_PRIORITY.get(other.kind, 99) < _KIND_PRIORITY.get(keep.kind, 99):
                    keep.kind = other.kind
            keep.attributes["merged_ids"] = sorted(member for member in members if member != keep_id)
            keep.attributes["merged_sources"] = sorted({keep.source, *(m.source for m in merged)})
        self.alias = {member: find(member) for member in parent}
        return {
            "nodes_merged": len(parent),
            "groups": len(groups),
            "by_pair": dict(sorted(pairs.items())),
            "skipped_residual_categories": skipped_residual,
            "name_confirmed": name_confirmed,
            "same_name": same_name,
        }

    def _merge_same_names(self, find: Callable[[str], str], parent: dict[str, str]) -> int:
        """Union disease nodes of different sources (OMIM, Orphanet, DECIPHER, DO, ICD-10-CM) that carry the same
        preferred name, unless that would join two entries of one vocabulary (two ICD-10-CM codes, two OMIM
        entries): those name different things that happen to share a label (an ICD block and its category)."""
        tags: dict[str, set[str]] = defaultdict(set)
        for node_id in parent:
            tags[find(node_id)].add(node_id.split(":", 1)[0])

        def vocabularies(root: str) -> set[str]:
            return tags[root] | {root.split(":", 1)[0]}

        by_name: dict[str, list[str]] = defaultdict(list)
        for node in self.nodes.values():
            if node.kind == "disease" and node.source.split(":")[0] in ("hpoa", "do", "icd10cm"):
                if not _RESIDUAL.search(node.name):
                    by_name[_name_key(node.name)].append(node.id)
        merged = 0
        for ids in by_name.values():
            for other in ids[1:]:
                a, b = find(ids[0]), find(other)
                if a == b or vocabularies(a) & vocabularies(b) - {"DOID"}:
                    continue
                keep, drop = sorted((a, b), key=_priority)
                parent[drop] = keep
                tags[keep] = vocabularies(a) | vocabularies(b)
                merged += 1
        return merged

    def assign_rarity(self) -> dict:
        """Rare from the sources that define it; common-disease susceptibility entries are never rare."""
        overruled: Counter = Counter()
        for node in self.nodes.values():
            if node.kind != "disease" or node.source == "met":
                continue
            basis = node.attributes.get("rare_basis", [])
            for code in (node.id, *node.attributes.get("merged_ids", [])):
                doid = self.rare_xrefs.get(code)
                if doid and not any(b["code"] == doid for b in basis):
                    basis = basis + [_basis("do_rare_slim_xref", f"{code} <- {doid}")]
            common = next(
                (
                    COMMON_BY_PREVALENCE[c]
                    for c in (node.id, *node.attributes.get("merged_ids", []))
                    if c in COMMON_BY_PREVALENCE
                ),
                None,
            )
            if basis and (common or _SUSCEPTIBILITY.search(node.name)):
                node.attributes["not_rare_reason"] = (
                    f"prevalence: {common}" if common else "OMIM entry for susceptibility to a common disease"
                )
                node.attributes.pop("rare_basis", None)
                node.rare = False
                overruled["prevalence" if common else "susceptibility"] += 1
                continue
            node.rare = bool(basis)
            if basis:
                node.attributes["rare_basis"] = basis
        return {f"not_rare_by_{k}": v for k, v in overruled.items()}

    def attach_parents(self) -> dict:
        """HPO-annotated diseases without a parent: under their DO term (is_a via xref), the ICD-10-CM code a merged
        DO term names, else the ICD-10-CM chapter of the organ system most of their phenotypes belong to."""
        system_of = self._hpo_systems()
        how: Counter = Counter()
        for node in list(self.nodes.values()):
            if not node.source.startswith("hpoa:"):
                continue
            own = {node.id, *node.attributes.get("merged_ids", [])}
            parents = [self.alias.get(p, p) for p in node.parents]
            if [p for p in parents if p not in own and p in self.nodes]:
                continue
            codes = [node.id, *node.attributes.get("merged_ids", [])]
            do_parents = [
                self.alias.get(doid, doid) for code in codes for doid in self.do_terms_of.get(code, [])
            ]
            do_parents = [p for p in dict.fromkeys(do_parents) if p not in own and p in self.nodes]
            icd = [x for x in node.xrefs if x.startswith("ICD10CM:") and self.alias.get(x, x) in self.nodes]
            icd = [self.alias.get(x, x) for x in icd if self.alias.get(x, x) not in own]
            if do_parents:
                node.parents, basis = do_parents, "do_is_a_via_xref"
            elif icd:
                node.parents, basis = icd[:1], "icd10cm_xref"
            else:
                votes = Counter(
                    _SYSTEM_CHAPTER[system]
                    for phenotype in node.attributes.get("phenotypes", [])
                    for system in system_of.get(phenotype, ())
                    if system in _SYSTEM_CHAPTER
                )
                chapter = votes.most_common(1)[0][0] if votes else _DEFAULT_CHAPTER
                if f"ICD10CM:{chapter}" not in self.nodes:
                    continue
                node.parents, basis = [f"ICD10CM:{chapter}"], "icd10cm_chapter_by_phenotype_system"
            node.attributes["parent_basis"] = basis
            how[basis] += 1
        return dict(how)

    def _hpo_systems(self) -> dict[str, frozenset[str]]:
        """HPO term -> the organ systems (children of Phenotypic abnormality) above it."""
        systems: dict[str, frozenset[str]] = {}

        def of(term_id: str, path: frozenset = frozenset()) -> frozenset[str]:
            if term_id in systems:
                return systems[term_id]
            node = self.nodes.get(term_id)
            if node is None or term_id in path:
                return frozenset()
            parents = node.parents
            if sources.HPO_PHENOTYPIC_ABNORMALITY in parents:
                result = frozenset({term_id})
            else:
                result = (
                    frozenset().union(*(of(p, path | {term_id}) for p in parents)) if parents else frozenset()
                )
            systems[term_id] = result
            return result

        for node_id, node in self.nodes.items():
            if node.source == "hpo":
                of(node_id)
        return systems

    def finish(self) -> list[dict]:
        alias = self.alias
        for kind in dict.fromkeys([*KINDS, *(node.kind for node in self.nodes.values())]):
            name = ROOT_NAMES.get(kind, kind.replace("_", " ").capitalize())
            self.nodes.setdefault(f"MET:{kind}", _Node(id=f"MET:{kind}", name=name, kind=kind, source="met"))
        for node in self.nodes.values():
            if node.source == "met":
                continue
            parents = [alias.get(p, p) for p in node.parents]
            parents = [p for p in dict.fromkeys(parents) if p != node.id and p in self.nodes]
            node.parents = parents or [f"MET:{node.kind}"]
            seen = {normalize_form(node.name)}
            synonyms = []
            for synonym in node.synonyms:
                key = normalize_form(synonym)
                if key and key not in seen:
                    seen.add(key)
                    synonyms.append(synonym.strip())
            node.synonyms = synonyms
            node.xrefs = list(dict.fromkeys(node.xrefs))
        depth = _depths(self.nodes)
        return [
            {
                "id": node.id,
                "name": node.name,
                "synonyms": node.synonyms,
                "kind": node.kind,
                "parent_ids": node.parents,
                "depth": depth[node.id],
                "rare": node.rare,
                "linkable": node.source != "met" and node.id not in _UNLINKABLE,
                "source": node.source,
                "source_codes": [node.id, *node.xrefs],
                "merged_ids": node.attributes.pop("merged_ids", []),
                "definition": node.definition,
                "attributes": json.dumps(node.attributes, sort_keys=True) if node.attributes else "{}",
            }
            for node in sorted(
                self.nodes.values(), key=lambda n: (_KIND_PRIORITY.get(n.kind, len(KINDS)), n.id)
            )
        ]


def _read_tsv(path: Path) -> Iterable[dict]:
    with Path(path).open(encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh, delimiter="\t")


def _depths(nodes: dict[str, _Node]) -> dict[str, int]:
    """Shortest distance from a MET root; nodes only reachable through a cycle get depth 1."""
    children: dict[str, list[str]] = defaultdict(list)
    for node in nodes.values():
        for parent in node.parents:
            children[parent].append(node.id)
    depth = {node_id: 0 for node_id, node in nodes.items() if node.source == "met"}
    queue = deque(depth)
    while queue:
        current = queue.popleft()
        for child in children.get(current, []):
            if child not in depth:
                depth[child] = depth[current] + 1
                queue.append(child)
    return {node_id: depth.get(node_id, 1) for node_id in nodes}


class EntityTree:
    """The built tree: a pandas frame (one row per node) plus meta; loads from and saves to a folder."""

    def __init__(self, frame, meta: dict | None = None) -> None:
        self.frame = frame.reset_index(drop=True)
        self.meta = meta or {}
        self.index: dict[str, int] = {node_id: row for row, node_id in enumerate(self.frame["id"])}
        for row, merged in enumerate(self.frame["merged_ids"]):
            for alias in merged:
                self.index.setdefault(alias, row)
        self._children: dict[str, list[str]] | None = None
        self._ancestors: dict[str, frozenset[str]] = {}

    @classmethod
    def from_rows(cls, rows: Iterable[dict], meta: dict | None = None) -> EntityTree:
        """A tree from node dicts (id, name, kind required; parent_ids, synonyms, rare ... default), with depths
        computed; for small custom vocabularies and tests."""
        import pandas as pd

        nodes = {}
        for row in rows:
            node = _Node(
                id=row["id"],
                name=row["name"],
                kind=row["kind"],
                source=row.get("source", "custom"),
                synonyms=list(row.get("synonyms", [])),
                parents=list(row.get("parent_ids", [])),
                xrefs=list(row.get("xrefs", [])),
                rare=bool(row.get("rare", False)),
                definition=row.get("definition", ""),
                attributes=dict(row.get("attributes", {})),
            )
            nodes[node.id] = node
        builder = _Builder()
        for node in nodes.values():
            builder.add(node)
        frame = pd.DataFrame(builder.finish())
        return cls(frame, meta or _tree_meta(frame, {}, {"custom": True}, {}, 0.0))

    def __len__(self) -> int:
        return len(self.frame)

    def __contains__(self, node_id: str) -> bool:
        return node_id in self.index

    def resolve(self, node_id: str) -> str | None:
        """The node id for `node_id` or for an id merged into a node (e.g. a DOID merged into an ORPHA node)."""
        row = self.index.get(node_id)
        return None if row is None else self.frame.at[row, "id"]

    def node(self, node_id: str) -> dict:
        row = self.index[node_id]
        data = self.frame.iloc[row].to_dict()
        data["synonyms"] = list(data["synonyms"])
        data["parent_ids"] = list(data["parent_ids"])
        data["source_codes"] = list(data["source_codes"])
        data["merged_ids"] = list(data["merged_ids"])
        data["attributes"] = json.loads(data["attributes"])
        return data

    def name(self, node_id: str) -> str:
        return self.frame.at[self.index[node_id], "name"]

    def parents(self, node_id: str) -> list[str]:
        row = self.index.get(node_id)
        return [] if row is None else list(self.frame.at[row, "parent_ids"])

    def children(self, node_id: str) -> list[str]:
        if self._children is None:
            children: dict[str, list[str]] = defaultdict(list)
            for node, parents in zip(self.frame["id"], self.frame["parent_ids"], strict=True):
                for parent in parents:
                    children[parent].append(node)
            self._children = dict(children)
        return self._children.get(self.resolve(node_id) or node_id, [])

    def ancestors(self, node_id: str) -> frozenset[str]:
        """Every node above `node_id` (not itself), across all parents."""
        node_id = self.resolve(node_id) or node_id
        cached = self._ancestors.get(node_id)
        if cached is not None:
            return cached
        seen: set[str] = set()
        stack = list(self.parents(node_id))
        while stack:
            current = stack.pop()
            if current in seen or current == node_id:
                continue
            seen.add(current)
            stack.extend(self.parents(current))
        result = frozenset(seen)
        self._ancestors[node_id] = result
        return result

    def save(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.frame.to_parquet(folder / TREE_FILE, index=False)
        meta = dict(self.meta)
        meta["tree_sha256"] = hashlib.sha256((folder / TREE_FILE).read_bytes()).hexdigest()
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        self.meta = meta
        return folder

    @classmethod
    def load(cls, folder: Path) -> EntityTree:
        import pandas as pd

        folder = Path(folder)
        if not (folder / TREE_FILE).exists():
            raise FileNotFoundError(
                f"{folder} holds no {TREE_FILE}: build it with `medfoundry entities build`"
            )
        meta = json.loads((folder / META_FILE).read_text()) if (folder / META_FILE).exists() else {}
        return cls(pd.read_parquet(folder / TREE_FILE), meta)


def _tree_meta(frame, merges: dict, options: dict, versions: dict, seconds: float) -> dict:
    linkable = frame[frame["linkable"]]
    surface_forms = linkable["synonyms"].map(len) + 1
    by_kind = {
        kind: {
            "nodes": int(len(group)),
            "rare": int(group["rare"].sum()),
            "synonyms": int(group["synonyms"].map(len).sum()),
            "surface_forms": int(surface_forms[group.index].sum()),
        }
        for kind, group in linkable.groupby("kind")
    }
    return {
        "builder_version": BUILDER_VERSION,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(seconds, 1),
        "options": options,
        "source_versions": versions,
        "counts": {
            "nodes": int(len(frame)),
            "linkable_nodes": int(len(linkable)),
            "synonyms": int(linkable["synonyms"].map(len).sum()),
            "surface_forms": int(surface_forms.sum()),
            "rare": int(linkable["rare"].sum()),
            "rare_diseases": int((linkable["rare"] & (linkable["kind"] == "disease")).sum()),
            "by_kind": by_kind,
            "by_depth": {str(k): int(v) for k, v in linkable["depth"].value_counts().sort_index().items()},
            "by_source": {str(k): int(v) for k, v in linkable["source"].value_counts().items()},
        },
        "merges": merges,
    }


def build_tree(
    ontology_dir: Path | None = None,
    max_nodes_per_source: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> EntityTree:
    """Build the MET from the PyPI-shipped ontologies, plus the Disease Ontology folder when given."""
    import pandas as pd

    started = time.perf_counter()
    say = progress or (lambda _message: None)
    builder = _Builder()
    steps = [
        ("ICD-10-CM", builder.add_icd10cm),
        ("HPO terms", builder.add_hpo_terms),
        ("HPO disease annotations", builder.add_hpo_diseases),
        ("drugs", builder.add_drugs),
    ]
    if ontology_dir is not None:
        steps.append(
            ("Disease Ontology", lambda limit: builder.add_disease_ontology(Path(ontology_dir), limit))
        )
    for label, step in steps:
        say(f"reading {label}")
        step(max_nodes_per_source)
    say("merging through cross-references")
    merges = builder.merge()
    merges["rarity"] = builder.assign_rarity()
    merges["attached_parents"] = builder.attach_parents()
    frame = pd.DataFrame(builder.finish())
    options = {
        "ontology_dir": str(ontology_dir) if ontology_dir else None,
        "max_nodes_per_source": max_nodes_per_source,
    }
    versions = source_versions(ontology_dir)
    meta = _tree_meta(frame, merges, options, versions, time.perf_counter() - started)
    return EntityTree(frame, meta)


def source_versions(ontology_dir: Path | None = None) -> dict:
    versions = dict(sources.source_versions())
    if ontology_dir is not None:
        for name in DO_FILES:
            path = Path(ontology_dir) / name
            if path.exists():
                versions[f"do:{name}"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return versions


def cache_key(ontology_dir: Path | None, max_nodes_per_source: int | None) -> str:
    payload = {
        "builder": BUILDER_VERSION,
        "versions": source_versions(ontology_dir),
        "max_nodes_per_source": max_nodes_per_source,
        "with_ontology_dir": ontology_dir is not None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def load_or_build_tree(
    ontology_dir: Path | None = None,
    max_nodes_per_source: int | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[EntityTree, Path]:
    """The tree for these inputs from `cache_dir` (default: the workspace cache), building and caching it once.

    Returns the tree and the folder it lives in (tree.parquet + meta.json).
    """
    if cache_dir is None:
        from medfoundry.workspace import Workspace

        cache_dir = Workspace.resolve().cache / "entity_tree"
    folder = Path(cache_dir) / cache_key(ontology_dir, max_nodes_per_source)
    if (folder / TREE_FILE).exists() and (folder / META_FILE).exists():
        return EntityTree.load(folder), folder
    tree = build_tree(ontology_dir, max_nodes_per_source, progress=progress)
    staging = folder.with_name(folder.name + f".tmp{time.time_ns()}")
    tree.save(staging)
    try:
        staging.rename(folder)
    except OSError:  # another process cached it first
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return EntityTree.load(folder), folder
