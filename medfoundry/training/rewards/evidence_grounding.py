"""Evidence grounding: the share of the answer's medical terms that also appear in the provided evidence.

Terms are the answer's words (outside <think>) of at least 4 letters that are not common English words; a
`medical_terms` column (a list per row) narrows them to a given vocabulary. Evidence is the `context` or `evidence`
column. Rows without evidence, or answers without terms (e.g. a bare option letter), score None."""

from __future__ import annotations

from typing import Any

from medfoundry.training.rewards.base import column, completion_text, without_think, words

COMMON_WORDS = frozenset(
    """
    about above after again against also although among answer because been before being below between both but
    cannot could does doing down during each either else even every from further have having here however into
    itself just least less like likely more most much must neither never none nothing once only other otherwise
    ought over perhaps rather same should since some such than that their them then there therefore these they
    this those through thus under unless until upon very what when where whether which while whom whose will with
    within without would your yours option options correct incorrect true false because given based patient
    patients likely most best first second show shows shown seen found finding findings
    """.split()
)


def _terms(text: str, vocabulary: set[str] | None) -> set[str]:
    found = {w for w in words(without_think(text)) if len(w) >= 4 and w not in COMMON_WORDS}
    return {w for w in found if w in vocabulary} if vocabulary is not None else found


def evidence_grounding(completions: list[Any], **kwargs: Any) -> list[float | None]:
    n = len(completions)
    contexts = column(kwargs, "context", n)
    evidence = column(kwargs, "evidence", n)
    vocabularies = column(kwargs, "medical_terms", n)
    scores: list[float | None] = []
    for completion, context, extra, vocab in zip(completions, contexts, evidence, vocabularies, strict=True):
        source = " ".join(part for part in (context, extra) if part)
        if not source.strip():
            scores.append(None)
            continue
        vocabulary = {w.lower() for term in vocab for w in words(term)} if vocab else None
        terms = _terms(completion_text(completion), vocabulary)
        if not terms:
            scores.append(None)
            continue
        scores.append(len(terms & set(words(source))) / len(terms))
    return scores
