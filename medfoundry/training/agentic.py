"""Tool-requiring tasks for agentic RL: questions whose answer is a number the model cannot know without computing
(clinical calculators on random patients) or a code it must look up (ICD-10-CM, HPO). A task is kept only when a
reference solver gets it right with the tool and wrong without it (its no-tool answer is the population-typical
value, or "unknown" for codes), so every kept task needs the tool. Tasks become QA records whose meta carries
`expected_tool`, `answer_type` and `tolerance` for the rewards.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from medfoundry.data.records import Record
from medfoundry.training.rewards.rules import parse_number, rule_match
from medfoundry.training.tools import TOOLS

# What a solver without tools answers: a typical adult value, or nothing for codes.
NO_TOOL_GUESS = {"egfr_ckd_epi_2021": "90", "bmi": "25", "cha2ds2_vasc": "2", "qtc_bazett": "420", "anion_gap": "12"}
ICD_DESCRIPTIONS = ["Type 2 diabetes mellitus without complications", "Essential (primary) hypertension",
                    "Acute myocardial infarction, unspecified", "Iron deficiency anemia, unspecified",
                    "Pneumonia, unspecified organism", "Migraine, unspecified, not intractable, without status migrainosus"]
HPO_NAMES = ["Tall stature", "Seizure", "Arachnodactyly", "Ptosis", "Short stature", "Hypotonia"]


@dataclass
class ToolTask:
    id: str
    question: str
    tool: str
    arguments: dict[str, Any]
    answer: str = ""
    answer_type: str = "number"
    tolerance: float | None = 0.5
    meta: dict[str, Any] = field(default_factory=dict)


def _calculator_task(i: int, rng: random.Random) -> ToolTask:
    kind = rng.choice(["egfr_ckd_epi_2021", "bmi", "cha2ds2_vasc", "qtc_bazett", "anion_gap"])
    sex = rng.choice(["female", "male"])
    if kind == "egfr_ckd_epi_2021":
        args = {"creatinine_mg_dl": round(rng.uniform(0.5, 3.5), 1), "age": rng.randint(25, 90), "sex": sex}
        q = (f"A {args['age']}-year-old {'woman' if sex == 'female' else 'man'} has a serum creatinine of "
             f"{args['creatinine_mg_dl']} mg/dL. What is the eGFR (CKD-EPI 2021) in mL/min/1.73 m2?")
    elif kind == "bmi":
        args = {"weight_kg": rng.randint(45, 140), "height_cm": rng.randint(150, 200)}
        q = f"A patient weighs {args['weight_kg']} kg and is {args['height_cm']} cm tall. What is the BMI?"
    elif kind == "cha2ds2_vasc":
        flags = {k: rng.random() < 0.4 for k in ("heart_failure", "hypertension", "diabetes", "stroke_or_tia",
                                                 "vascular_disease")}
        args = {"age": rng.randint(40, 90), "sex": sex, **flags}
        history = ", ".join(k.replace("_", " ") for k, v in flags.items() if v) or "no other history"
        q = (f"A {args['age']}-year-old {'woman' if sex == 'female' else 'man'} with atrial fibrillation has "
             f"{history}. What is the CHA2DS2-VASc score?")
    elif kind == "qtc_bazett":
        args = {"qt_ms": rng.randint(320, 520), "heart_rate_bpm": rng.randint(45, 130)}
        q = f"The ECG shows a QT of {args['qt_ms']} ms at a heart rate of {args['heart_rate_bpm']}/min. What is the QTc (Bazett) in ms?"
    else:
        args = {"sodium": rng.randint(128, 150), "chloride": rng.randint(90, 115), "bicarbonate": rng.randint(8, 30)}
        q = (f"Sodium {args['sodium']}, chloride {args['chloride']}, bicarbonate {args['bicarbonate']} mmol/L. "
             f"What is the anion gap?")
    return ToolTask(f"tool-{i}", q, kind, args)


def _lookup_task(i: int, rng: random.Random) -> ToolTask:
    if rng.random() < 0.5:
        description = rng.choice(ICD_DESCRIPTIONS)
        return ToolTask(f"tool-{i}", f"What is the ICD-10-CM code for: {description}?", "icd10_lookup",
                        {"query": description}, answer_type="regex", tolerance=None)
    name = rng.choice(HPO_NAMES)
    return ToolTask(f"tool-{i}", f"What is the HPO id of the phenotype '{name}'?", "hpo_search", {"query": name},
                    answer_type="regex", tolerance=None)


def solve(task: ToolTask, with_tools: bool) -> str:
    """The reference solver's final answer: the tool's result (first line, leading number or code), or the no-tool
    guess."""
    if not with_tools:
        return NO_TOOL_GUESS.get(task.tool, "unknown")
    result = TOOLS[task.tool](**task.arguments).splitlines()[0]
    if task.answer_type == "number":
        value = parse_number(result)
        return f"{value:g}" if value is not None else result
    return result.split(":")[0].strip()


def generate_tasks(n: int, seed: int = 0, lookup_share: float = 0.3) -> tuple[list[ToolTask], dict[str, int]]:
    """`n` candidate tasks; returns those that need the tool, and counts (candidates, kept, solvable_without_tools)."""
    rng = random.Random(seed)
    kept: list[ToolTask] = []
    counts = {"candidates": n, "kept": 0, "solvable_without_tools": 0}
    for i in range(n):
        task = _lookup_task(i, rng) if rng.random() < lookup_share else _calculator_task(i, rng)
        with_tool = solve(task, with_tools=True)
        task.answer = re.escape(with_tool) if task.answer_type == "regex" else with_tool
        without = solve(task, with_tools=False)
        if rule_match(f"<answer>{without}</answer>", task.answer, task.answer_type, tolerance=task.tolerance):
            counts["solvable_without_tools"] += 1
            continue
        kept.append(task)
    counts["kept"] = len(kept)
    return kept, counts


def task_records(tasks: list[ToolTask], holdout_use: str = "rl") -> list[Record]:
    return [
        Record(
            id=t.id, source=f"agentic:{t.tool}", kind="qa", question=t.question, answer=t.answer, split="holdout",
            meta={"holdout_use": holdout_use, "expected_tool": t.tool, "answer_type": t.answer_type,
                  "tolerance": "" if t.tolerance is None else t.tolerance, "tool_arguments": t.arguments},
        )
        for t in tasks
    ]


# ---- a plain-text tool protocol for chat templates without tool support (SmolLM2's ChatML) -----------------------
# TRL's tool loop needs a chat template that renders tool schemas and a response parser for the model family;
# SmolLM2-135M-Instruct's template has neither, so the agentic benchmark uses this protocol instead.
TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)


def tool_system_prompt(tools: list[str]) -> str:
    import inspect

    lines = [f"- {name}({', '.join(inspect.signature(TOOLS[name]).parameters)})" for name in tools]
    return ("You are a clinical assistant with tools:\n" + "\n".join(lines) + "\nCall one tool as "
            '<tool_call>{"name": ..., "arguments": {...}}</tool_call>. After its result, reply <answer>...</answer>.')


NO_TOOL_SYSTEM = "You are a clinical assistant. Reply with the final answer as <answer>...</answer>."


def tool_call_text(task: ToolTask) -> str:
    import json

    return f"<tool_call>{json.dumps({'name': task.tool, 'arguments': task.arguments})}</tool_call>"


def run_tool_call(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the parsed call, the tool's result or an error string) for the first <tool_call> in `text`; (None, None)
    without a call."""
    import json

    match = TOOL_CALL.search(text)
    if match is None:
        return None, None
    try:
        call = json.loads(match.group(1))
        return call, TOOLS[call["name"]](**call.get("arguments", {}))
    except (ValueError, KeyError, TypeError) as err:  # bad JSON, unknown tool, bad arguments
        return None, f"error: {err}"


def answer_from_result(task: ToolTask, result: str) -> str:
    """The final answer a trace built from a tool result gives (the SFT target of the answer turn)."""
    first = result.splitlines()[0]
    if task.answer_type == "number":
        value = parse_number(first)
        return f"{value:g}" if value is not None else first
    return first.split(":")[0].strip()
