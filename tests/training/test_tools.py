import pytest

from medfoundry.training.rewards import REWARDS
from medfoundry.training.rewards.tool_use import tool_use
from medfoundry.training.tools import TOOLS, resolve_tools
from medfoundry.training.tools.drugs import drug_lookup
from medfoundry.training.tools.icd10 import icd10_lookup


def test_icd10_lookup_cpu_safe():
    assert icd10_lookup("E11.9") == "E11.9: Type 2 diabetes mellitus without complications"
    assert icd10_lookup("e11.9") == icd10_lookup("E11.9")
    found = icd10_lookup("type 2 diabetes mellitus")
    assert found.splitlines()[0].startswith("E11") and len(found.splitlines()) <= 5
    assert icd10_lookup("zzzz qqqq").startswith("no ICD-10-CM code matches")
    assert icd10_lookup("  ").startswith("empty query")


def test_drug_lookup_cpu_safe():
    assert drug_lookup("Glucophage").startswith("Metformin (DrugBank DB00331")
    assert drug_lookup("notadrugname").startswith("no drug named")


def test_tools_have_json_schemas_for_trl_cpu_safe():
    from transformers.utils import get_json_schema

    for name, fn in TOOLS.items():
        schema = get_json_schema(fn)
        assert schema["function"]["name"] == name
        assert schema["function"]["parameters"]["required"]
    with pytest.raises(ValueError, match="unknown tool"):
        resolve_tools(["web_search"])


def _call(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": {"query": "E11.9"}}}


def test_tool_use_reward_cpu_safe():
    ok_trace = [
        {"role": "assistant", "content": "", "tool_calls": [_call("icd10_lookup")]},
        {"role": "tool", "name": "icd10_lookup", "content": "E11.9: Type 2 diabetes mellitus without complications"},
        {"role": "assistant", "content": "<answer>E11.9</answer>"},
    ]
    failed_trace = [
        {"role": "assistant", "content": "", "tool_calls": [_call("icd10_lookup"), _call("nope")]},
        {"role": "tool", "name": "icd10_lookup", "content": "E11.9: ..."},
        {"role": "tool", "name": "nope", "content": "{'error': 'Tool nope not found.'}"},
    ]
    no_tools = [{"role": "assistant", "content": "<answer>E11.9</answer>"}]
    assert tool_use([ok_trace, failed_trace, no_tools]) == [1.0, 0.5, None]
    assert tool_use([no_tools, ok_trace], expected_tool=["drug_lookup", "icd10_lookup"]) == [0.0, 1.0]
    assert REWARDS["tool_use"] is tool_use


def test_grpo_with_tools_runs(tiny_profile, tiny_dataset, base_model_dir, tmp_path):
    from medfoundry.training.grpo import run_grpo

    rl = tiny_profile.rl.model_copy(
        update={"tools": ["icd10_lookup"], "rewards": {"exact_match": 1.0, "tool_use": 0.5}, "max_steps": 1}
    )
    metrics = run_grpo(tiny_profile.model_copy(update={"rl": rl}), tiny_dataset, base_model_dir, tmp_path)
    # A random-init policy does not emit tool calls; the run checks the wiring (schemas in the prompt, parsing).
    assert metrics["steps"] == rl.max_steps and metrics["tool_calls_per_completion"] == 0.0
