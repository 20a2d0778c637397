"""An optional LLM judge for open answers (MedQuAD, VQA-RAD open, reports) over any OpenAI-compatible endpoint.

The judge sees the question, the reference and the model's answer, and replies "correct" or "incorrect". Its prompt is
versioned (`JUDGE_PROMPT_ID`, stored with every result): change the text only together with the version. Judged items
get a `judge_correct` metric (1/0; a reply that is neither is left unjudged and counted), and the results report the
judge's agreement with exact match on the same items, so a lenient or broken judge shows up as low agreement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medfoundry.evaluation.backends import GenerationRequest, OpenAIBackend
from medfoundry.tasks.extractors import extract_label

JUDGE_PROMPT_ID = "open-answer-judge@v1"
JUDGE_SYSTEM = "You grade answers to medical questions against a reference answer. You are strict about facts."
JUDGE_USER = (
    "Question: {question}\n"
    "Reference answer: {reference}\n"
    "Candidate answer: {candidate}\n\n"
    "Does the candidate answer give the same medical content as the reference (wording may differ)? "
    "Reply with one word: correct or incorrect."
)
VERDICTS = ("correct", "incorrect")


@dataclass(frozen=True)
class JudgeCase:
    question: str
    reference: str
    candidate: str


class OpenAIJudge:
    def __init__(
        self, endpoint: str, model_name: str, api_key: str | None = None, concurrency: int = 4,
        timeout_s: float = 60.0, retries: int = 2,
    ):
        self.client = OpenAIBackend(
            endpoint, model_name, api_key, concurrency=concurrency, timeout_s=timeout_s, retries=retries, max_tokens=8
        )
        self.description = f"{JUDGE_PROMPT_ID} by {model_name}@{endpoint}"

    def grade(self, cases: Sequence[JudgeCase]) -> list[float | None]:
        """1.0 correct, 0.0 incorrect, None when the judge's reply was an error or neither verdict."""
        requests = [
            GenerationRequest(JUDGE_SYSTEM, JUDGE_USER.format(question=c.question, reference=c.reference, candidate=c.candidate))
            for c in cases
        ]
        verdicts = []
        for reply in self.client.generate(requests):
            verdict = extract_label(reply.text, VERDICTS).value
            verdicts.append(None if verdict is None else float(verdict == "correct"))
        return verdicts
