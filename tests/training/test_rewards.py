"""Hand-checked cases for each reward (pure Python, no model)."""

import json

import pytest

from medfoundry.training.rewards import REWARDS, reward_mixture, score
from medfoundry.training.rewards.evidence_grounding import evidence_grounding
from medfoundry.training.rewards.exact_match import exact_match
from medfoundry.training.rewards.format import format_reward
from medfoundry.training.rewards.rubric import rubric
from medfoundry.training.rewards.safety import safety


def test_exact_match_cpu_safe():
    options = json.dumps({"A": "Insulin", "B": "Metformin"})
    completions = [
        "<think>first line</think><answer>B</answer>",
        "<answer>A</answer>",
        "The answer is Metformin.",  # matched by option text
        "no idea",
    ]
    assert exact_match(completions, answer=["B"] * 4, options=[options] * 4) == [1.0, 0.0, 1.0, 0.0]
    assert exact_match(["<answer>Yes</answer>", "No."], answer=["yes", "yes"], options=["", ""]) == [1.0, 0.0]
    assert exact_match(["<answer>Low hemoglobin.</answer>"], answer=["low hemoglobin"]) == [1.0]
    assert exact_match(["anything"], answer=[""]) == [None]  # no gold: not applicable


def test_exact_match_accepts_conversational_completions_cpu_safe():
    completion = [{"role": "assistant", "content": "<answer>B</answer>"}]
    assert exact_match([completion], answer=["B"], options=[{"A": "x", "B": "y"}]) == [1.0]


def test_format_cpu_safe():
    assert format_reward(
        [
            "<think>reason</think><answer>B</answer>",
            "  <think>r</think>\n<answer>B</answer>\n",
            "<answer>B</answer>",
            "<think></think><answer>B</answer>",  # empty reasoning: only the answer counts
            "<think>r</think><answer>B</answer> trailing text",
            "B",
            "<answer> </answer>",
        ]
    ) == [1.0, 1.0, 0.5, 0.5, 0.5, 0.0, 0.0]
    assert REWARDS["format"] is format_reward and format_reward.__name__ == "format"


def test_rubric_cpu_safe():
    items = [
        {"keywords": ["metformin"], "weight": 2.0},
        {"keywords": ["renal", "function"], "weight": 1.0},  # all keywords needed
        {"keywords": ["lactic acidosis", "B12"], "weight": 1.0, "match": "any"},
    ]
    got = rubric(
        ["Start metformin; check renal function.", "Metformin can cause lactic acidosis.", "Insulin.", "x"],
        rubric=[items, items, items, None],
    )
    assert got == [0.75, 0.75, 0.0, None]
    assert rubric(["metformins are fine"], rubric=[["metformin"]]) == [0.0]  # word boundary
    assert rubric(["Metformin"], rubric=[json.dumps(["metformin"])]) == [1.0]  # JSON column


def test_evidence_grounding_cpu_safe():
    context = "Metformin lowers hepatic glucose production in type 2 diabetes."
    got = evidence_grounding(
        [
            "<answer>Metformin lowers glucose</answer>",  # terms: metformin, lowers, glucose -> all grounded
            "<think>metformin</think><answer>Insulin lowers glucose</answer>",  # insulin ungrounded: 2/3
            "<answer>B</answer>",  # no terms
            "Metformin",
        ],
        context=[context, context, context, ""],
    )
    assert got == [1.0, pytest.approx(2 / 3), None, None]
    vocab = [["insulin", "glucose"]]
    assert evidence_grounding(["insulin lowers glucose"], context=[context], medical_terms=vocab) == [0.5]


def test_safety_cpu_safe():
    got = safety(
        [
            "You can stop taking your medication now.",
            "Double the dose if it does not work.",
            "Chest pain is nothing; rest at home.",
            "Chest pain may be cardiac: seek emergency care.",
            "Metformin is first-line for type 2 diabetes.",
        ]
    )
    assert got == [0.0, 0.0, 0.5, 1.0, 1.0]
    # the high-risk topic can come from the question
    assert safety(["Take ibuprofen."], question=["I took an overdose, what now?"]) == [0.5]


def test_reward_mixture_and_weighted_score_cpu_safe():
    funcs, weights = reward_mixture({"exact_match": 1.0, "format": 0.2, "safety": 0.0})
    assert [f.__name__ for f in funcs] == ["exact_match", "format"] and weights == [1.0, 0.2]
    total = score({"exact_match": 1.0, "format": 0.2}, ["<think>x</think><answer>B</answer>", "<answer>A</answer>"],
                  answer=["B", "B"], options=[json.dumps({"A": "a", "B": "b"})] * 2)
    assert total == [pytest.approx(1.2), pytest.approx(0.1)]
    with pytest.raises(ValueError, match="unknown reward"):
        reward_mixture({"exact": 1.0})
    with pytest.raises(ValueError, match="non-zero"):
        reward_mixture({"format": 0.0})
