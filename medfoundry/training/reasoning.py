"""Structured reasoning traces for SFT targets, in the recipe's four parts: understanding the question -> recall of
the relevant facts -> reasoning -> conclusion with the answer.

Traces come from a teacher (any OpenAI-compatible chat endpoint named in `profile.sft.teacher`, our own served model
included), grounded in the facts the entity tree holds for the item's linked entities; without a teacher, from
fact-based templates. Every trace is verified before it is kept:
  * all four parts are present and non-empty;
  * the conclusion's answer, read with evaluation's extractors, equals the gold answer;
  * no part before the conclusion states the answer (leakage): no "the answer is ...", "... is correct" about the
    gold answer, and no naming of the gold option by its letter.
Rejected traces are reported with their reasons; the item then trains on the template trace, which passes the same
checks (or is skipped, with its reason, if even that fails).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from medfoundry.data.records import Record
from medfoundry.tasks.extractors import extract_label, extract_option, normalize_text
from medfoundry.training.qa import YES_NO, YES_NO_MAYBE, task_of

log = logging.getLogger("medfoundry.training")
PARTS = ("understanding", "recall", "reasoning", "conclusion")
HEADINGS = {"understanding": "Understanding", "recall": "Recall", "reasoning": "Reasoning",
            "conclusion": "Conclusion"}
# Phrases that state an answer (checked only in the parts before the conclusion, next to the gold answer).
_STATES_ANSWER = r"(?:answer|correct|right (?:answer|choice|option)|best (?:answer|choice|option))"


@dataclass
class Trace:
    understanding: str
    recall: str
    reasoning: str
    conclusion: str

    def render(self) -> str:
        """The <think> body: the four parts under their headings."""
        return "\n".join(f"{HEADINGS[p]}: {getattr(self, p).strip()}" for p in PARTS)


@dataclass
class Verdict:
    kept: bool
    reason: str = ""


def _labels(record: Record) -> tuple[str, ...]:
    return tuple(record.meta.get("labels") or (YES_NO_MAYBE if "pubmedqa" in record.source.lower() else YES_NO))


def conclusion_answer(trace: Trace, record: Record) -> str | None:
    """The answer the conclusion gives, read as evaluation reads model answers."""
    task = task_of(record)
    if task == "multiple_choice":
        return extract_option(trace.conclusion, record.options or {}).value
    if task == "yes_no":
        return extract_label(trace.conclusion, _labels(record)).value
    return trace.conclusion


def _gold_matches(said: str | None, record: Record) -> bool:
    gold = (record.answer or "").strip()
    if said is None:
        return False
    if task_of(record) == "short_answer":
        return bool(normalize_text(gold)) and f" {normalize_text(gold)} " in f" {normalize_text(said)} "
    return said.strip().lower() == gold.lower()


def leak(text: str, record: Record) -> str | None:
    """What in `text` (a part before the conclusion) states the gold answer, or None."""
    gold = (record.answer or "").strip()
    if not gold:
        return None
    names = [re.escape(gold)]
    task = task_of(record)
    if task == "multiple_choice":
        letter = re.escape(gold.upper())
        option = (record.options or {}).get(gold.upper())
        by_letter = re.search(rf"(?:\b(?i:option|choice)|\()\s*{letter}\b|\b{letter}\s*[).:]\s*(?:is\b|$)", text)
        if by_letter:
            return f"names the gold option {gold.upper()} ({by_letter.group(0).strip()!r})"
        if option:
            names.append(re.escape(option.strip()))
    for name in names:
        for pattern in (rf"\b{_STATES_ANSWER}\b[^.;\n]{{0,40}}?\b{name}\b", rf"\b{name}\b[^.;\n]{{0,25}}?\bis (?:the )?{_STATES_ANSWER}\b"):
            found = re.search(pattern, text, flags=re.I)
            if found:
                return f"states the answer: {found.group(0).strip()!r}"
    return None


def verify(trace: Trace, record: Record) -> Verdict:
    for part in PARTS:
        if not getattr(trace, part, "").strip():
            return Verdict(False, f"missing part: {part}")
    for part in PARTS[:-1]:
        found = leak(getattr(trace, part), record)
        if found:
            return Verdict(False, f"leakage in {part} before the conclusion: {found}")
    said = conclusion_answer(trace, record)
    if not _gold_matches(said, record):
        return Verdict(False, f"wrong conclusion: it answers {said!r}, the gold answer is {record.answer!r}")
    return Verdict(True)


# ------------------------------------------------------------------------------------------------------ facts


class FactSource:
    """Facts about an item's linked entities from the entity tree (name, kind, parents, synonyms, rarity); without a
    tree, from the mentions themselves."""

    def __init__(self, tree: Any = None):
        self.tree = tree

    def facts(self, record: Record, limit: int = 6) -> list[str]:
        facts: list[str] = []
        seen: set[str] = set()
        for mention in record.entities:
            if mention.id in seen or mention.negated:
                continue
            seen.add(mention.id)
            facts.append(f"{mention.name} is a {mention.kind}{' and a rare disease' if mention.rare else ''}.")
            if self.tree is not None and mention.id in self.tree:
                parents = [self.tree.name(p) for p in self.tree.parents(mention.id) if p in self.tree][:2]
                if parents:
                    facts.append(f"{mention.name} is a kind of {' and '.join(parents)}.")
                synonyms = [s for s in self.tree.node(mention.id).get("synonyms", []) if s != mention.name][:2]
                if synonyms:
                    facts.append(f"{mention.name} is also called {', '.join(synonyms)}.")
            if len(facts) >= limit:
                break
        return facts[:limit]


def load_fact_source(profile: Any) -> FactSource:
    """The entity tree curation built for this profile, when it is in the workspace cache; else mentions only."""
    try:
        from medfoundry.entities.tree import EntityTree, cache_key
        from medfoundry.workspace import Workspace

        cfg = profile.curation
        ontology_dir = Path(cfg.ontology_dir) if cfg.ontology_dir else None
        folder = Workspace.resolve(profile.workspace).cache / "entity_tree" / cache_key(ontology_dir, cfg.max_nodes_per_source)
        if folder.is_dir():
            return FactSource(EntityTree.load(folder))
    except Exception as err:  # noqa: BLE001 - facts then come from the mentions alone
        log.warning("entity tree not loaded for reasoning facts: %s", err)
    return FactSource(None)


# -------------------------------------------------------------------------------------------------- templates


def _question_kind(record: Record) -> str:
    task = task_of(record)
    if task == "multiple_choice":
        return f"It offers {len(record.options or {})} options and one is to be chosen."
    if task == "yes_no":
        return f"It is answered with one of: {', '.join(_labels(record))}."
    return "It asks for a short answer."


def template_trace(record: Record, facts: list[str]) -> Trace:
    """A fact-based trace without a teacher: the question restated, the facts recalled, the options (or the context)
    weighed against them without naming the answer, then the conclusion."""
    question = " ".join((record.question or "").split())
    recall = " ".join(facts) if facts else "No linked entity facts for this item."
    if record.text and record.text.strip():
        context = " ".join(record.text.split())
        recall += f" The item's context says: {context[:300]}{'...' if len(context) > 300 else ''}"
    if task_of(record) == "multiple_choice":
        reasoning = ("Each option is checked against the recalled facts and the question's wording; options the "
                     "facts contradict or do not support are ruled out.")
    else:
        reasoning = "The recalled facts and the context are checked for what they support about the question."
    if record.reasoning and record.reasoning.strip():
        reasoning += " " + " ".join(record.reasoning.split())
    answer = (record.answer or "").strip()
    option = (record.options or {}).get(answer)
    conclusion = f"The answer is {answer} ({option})." if option else f"The answer is {answer}."
    return Trace(f"The question asks: {question} {_question_kind(record)}", recall, reasoning, conclusion)


def _without_rationale(trace: Trace, record: Record) -> Trace:
    """The template trace minus the record's own rationale (which may state the answer)."""
    return replace(trace, reasoning=template_trace(record.model_copy(update={"reasoning": None}), []).reasoning)


