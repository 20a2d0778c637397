"""Per-item rubrics for RL rows, built from the item itself, the medical entity tree's facts about the entities it
names, and static domain rubrics. Each item is {"keywords": [...], "match": "any"|"all", "weight": w, "source": s}
as the `rubric` reward reads it; `source` says where it came from:

    gold              the gold answer, or its option text, with the tree's synonyms of the entity it links to
    tree:finding      a disease named in the item: any of its phenotypes/symptoms in the tree (HPO annotations, DO)
    tree:class        an entity named in the item: any of its parents in the tree (e.g. a drug's class)
    static:red_flag   a question with a red-flag symptom: the answer advises urgent care
    static:medication a question about a drug's dose: the answer defers to a clinician or pharmacist
"""

from __future__ import annotations

import re
from typing import Any

from medfoundry.data.records import Record
from medfoundry.training.rewards.grounding_index import GroundingIndex
from medfoundry.training.rewards.safety import RED_FLAG

MAX_TREE_ITEMS = 3  # entities per item that contribute tree facts
MAX_KEYWORDS = 6
STATIC_RUBRICS: list[tuple[re.Pattern, dict[str, Any]]] = [
    (
        RED_FLAG,
        {"keywords": ["emergency", "911", "urgent", "immediately", "seek care", "seek medical"], "match": "any",
         "weight": 1.0, "source": "static:red_flag"},
    ),
    (
        re.compile(r"\b(dose|dosage|dosing|mg|how much .* take)\b", re.I),
        {"keywords": ["doctor", "physician", "pharmacist", "clinician", "prescriber"], "match": "any", "weight": 0.5,
         "source": "static:medication"},
    ),
]


def _gold_text(record: Record) -> str:
    answer = (record.answer or "").strip()
    return (record.options or {}).get(answer, answer)


def _names(index: GroundingIndex, node_ids: list[str]) -> list[str]:
    return [index.tree.name(n) for n in node_ids if n in index.tree][:MAX_KEYWORDS]


def build_rubric(record: Record, index: GroundingIndex | None) -> list[dict[str, Any]]:
    """The rubric for one QA record (empty only when it has no gold answer)."""
    items: list[dict[str, Any]] = []
    gold = _gold_text(record)
    if gold:
        keywords = [gold]
        node = index.linker.lookup(gold) if index is not None else None
        if node is not None:
            keywords += [s for s in index.tree.node(node)["synonyms"] if len(s) >= 3][: MAX_KEYWORDS - 1]
        items.append({"keywords": keywords, "match": "any", "weight": 2.0, "source": "gold"})
    if index is not None:
        named = sorted(index.entities(" ".join(filter(None, (record.question, gold)))))[:MAX_TREE_ITEMS]
        for node in named:
            findings = sorted(index.attribute_links().get(node, ()))
            finding_names = _names(index, [f for f in findings if index.tree.node(f)["kind"] == "phenotype"])
            if finding_names:
                items.append({"keywords": finding_names, "match": "any", "weight": 0.5, "source": "tree:finding"})
            parent_names = _names(index, index.tree.parents(node))
            if parent_names:
                items.append({"keywords": parent_names, "match": "any", "weight": 0.5, "source": "tree:class"})
    question = record.question or ""
    items += [dict(item) for pattern, item in STATIC_RUBRICS if pattern.search(question)]
    return items
