"""Tool-requiring tasks for agentic RL and tool-use SFT: questions whose answer is a number the model cannot know
without computing (clinical calculators on random patients), a code it must look up (ICD-10-CM, HPO), or a fact of the
Medical Entity Tree about an entity linked in the data (its tree id, its number of children: `entity_tasks`). A task is
kept only when a reference solver gets it right with the tool and wrong without it (its no-tool answer is the
population-typical value, "unknown" for codes, 0 children), so every kept task needs the tool. Tasks become QA
records whose meta carries `expected_tool`, `answer_type` and `tolerance` for the rewards, and tool-use SFT examples
(`tool_sft_examples`: the call turn, then the answer turn after the tool's result) so the policy learns the call
format before GRPO.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from medfoundry.data.records import Record
from medfoundry.training.qa import qa_messages
from medfoundry.training.rewards.rules import parse_number, rule_match
from medfoundry.training.tools import TOOLS

# What a solver without tools answers: a typical adult value, or nothing for codes.
NO_TOOL_GUESS = {"egfr_ckd_epi_2021": "90", "bmi": "25", "cha2ds2_vasc": "2", "qtc_bazett": "420", "anion_gap": "12",
                 "children": "0"}
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
    # The line of the tool's result that holds the answer ("children: 3: ..."); "": the first line.
    result_field: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


CALCULATORS = ["egfr_ckd_epi_2021", "bmi", "cha2ds2_vasc", "qtc_bazett", "anion_gap"]
LOOKUPS = ["icd10_lookup", "hpo_search"]


def _calculator_task(i: int, rng: random.Random, kinds: list[str]) -> ToolTask:
    kind = rng.choice(kinds)
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


def _lookup_task(i: int, rng: random.Random, kinds: list[str]) -> ToolTask:
    if rng.choice(kinds) == "icd10_lookup":
        description = rng.choice(ICD_DESCRIPTIONS)
        return ToolTask(f"tool-{i}", f"What is the ICD-10-CM code for: {description}?", "icd10_lookup",
                        {"query": description}, answer_type="regex", tolerance=None)
    name = rng.choice(HPO_NAMES)
    return ToolTask(f"tool-{i}", f"What is the HPO id of the phenotype '{name}'?", "hpo_search", {"query": name},
                    answer_type="regex", tolerance=None)


def solve(task: ToolTask, with_tools: bool) -> str:
    """The reference solver's final answer: read from the tool's result, or the no-tool guess."""
    if not with_tools:
        return NO_TOOL_GUESS.get(task.result_field or task.tool, "unknown")
    return answer_from_result(task, TOOLS[task.tool](**task.arguments))


def _keep_if_tool_needed(task: ToolTask, counts: dict[str, int]) -> bool:
    """Set the task's gold answer from the tool; True when the no-tool solver gets it wrong (the task needs the tool)."""
    with_tool = solve(task, with_tools=True)
    task.answer = re.escape(with_tool) if task.answer_type == "regex" else with_tool
    without = solve(task, with_tools=False)
    if rule_match(f"<answer>{without}</answer>", task.answer, task.answer_type, tolerance=task.tolerance):
        counts["solvable_without_tools"] += 1
        return False
    return True


def generate_tasks(n: int, seed: int = 0, lookup_share: float = 0.3, tools: list[str] | None = None,
                   prefix: str = "tool") -> tuple[list[ToolTask], dict[str, int]]:
    """`n` candidate tasks for the offered `tools` (default: all calculators and code look-ups; a share
    `lookup_share` are look-ups when both kinds are offered); returns those that need the tool, and counts
    (candidates, kept, solvable_without_tools)."""
    rng = random.Random(seed)
    calculators = [t for t in CALCULATORS if tools is None or t in tools]
    lookups = [t for t in LOOKUPS if tools is None or t in tools]
    if not calculators or not lookups:
        lookup_share = 0.0 if calculators else 1.0
    kept: list[ToolTask] = []
    counts = {"candidates": n, "kept": 0, "solvable_without_tools": 0}
    if not calculators and not lookups:
        return kept, counts
    for i in range(n):
        if rng.random() < lookup_share:
            task = _lookup_task(i, rng, lookups)
        else:
            task = _calculator_task(i, rng, calculators)
        task.id = f"{prefix}-{i}"
        if _keep_if_tool_needed(task, counts):
            kept.append(task)
    counts["kept"] = len(kept)
    return kept, counts


def entity_tasks(records: list[Record], tree: Any, n: int, seed: int = 0,
                 prefix: str = "entity") -> tuple[list[ToolTask], dict[str, int]]:
    """Up to `n` entity-tree tasks about entities curation linked in `records` (each entity once): its tree id, or
    its number of direct children, answered by `entity_lookup` on the tree `tree` (which it points the tool at)."""
    from medfoundry.training.tools.entities import use_entity_tree

    use_entity_tree(tree)
    linked = sorted({m.id for r in records for m in r.entities if not m.negated and m.id in tree})
    rng = random.Random(seed)
    rng.shuffle(linked)
    counts = {"candidates": 0, "kept": 0, "solvable_without_tools": 0}
    kept: list[ToolTask] = []
    for node_id in linked:
        if len(kept) >= n:
            break
        name = tree.name(node_id)
        counts["candidates"] += 1
        if rng.random() < 0.5:
            task = ToolTask(f"{prefix}-{len(kept)}", f"What is the Medical Entity Tree id of '{name}'?", "entity_lookup",
                            {"query": name}, answer_type="regex", tolerance=None)
        else:
            task = ToolTask(f"{prefix}-{len(kept)}", f"How many direct children does '{name}' have in the Medical "
                            "Entity Tree?", "entity_lookup", {"query": name}, tolerance=0.0, result_field="children")
        if _keep_if_tool_needed(task, counts):
            kept.append(task)
    counts["kept"] = len(kept)
    return kept, counts