# --------------------------------------------------------------------------------------------------- teacher


TEACHER_SYSTEM = (
    "You write step-by-step medical reasoning for training data. Reply with one JSON object with the keys "
    '"understanding" (what the question asks), "recall" (the relevant facts, using the facts given), "reasoning" '
    '(weigh the evidence; do NOT state the final answer here) and "conclusion" (one sentence that gives the answer).'
)


def teacher_prompt(record: Record, facts: list[str]) -> str:
    lines = [f"Question: {record.question}"]
    if record.text:
        lines.append(f"Context: {record.text[:1500]}")
    if record.options:
        lines.append("Options:\n" + "\n".join(f"{k}. {v}" for k, v in record.options.items()))
    lines.append("Facts from the medical entity tree:\n" + ("\n".join(f"- {f}" for f in facts) or "- (none)"))
    lines.append(f"Gold answer: {record.answer}")
    return "\n".join(lines)


def parse_teacher_reply(content: str) -> Trace | None:
    found = re.search(r"\{.*\}", content or "", flags=re.S)
    if not found:
        return None
    try:
        data = json.loads(found.group(0))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return Trace(*(str(data.get(p) or "") for p in PARTS))


class Teacher:
    """An OpenAI-compatible chat endpoint (`profile.sft.teacher`), called through the official openai SDK."""

    def __init__(self, cfg: Any):
        from openai import OpenAI

        self.cfg = cfg
        self.client = OpenAI(base_url=cfg.base_url, api_key=os.environ.get(cfg.api_key_env) or "none",
                             timeout=cfg.timeout_s, max_retries=1)

    def trace(self, record: Record, facts: list[str]) -> tuple[Trace | None, str]:
        """(trace, "") or (None, why there is none)."""
        try:
            reply = self.client.chat.completions.create(
                model=self.cfg.model,
                messages=[{"role": "system", "content": TEACHER_SYSTEM},
                          {"role": "user", "content": teacher_prompt(record, facts)}],
                max_tokens=self.cfg.max_tokens,
                temperature=self.cfg.temperature,
            )
        except Exception as err:  # noqa: BLE001 - an endpoint error rejects this item's trace, not the stage
            return None, f"teacher call failed: {type(err).__name__}: {err}"[:300]
        content = reply.choices[0].message.content if reply.choices else ""
        trace = parse_teacher_reply(content or "")
        return (trace, "") if trace else (None, "teacher reply is not a JSON object with the four parts")


