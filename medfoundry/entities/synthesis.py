"""Knowledge-centric synthesis for sparse or uncovered entities: grounded text and multiple-choice QA built only from
ontology facts in the tree (a rare disease's HPO phenotypes, inheritance, ICD-10-CM code and parents; a drug's MeSH
class; a phenotype's definition and the diseases annotated with it; an ICD code's place in the classification).

Every record carries its provenance (`meta.provenance`: subject, relation, object, source for each fact used) and is
a `medfoundry.data.records.Record` (kind "text", or "qa" with options A-D, the answer letter and a short `reasoning`
that cites the facts, for SFT with structured reasoning). An optional `Rewriter` paraphrases the text records through
any OpenAI-compatible endpoint; a rewrite that loses the entity's name is rejected and the template text kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from medfoundry.data.records import EntityMention, Record
from medfoundry.entities.tree import EntityTree

GENERATOR = "met-template-v1"
LETTERS = ("A", "B", "C", "D")
LICENSES = {
    "hpo": "HPO (hpo.jax.org license: free use with attribution)",
    "hpoa": "HPO annotations (hpo.jax.org license: free use with attribution)",
    "icd10cm": "ICD-10-CM (CDC/NCHS, public domain)",
    "drugs": "drug-named-entity-recognition dictionary (MIT; DrugBank/MeSH/MedlinePlus derived)",
    "mesh": "MeSH (NLM, public domain)",
    "do": "Human Disease Ontology (CC0)",
    "symp": "Symptom Ontology (CC0)",
    "uberon": "UBERON (CC BY 3.0)",
}


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    object: str  # an entity id or a literal
    source: str
    object_name: str = ""

    def as_dict(self) -> dict:
        return {
            "subject": self.subject,
            "relation": self.relation,
            "object": self.object,
            "source": self.source,
        }


class Rewriter:
    """Paraphrase text through an OpenAI-compatible chat endpoint (vLLM, KServe, llama.cpp, OpenAI ...)."""

    SYSTEM = (
        "Rewrite the user's passage as fluent encyclopedic prose for medical students. Keep every fact, name and code "
        "exactly; add no new facts. Answer with the passage only."
    )

    def __init__(
        self, endpoint: str, model: str | None = None, api_key: str | None = None, timeout: float = 60.0
    ):
        from openai import OpenAI

        self.model = model or "default"
        self.client = OpenAI(
            base_url=endpoint,
            api_key=api_key or os.environ.get("OPENAI_API_KEY", "EMPTY"),
            timeout=timeout,
            max_retries=1,
        )

    def rewrite(self, text: str) -> str:
        response = self.client.chat.completions.create(
            model=self.model,
            messages=[{"role": "system", "content": self.SYSTEM}, {"role": "user", "content": text}],
            temperature=0.3,
        )
        return (response.choices[0].message.content or "").strip()


class _Facts:
    """Fact lookups over the tree, with the reverse phenotype -> diseases index built once."""

    def __init__(self, tree: EntityTree):
        self.tree = tree
        frame = tree.frame
        self.attributes = {
            node_id: json.loads(raw)
            for node_id, raw in zip(frame["id"], frame["attributes"], strict=True)
            if raw != "{}"
        }
        self.diseases_with: dict[str, list[str]] = defaultdict(list)
        for node_id, attributes in self.attributes.items():
            for phenotype in attributes.get("phenotypes", []):
                if phenotype in tree:  # a capped tree lacks some
                    self.diseases_with[phenotype].append(node_id)
        self.icd_codes: dict[str, list[str]] = defaultdict(list)  # "category" / "code" -> ICD-10-CM codes
        for attributes in self.attributes.values():
            if attributes.get("icd_level") in ("category", "code"):
                self.icd_codes[attributes["icd_level"]].append(attributes["icd10cm"])
        self.by_kind: dict[str, list[str]] = defaultdict(list)
        for node_id, kind, linkable in zip(frame["id"], frame["kind"], frame["linkable"], strict=True):
            if linkable:
                self.by_kind[kind].append(node_id)

    def name(self, node_id: str) -> str:
        resolved = self.tree.resolve(node_id)
        return self.tree.name(resolved) if resolved else node_id

    def real_parents(self, node_id: str) -> list[str]:
        return [p for p in self.tree.parents(node_id) if not p.startswith("MET:")]

    def icd_code(self, node: dict) -> str | None:
        # only the node itself or a node merged into it: a cross-reference alone is not an identity
        for code in [node["id"], *node["merged_ids"]]:
            if code.startswith("ICD10CM:") and code[8:9].isalpha():
                return code[8:]
        return None

    def of(self, node_id: str) -> list[Fact]:
        node = self.tree.node(node_id)
        attributes = node["attributes"]
        source = node["source"].split(":")[0]
        facts = []
        if node["definition"]:
            facts.append(Fact(node_id, "definition", node["definition"], source))
        for parent in self.real_parents(node_id)[:3]:
            facts.append(Fact(node_id, "is_a", parent, source, self.name(parent)))
        code = self.icd_code(node)
        if code:
            facts.append(Fact(node_id, "icd10cm_code", code, "icd10cm"))
        for phenotype in attributes.get("phenotypes", [])[:8]:
            if phenotype in self.tree:
                facts.append(Fact(node_id, "has_phenotype", phenotype, "hpoa", self.name(phenotype)))
        for mode in attributes.get("inheritance", [])[:2]:
            if mode in self.tree:
                facts.append(Fact(node_id, "inheritance", mode, "hpoa", self.name(mode)))
        for symptom in attributes.get("symptoms", [])[:5]:
            if symptom in self.tree:
                facts.append(Fact(node_id, "has_symptom", symptom, "do", self.name(symptom)))
        for brand in attributes.get("brands", [])[:3]:
            facts.append(Fact(node_id, "brand_name", brand, "drugs"))
        for tree_number in attributes.get("mesh_tree", [])[:2]:
            facts.append(Fact(node_id, "mesh_tree_number", tree_number, "mesh"))
        if node["kind"] == "phenotype":
            for disease in self.diseases_with.get(node_id, [])[:5]:
                facts.append(Fact(disease, "has_phenotype", node_id, "hpoa", self.name(disease)))
        return facts


def _record_id(*parts: str) -> str:
    return "synth-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _join(names: list[str]) -> str:
    names = [n for n in names if n]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _text(node: dict, facts: list[Fact]) -> str:
    name, kind = node["name"], node["kind"]
    pick = defaultdict(list)
    for fact in facts:
        pick[fact.relation].append(fact)
    rare = " rare" if node["rare"] else ""
    article = "an" if (rare or f" {kind}")[1] in "aeiou" else "a"
    label = {"drug_class": "drug class", "clinical_attribute": "clinical attribute"}.get(kind, kind)
    sentences = [f"{name} is {article}{rare} {label}."]
    if pick["definition"]:
        sentences.append(pick["definition"][0].object.rstrip(".") + ".")
    if pick["is_a"]:
        sentences.append(f"It is classified under {_join([f.object_name for f in pick['is_a']])}.")
    if pick["icd10cm_code"]:
        sentences.append(f"Its ICD-10-CM code is {pick['icd10cm_code'][0].object}.")
    if pick["has_phenotype"] and kind != "phenotype":
        features = _join([f.object_name for f in pick["has_phenotype"]])
        sentences.append(f"Clinical features annotated in the Human Phenotype Ontology include {features}.")
    if pick["inheritance"]:
        sentences.append(f"Mode of inheritance: {_join([f.object_name for f in pick['inheritance']])}.")
    if pick["has_symptom"]:
        sentences.append(
            f"Symptoms recorded in the Disease Ontology include {_join([f.object_name for f in pick['has_symptom']])}."
        )
    if pick["brand_name"]:
        sentences.append(f"Brand names include {_join([f.object for f in pick['brand_name']])}.")
    if pick["mesh_tree_number"]:
        sentences.append(f"Its MeSH tree number is {pick['mesh_tree_number'][0].object}.")
    if kind == "phenotype" and pick["has_phenotype"]:
        sentences.append(
            f"Diseases annotated with it include {_join([f.object_name for f in pick['has_phenotype']])}."
        )
    return " ".join(sentences)


class _QuestionMaker:
    def __init__(self, facts: _Facts, rng: random.Random):
        self.facts = facts
        self.rng = rng

    def _options(self, correct: str, distractors: list[str]) -> tuple[dict[str, str], str] | None:
        distractors = [d for d in dict.fromkeys(distractors) if d and d.lower() != correct.lower()][:3]
        if len(distractors) < 3:
            return None
        choices = [correct, *distractors]
        self.rng.shuffle(choices)
        return dict(zip(LETTERS, choices, strict=True)), LETTERS[choices.index(correct)]

    def _sample(self, pool: list[str], exclude: set[str], k: int = 12) -> list[str]:
        if not pool:
            return []
        picks = [self.rng.choice(pool) for _ in range(k)]
        return [p for p in dict.fromkeys(picks) if p not in exclude]

    def questions(
        self, node: dict, facts: list[Fact]
    ) -> list[tuple[str, dict[str, str], str, str, list[Fact]]]:
        out = []
        name, node_id = node["name"], node["id"]
        phenotypes = [f for f in facts if f.relation == "has_phenotype" and f.subject == node_id]
        if phenotypes:
            fact = phenotypes[0]
            own = {f.object for f in phenotypes}
            related = set(own)
            for p in own:
                related |= self.facts.tree.ancestors(p)
            pool = [p for p in self._sample(list(self.facts.diseases_with), related, 40)]
            pool = [p for p in pool if not (self.facts.tree.ancestors(p) & own)]
            made = self._options(fact.object_name, [self.facts.name(p) for p in pool])
            if made:
                options, letter = made
                others = _join([options[x] for x in LETTERS if x != letter])
                reasoning = (
                    f"{name} ({node_id}) is annotated in the HPO disease annotations (phenotype.hpoa) with "
                    f"{fact.object_name} ({fact.object}). {others} are not among its annotated features. "
                    f"Answer: {letter}."
                )
                out.append(
                    (
                        f"Which of the following is a clinical feature of {name}?",
                        options,
                        letter,
                        reasoning,
                        [fact],
                    )
                )
        code = next((f for f in facts if f.relation == "icd10cm_code"), None)
        if code:
            level = "code" if "." in code.object else "category"
            pool = self.facts.icd_codes[level]
            distractor_codes = [c for c in self._sample(pool, {code.object}, 12) if c[:1] != code.object[:1]]
            made = self._options(code.object, distractor_codes)
            if made:
                options, letter = made
                reasoning = f"In ICD-10-CM, {name} is coded {code.object}. Answer: {letter}."
                out.append((f"What is the ICD-10-CM code for {name}?", options, letter, reasoning, [code]))
        classes = [f for f in facts if f.relation == "is_a"]
        if classes and node["kind"] in ("drug", "drug_class"):
            fact = classes[0]
            ancestors = self.facts.tree.ancestors(node_id)
            pool = self._sample(self.facts.by_kind.get("drug_class", []), ancestors | {node_id}, 30)
            made = self._options(fact.object_name, [self.facts.name(p) for p in pool])
            if made:
                options, letter = made
                reasoning = (
                    f"In the MeSH drug hierarchy, {name} is filed under {fact.object_name} ({fact.object}). "
                    f"Answer: {letter}."
                )
                out.append(
                    (f"To which class of substances does {name} belong?", options, letter, reasoning, [fact])
                )
        diseases = [f for f in facts if f.relation == "has_phenotype" and f.object == node_id]
        if diseases and node["kind"] == "phenotype":
            fact = diseases[0]
            with_it = set(self.facts.diseases_with.get(node_id, []))
            pool = self._sample(self.facts.by_kind.get("disease", []), with_it, 30)
            pool = [
                p for p in pool if p in self.facts.attributes and self.facts.attributes[p].get("phenotypes")
            ]
            made = self._options(fact.object_name, [self.facts.name(p) for p in pool])
            if made:
                options, letter = made
                reasoning = (
                    f"{fact.object_name} ({fact.subject}) is annotated with {name} ({node_id}) in phenotype.hpoa; "
                    f"the other options are not. Answer: {letter}."
                )
                out.append(
                    (
                        f"Which of the following diseases is annotated with {name}?",
                        options,
                        letter,
                        reasoning,
                        [fact],
                    )
                )
        return out


def select_targets(
    tree: EntityTree,
    counts: Mapping[str, int],
    sparse_threshold: int,
    max_entities: int,
    seed: int = 0,
    facts: _Facts | None = None,
) -> list[str]:
    """Linkable nodes mentioned at most `sparse_threshold` times: rare diseases with phenotype annotations first,
    then drugs with a class, phenotypes annotated to diseases, the rest; shuffled with `seed` inside each group."""
    facts = facts or _Facts(tree)
    frame = tree.frame[tree.frame["linkable"]]
    groups: dict[int, list[str]] = defaultdict(list)
    for node_id, kind, rare, parents in zip(
        frame["id"], frame["kind"], frame["rare"], frame["parent_ids"], strict=True
    ):
        if counts.get(node_id, 0) > sparse_threshold:
            continue
        if kind == "disease" and rare and facts.attributes.get(node_id, {}).get("phenotypes"):
            groups[0].append(node_id)
        elif kind in ("drug", "drug_class") and any(not p.startswith("MET:") for p in parents):
            groups[1].append(node_id)
        elif kind == "phenotype" and node_id in facts.diseases_with:
            groups[2].append(node_id)
        else:
            groups[3].append(node_id)
    rng = random.Random(seed)
    ordered = []
    for rank in sorted(groups):
        members = sorted(groups[rank])
        rng.shuffle(members)
        ordered.extend(members)
    return ordered[:max_entities]


def synthesize_for_sparse(
    tree: EntityTree,
    counts: Mapping[str, int] | Any,
    max_entities: int = 200,
    sparse_threshold: int = 2,
    seed: int = 0,
    rewriter: Rewriter | None = None,
    targets: Iterable[str] | None = None,
    linker=None,
) -> list[Record]:
    """Text and QA records for sparse/uncovered entities (`counts`: id -> mentions, or a CoverageReport).

    `targets` overrides the selection with explicit node ids. With a `rewriter`, each text record is paraphrased
    and fact-checked against the node's facts (`FactChecker`, with `linker` or one built from the tree).
    """
    checker: FactChecker | None = None
    if hasattr(counts, "counts"):
        counts = counts.counts()
    facts = _Facts(tree)
    rng = random.Random(seed)
    maker = _QuestionMaker(facts, rng)
    if targets is not None:
        chosen = list(targets)
    else:
        chosen = select_targets(tree, counts, sparse_threshold, max_entities, seed, facts)
    records: list[Record] = []
    for node_id in chosen:
        node = tree.node(tree.resolve(node_id) or node_id)
        node_facts = facts.of(node["id"])
        if not node_facts:
            continue
        license_text = "; ".join(sorted({LICENSES.get(f.source, f.source) for f in node_facts}))
        base_meta = {
            "synthetic": True,
            "generator": GENERATOR,
            "entity_id": node["id"],
            "entity_name": node["name"],
            "entity_kind": node["kind"],
            "sparse_count": int(counts.get(node["id"], 0)),
        }
        text = _text(node, node_facts)
        text_meta = {**base_meta, "provenance": [f.as_dict() for f in node_facts]}
        if rewriter is not None:
            if checker is None:
                from medfoundry.entities.linker import Linker

                checker = FactChecker(linker or Linker.from_tree(tree))
            text, text_meta = _rewrite(rewriter, checker, text, node, node_facts, text_meta)
        start = text.find(node["name"])
        mention = EntityMention(
            id=node["id"],
            name=node["name"],
            kind=node["kind"],
            start=max(start, 0),
            end=max(start, 0) + len(node["name"]),
            rare=bool(node["rare"]),
        )
        records.append(
            Record(
                id=_record_id(node["id"], "text"),
                source=f"met:{node['id']}",
                kind="text",
                text=text,
                entities=[mention] if start >= 0 else [],
                license=license_text,
                meta=text_meta,
            )
        )
        for question, options, letter, reasoning, used in maker.questions(node, node_facts):
            records.append(
                Record(
                    id=_record_id(node["id"], "qa", question),
                    source=f"met:{node['id']}",
                    kind="qa",
                    question=question,
                    options=options,
                    answer=letter,
                    reasoning=reasoning,
                    license=license_text,
                    meta={**base_meta, "provenance": [f.as_dict() for f in used]},
                )
            )
    return records


# Relations a rewrite may not introduce: the templates state phenotypes, inheritance, classes, codes, symptoms and
# brands only, so a treatment, cause, risk, course or frequency in the output is a fact the node does not hold.
UNGROUNDED_RELATIONS = (
    "treated with", "treatment", "treat", "treats", "therapy", "cure", "cures", "caused by", "causes", "cause of",
    "leads to", "lead to", "results in", "risk factor", "risk of", "increases the risk", "complication",
    "complications", "prevent", "prevents", "prevention", "prognosis", "mortality", "fatal", "life expectancy",
    "prevalence", "incidence", "affects", "occurs in", "diagnosed by", "contraindicated", "side effect",
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


class FactChecker:
    """Accepts a rewrite only if every entity and relation in it comes from the node's facts.

    Entities: the rewrite is linked with the tree's linker; every mention must be the node itself, an object of
    one of its facts, or an entity the grounded template already names. Relations and figures: a phrase of
    `UNGROUNDED_RELATIONS` or a number the template does not contain is an added fact.
    """

    def __init__(self, linker) -> None:
        self.linker = linker

    def reason(self, template: str, rewritten: str, node: dict, facts: list[Fact]) -> str | None:
        """Why the rewrite is rejected (None: accepted)."""
        if node["name"].lower() not in rewritten.lower():
            return f"drops the entity's name {node['name']!r}"
        if not 0.5 * len(template) <= len(rewritten) <= 3 * len(template):
            return f"length {len(rewritten)} is outside 0.5-3x the template's {len(template)}"
        allowed = {node["id"], *node.get("merged_ids", [])}
        allowed |= {f.object for f in facts} | {f.subject for f in facts}
        allowed |= {m.id for m in self.linker.link(template)}
        added = [m for m in self.linker.link(rewritten) if m.id not in allowed]
        if added:
            names = ", ".join(sorted({f"{rewritten[m.start : m.end]!r} ({m.id})" for m in added}))
            return f"entity not in the node's facts: {names}"
        template_lower, rewritten_lower = template.lower(), rewritten.lower()
        for phrase in UNGROUNDED_RELATIONS:
            pattern = rf"\b{re.escape(phrase)}\b"
            if re.search(pattern, rewritten_lower) and not re.search(pattern, template_lower):
                return f"relation not in the node's facts: {phrase!r}"
        numbers = set(_NUMBER.findall(rewritten)) - set(_NUMBER.findall(template))
        if numbers:
            return f"figure not in the node's facts: {', '.join(sorted(numbers))}"
        return None


def _rewrite(
    rewriter: Rewriter, checker: FactChecker, text: str, node: dict, facts: list[Fact], meta: dict
) -> tuple[str, dict]:
    try:
        rewritten = rewriter.rewrite(text)
    except Exception as error:  # noqa: BLE001 - the endpoint is optional: keep the grounded template text
        return text, {**meta, "rewriter": "error", "rewriter_error": f"{type(error).__name__}: {error}"[:300]}
    reason = checker.reason(text, rewritten, node, facts)
    if reason is not None:
        return text, {**meta, "rewriter": "rejected", "rejected_because": reason, "rewritten": rewritten[:2000]}
    return rewritten, {**meta, "rewriter": "accepted", "template_text": text}


def rewriter_from_config(endpoint: str | None, model: str | None) -> Rewriter | None:
    return Rewriter(endpoint, model) if endpoint else None


def summarize(records: list[Record]) -> dict[str, Any]:
    kinds = defaultdict(int)
    for record in records:
        kinds[record.kind] += 1
    return {
        "synthesized_records": len(records),
        "synthesized_text": kinds["text"],
        "synthesized_qa": kinds["qa"],
        "synthesized_entities": len({r.meta["entity_id"] for r in records}),
    }
