"""Tools (hand-checked outputs), tool-requiring task generation, the tool_use reward on traces, and GRPO wiring."""

import json

import pytest

from medfoundry.training.agentic import generate_tasks, solve, task_records
from medfoundry.training.rewards.rules import rule_match
from medfoundry.training.rewards.tool_use import tool_use
from medfoundry.training.tools import TOOLS, resolve_tools
from medfoundry.training.tools.calculators import anion_gap, bmi, cha2ds2_vasc, egfr_ckd_epi_2021, qtc_bazett
from medfoundry.training.tools.drugs import drug_lookup
from medfoundry.training.tools.hpo import hpo_search
from medfoundry.training.tools.icd10 import icd10_lookup


def test_calculators_hand_checked_cpu_safe():
    # CKD-EPI 2021 worked by hand: 142 x (1.0/0.9)^-1.2 x 0.9938^50 = 91.7; female: 142 x (0.8/0.7)^-1.2 x
    # 0.9938^60 x 1.012 = 84.3; below kappa the alpha branch: 142 x (0.6/0.9)^-0.302 x 0.9938^40 = 142 x 1.1303 x 0.7798 = 125.1
    assert egfr_ckd_epi_2021(1.0, 50, "male").startswith("92 ")
    assert egfr_ckd_epi_2021(0.8, 60, "female").startswith("84 ")
    assert egfr_ckd_epi_2021(0.6, 40, "M").startswith("125 ")
    assert bmi(70, 175) == "22.9 kg/m2"  # 70 / 1.75^2 = 22.86
    assert cha2ds2_vasc(76, "female", hypertension=True).startswith("4 ")  # age>=75 2 + female 1 + HTN 1
    assert cha2ds2_vasc(60, "male").startswith("0 ")
    assert cha2ds2_vasc(70, "male", stroke_or_tia=True, diabetes=True).startswith("4 ")  # 1 + 2 + 1
    assert qtc_bazett(400, 75).startswith("447 ")  # RR 0.8 s: 400 / sqrt(0.8) = 447.2
    assert anion_gap(140, 104, 24) == "12 mmol/L"
    with pytest.raises(ValueError, match="sex"):
        egfr_ckd_epi_2021(1.0, 50, "x")


def test_lookups_cpu_safe():
    assert icd10_lookup("E11.9") == "E11.9: Type 2 diabetes mellitus without complications"
    assert icd10_lookup("type 2 diabetes mellitus").splitlines()[0].startswith("E11")
    assert icd10_lookup("zzzz qqqq").startswith("no ICD-10-CM code matches")
    assert drug_lookup("Glucophage").startswith("Metformin (DrugBank DB00331")
    assert hpo_search("tall stature").splitlines()[0] == "HP:0000098: Tall stature"
    assert hpo_search("HP:0001250") == "HP:0001250: Seizure"
    assert hpo_search("zzzz").startswith("no HPO term")


def test_tools_have_json_schemas_for_trl_cpu_safe():
    from transformers.utils import get_json_schema

    assert {"egfr_ckd_epi_2021", "bmi", "cha2ds2_vasc", "qtc_bazett", "anion_gap", "icd10_lookup", "hpo_search",
            "drug_lookup"} <= set(TOOLS)
    for name, fn in TOOLS.items():
        schema = get_json_schema(fn)
        assert schema["function"]["name"] == name and schema["function"]["parameters"]["required"]
    with pytest.raises(ValueError, match="unknown tool"):
        resolve_tools(["web_search"])


def test_generated_tasks_need_their_tool_cpu_safe():
    tasks, counts = generate_tasks(60, seed=1)
    assert counts["kept"] == len(tasks) >= 50 and counts["kept"] + counts["solvable_without_tools"] == 60
    assert {t.tool for t in tasks} >= {"egfr_ckd_epi_2021", "bmi", "cha2ds2_vasc", "qtc_bazett", "anion_gap",
                                       "icd10_lookup", "hpo_search"}
    for task in tasks:
        gold = task.answer
        assert rule_match(f"<answer>{solve(task, True)}</answer>", gold, task.answer_type, tolerance=task.tolerance)
        assert not rule_match(f"<answer>{solve(task, False)}</answer>", gold, task.answer_type, tolerance=task.tolerance)
    record = task_records(tasks[:1])[0]
    assert record.meta["expected_tool"] == tasks[0].tool and record.split == "holdout"


def _call(name: str, **arguments) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def test_tool_use_reward_checks_the_answer_uses_the_result_cpu_safe():
    result = egfr_ckd_epi_2021(1.0, 50, "male")
    call = [{"role": "assistant", "content": "", "tool_calls": [_call("egfr_ckd_epi_2021", creatinine_mg_dl=1.0,
                                                                        age=50, sex="male")]},
            {"role": "tool", "name": "egfr_ckd_epi_2021", "content": result}]
    used = [*call, {"role": "assistant", "content": "<answer>92</answer>"}]
    ignored = [*call, {"role": "assistant", "content": "<answer>90</answer>"}]
    failed = [{"role": "assistant", "content": "", "tool_calls": [_call("nope")]},
              {"role": "tool", "name": "nope", "content": "{'error': 'Tool nope not found.'}"},
              {"role": "assistant", "content": "<answer>92</answer>"}]
    no_call = [{"role": "assistant", "content": "<answer>92</answer>"}]
    want = ["egfr_ckd_epi_2021"] * 4
    assert tool_use([used, ignored, failed, no_call], expected_tool=want) == [1.0, 0.5, 0.0, 0.0]
    assert tool_use([no_call]) == [None]
    code = [{"role": "assistant", "content": "", "tool_calls": [_call("icd10_lookup", query="E11.9")]},
            {"role": "tool", "name": "icd10_lookup", "content": icd10_lookup("E11.9")},
            {"role": "assistant", "content": "<answer>E11.9</answer>"}]
    assert tool_use([code], expected_tool=["icd10_lookup"]) == [1.0]


def test_wiring_grpo_with_tools_on_agentic_tasks(tiny_profile, tiny_dataset, base_model_dir, tmp_path):
    """Wiring test: tool schemas reach the prompt, generated tool tasks carry expected_tool to the reward, which then
    applies to every completion (a random-init policy calls no tool, so it scores 0 there)."""
    from medfoundry.training.grpo import TRACES_FILE, run_grpo

    rl = tiny_profile.rl.model_copy(update={
        "tools": ["bmi"], "rewards": {"exact_match": 1.0, "tool_use": 0.5}, "max_steps": 1, "phases": [],
        "agentic_tasks": 6, "batch_size": 1, "num_generations": 2, "max_completion_length": 8})
    rl = rl.model_copy(update={"phases": [{"name": "tools", "pool": "tools", "max_steps": 1}]})
    profile = tiny_profile.model_copy(update={"rl": type(rl).model_validate(rl.model_dump())})
    metrics = run_grpo(profile, tiny_dataset, base_model_dir, tmp_path)
    assert metrics["agentic/kept"] >= 5 and metrics["tools/steps"] == 1
    assert metrics["reward_tool_use_applicable"] == 1.0 and metrics["reward_tool_use_mean"] == 0.0
    traces = [json.loads(line) for line in (tmp_path / TRACES_FILE).read_text().splitlines()]
    assert len(traces) == metrics["tools/rollouts"] == 2  # one group of two completions
    assert all(t["phase"] == "tools" and t["id"].startswith("tool-") for t in traces)
    assert all(set(t["rewards"]) == {"exact_match", "tool_use", "safety"} for t in traces)