# ------------------------------------------------------------------------------------------------------ build


@dataclass
class ReasoningReport:
    source: str  # "teacher <model> at <url>" or "templates (no teacher in the profile)"
    kept: int = 0
    from_teacher: int = 0
    from_template: int = 0
    rejected: list[dict[str, str]] | None = None  # {"record_id", "origin", "reason"}
    skipped: list[dict[str, str]] | None = None  # items with no trace that passed

    def figures(self) -> dict[str, Any]:
        return {
            "reasoning_source": self.source,
            "reasoning_traces_kept": self.kept,
            "reasoning_from_teacher": self.from_teacher,
            "reasoning_from_template": self.from_template,
            "reasoning_rejected": len(self.rejected or []),
            "reasoning_skipped": len(self.skipped or []),
        }


def build_traces(records: list[Record], teacher_cfg: Any = None, facts: FactSource | None = None
                 ) -> tuple[dict[str, Trace], ReasoningReport]:
    """A verified trace per record id (teacher first when configured, else or on rejection the template)."""
    facts = facts or FactSource(None)
    teacher = Teacher(teacher_cfg) if teacher_cfg is not None else None
    source = (f"teacher {teacher_cfg.model} at {teacher_cfg.base_url}" if teacher_cfg is not None
              else "templates (no teacher in the profile)")
    report = ReasoningReport(source, rejected=[], skipped=[])
    traces: dict[str, Trace] = {}
    for record in records:
        item_facts = facts.facts(record)
        if teacher is not None:
            trace, why = teacher.trace(record, item_facts)
            verdict = verify(trace, record) if trace is not None else Verdict(False, why)
            if verdict.kept:
                traces[record.id] = trace
                report.from_teacher += 1
                continue
            report.rejected.append({"record_id": record.id, "origin": "teacher", "reason": verdict.reason})
        trace = template_trace(record, item_facts)
        verdict = verify(trace, record)
        if not verdict.kept:
            report.rejected.append({"record_id": record.id, "origin": "template", "reason": verdict.reason})
            trace = _without_rationale(trace, record)
            verdict = verify(trace, record)
        if verdict.kept:
            traces[record.id] = trace
            report.from_template += 1
        else:
            report.skipped.append({"record_id": record.id, "reason": verdict.reason})
    report.kept = len(traces)
    if teacher is None:
        log.warning("SFT reasoning: no teacher in the profile (sft.teacher); traces come from fact-based templates")
    return traces, report


def write_report(report: ReasoningReport, path: Path) -> None:
    path.write_text(json.dumps(asdict(report), indent=2))