def profile_tasks(n: int, seed: int, tools: list[str], records: list[Record], tree: Any | None,
                  prefix: str = "tool") -> tuple[list[ToolTask], dict[str, int]]:
    """The tasks for a profile's offered `tools`: calculator and code-lookup tasks from `n` candidates, plus up to
    n/2 entity-tree tasks from the entities linked in `records` when `entity_lookup` is offered."""
    tasks, counts = generate_tasks(n, seed, tools=tools, prefix=prefix)
    if "entity_lookup" in tools and tree is not None:
        more, more_counts = entity_tasks(records, tree, max(1, n // 2), seed, prefix=f"{prefix}-entity")
        tasks += more
        counts = {k: counts[k] + more_counts[k] for k in counts}
        counts["entity_kept"] = more_counts["kept"]
    return tasks, counts


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
    """The final answer a trace built from a tool result gives (the SFT target of the answer turn): the task's
    result line (the first, or `result_field`), as a number or as the code before ": "."""
    lines = result.splitlines() or [""]
    line = next((ln.split(":", 1)[1] for ln in lines if task.result_field and ln.startswith(f"{task.result_field}:")),
                lines[0])
    if task.answer_type == "number":
        value = parse_number(line)
        return f"{value:g}" if value is not None else line
    return line.split(": ")[0].strip()


# ---- the tool-calling chat template and tool-use SFT examples (the format TRL's tool loop parses) ----------------
def use_tool_chat_template(loaded: Any) -> str | None:
    """Make the policy's chat template one TRL's tool loop renders tool schemas with and parses calls from. A
    template TRL knows is kept; a ChatML template it does not know (SmolLM2's) is replaced by TRL's Qwen3 template
    (Qwen3-VL's for vision models), which is the same ChatML plus tool turns. Returns the template it replaced (to
    restore before saving the model), else None."""
    from trl.chat_template_utils import add_response_schema, qwen3_chat_template, qwen3_vl_chat_template

    processing_class = loaded.processing_class
    try:
        add_response_schema(processing_class)
        return None
    except ValueError:
        original = processing_class.chat_template
    if "<|im_start|>" not in (original or ""):
        raise ValueError(f"{loaded.family}: rl.tools needs a chat template TRL parses tool calls from (a known one "
                         "or ChatML); this model's is neither")
    replacement = qwen3_vl_chat_template if loaded.is_vision else qwen3_chat_template
    processing_class.chat_template = replacement
    if loaded.processor is not None:
        loaded.tokenizer.chat_template = replacement
    add_response_schema(processing_class)
    return original


def restore_chat_template(loaded: Any, original: str | None) -> None:
    if original is not None:
        loaded.processing_class.chat_template = original
        if loaded.processor is not None:
            loaded.tokenizer.chat_template = original


def _render(loaded: Any, messages: list[dict[str, Any]], tools: list[Any], add_generation_prompt: bool) -> str:
    return loaded.processing_class.apply_chat_template(messages, tools=tools, tokenize=False,
                                                       add_generation_prompt=add_generation_prompt)


def tool_sft_examples(loaded: Any, tasks: list[ToolTask], tool_names: list[str]) -> list[Any]:
    """Two SFT examples per task, rendered as TRL's GRPO renders tool prompts (the offered tools' schemas in the
    template): the question -> the tool call turn, and the question, call and tool result -> the answer turn."""
    from medfoundry.training.common import TextExample
    from medfoundry.training.tools import resolve_tools

    tools = resolve_tools(tool_names)
    examples = []
    for task in tasks:
        record = task_records([task])[0]
        messages = qa_messages(record, reasoning=True)
        result = TOOLS[task.tool](**task.arguments)
        call = {"role": "assistant", "content": "",
                "tool_calls": [{"type": "function", "function": {"name": task.tool, "arguments": task.arguments}}]}
        answered = [*messages, call, {"role": "tool", "name": task.tool, "content": result}]
        final = {"role": "assistant", "content": f"<answer>{answer_from_result(task, result)}</answer>"}
        for prompt_messages, turn in ((messages, call), (answered, final)):
            prompt = _render(loaded, prompt_messages, tools, add_generation_prompt=True)
            full = _render(loaded, [*prompt_messages, turn], tools, add_generation_prompt=False)
            if not full.startswith(prompt):
                raise RuntimeError(f"{loaded.family}: the tool chat template renders the prompt differently inside "
                                   "a full chat")
            examples.append(TextExample(prompt, full[len(prompt):], None, 1.0, task.id, f"agentic:{task.tool}"))
    return examples


def profile_tool_sft_examples(profile: Any, loaded: Any, records: list[Record], tree: Any | None) -> list[Any]:
    """The tool-use SFT examples of a profile that offers RL tools (`rl.tools` and `rl.sft_tool_tasks`; its RL stage's
    `tool_sft` phase trains on them): tasks from other random patients than RL's (seed + 1) and from the entities
    linked in the training `records`."""
    cfg = profile.rl
    if not cfg.tools or not cfg.sft_tool_tasks:
        return []
    tasks, _ = profile_tasks(cfg.sft_tool_tasks, cfg.seed + 1, cfg.tools, records, tree, prefix="sft-tool")
    original = use_tool_chat_template(loaded)
    try:
        return tool_sft_examples(loaded, tasks, cfg.tools)
    finally:
        restore_chat_template(loaded, original)
