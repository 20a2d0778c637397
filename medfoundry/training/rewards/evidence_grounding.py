"""Evidence grounding: the share of the medical claims in an answer that the item's evidence supports.

Claims are the entities the medical entity tree's linker finds in the answer (outside <think>, negated mentions
left out). A claim is supported when the item's evidence (the `context` and `evidence` columns, plus the question)
names the same entity, or an entity the tree relates to it (is-a, disease -> phenotype/symptom links): an entity
check, not word overlap, so a wrong answer that shares words with the context scores 0. Rows whose answer names no
entity (e.g. a bare option letter) score None.
"""

from __future__ import annotations

from typing import Any

from medfoundry.training.rewards.base import column, completion_text, without_think
from medfoundry.training.rewards.grounding_index import GroundingIndex


class EvidenceGrounding:
    __name__ = "evidence_grounding"  # the name TRL logs: rewards/evidence_grounding/mean

    def __init__(self, index: GroundingIndex) -> None:
        self.index = index

    def __call__(self, completions: list[Any], **kwargs: Any) -> list[float | None]:
        n = len(completions)
        columns = [column(kwargs, name, n) for name in ("context", "evidence", "question")]
        scores: list[float | None] = []
        for completion, *sources in zip(completions, *columns, strict=True):
            claims = self.index.entities(without_think(completion_text(completion)))
            if not claims:
                scores.append(None)
                continue
            evidence = self.index.entities(" \n".join(s for s in sources if s))
            scores.append(len(self.index.supported(claims, evidence)) / len(claims))
        return scores
