"""Hand-checked extraction cases, including the tricky outputs models actually produce."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medfoundry.tasks.extractors import (
    UNPARSEABLE,
    Extraction,
    extract_boxed,
    extract_free_text,
    extract_label,
    extract_option,
    normalize_text,
)

OPTIONS = {"A": "Aspirin", "B": "Beta blocker", "C": "Calcium channel blocker", "D": "Diuretic"}


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("The answer is (B).", "B"),
        ("B) Beta blocker", "B"),
        ("b", "B"),
        ("(c)", "C"),
        ("**D**", "D"),
        ("\\boxed{C}", "C"),
        ("So we get \\boxed{\\text{A}}", None),  # boxed LaTeX text is not a bare letter or an option text
        ("answer: b.", "B"),
        ("Correct option: C", "C"),
        ("I think option D is right", "D"),
        ("C: Calcium channel blocker", "C"),
        ("Beta blocker", "B"),  # option text
        ("calcium channel blocker is best here", "C"),  # option text inside a sentence
        ("<think>maybe A or B</think><answer>D</answer>", "D"),  # the recipe's reasoning format
        ("<answer>\\boxed{A}</answer>", "A"),
        ("The answer is a difficult one", None),  # the article "a" is not option A
        ("A patient like this needs care", None),
        ("", None),
        ("   ", None),
        ("E", None),  # not an option
    ],
)
def test_extract_option(output, expected):
    result = extract_option(output, OPTIONS)
    assert result.value == expected
    assert result.unparseable == (expected is None)
    if expected is None:
        assert result.method == UNPARSEABLE


def test_extract_option_prefers_longer_option_text_containing_a_shorter_one():
    options = {"A": "Antegrade", "B": "Retrograde", "C": "Antegrade and retrograde", "D": "None"}
    assert extract_option("Antegrade and retrograde", options).value == "C"
    assert extract_option("antegrade", options).value == "A"


def test_extract_option_none_output():
    assert extract_option(None, OPTIONS).unparseable


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Yes.", "yes"),
        ("yes, but only in selected patients", "yes"),  # the leading word decides
        ("YES", "yes"),
        ("No", "no"),
        ("maybe", "maybe"),
        ("The answer is maybe.", "maybe"),
        ("\\boxed{no}", "no"),
        ("<think>It depends.</think><answer>Yes</answer>", "yes"),
        ("Based on the trial, the evidence says no.", "no"),  # exactly one label in the text
        ("It could be yes or no", None),  # ambiguous
        ("Definitely not sure", None),
        ("", None),
    ],
)
def test_extract_label(output, expected):
    assert extract_label(output, ("yes", "no", "maybe")).value == expected


def test_extract_label_respects_allowed_labels():
    # VQA-RAD closed questions accept only yes/no.
    assert extract_label("maybe", ("yes", "no")).unparseable
    assert extract_label("No.", ("yes", "no")).value == "no"


def test_extract_boxed_nested_and_last():
    assert extract_boxed("first \\boxed{A} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_boxed("no box") is None
    assert extract_boxed("\\boxed{unclosed") is None


def test_free_text_and_normalization():
    assert extract_free_text("The answer is: Right side of the trachea.").value == "Right side of the trachea."
    assert extract_free_text("<think>hmm</think><answer>CT scan</answer>").value == "CT scan"
    assert extract_free_text("").unparseable
    assert extract_free_text("...").unparseable
    assert normalize_text("The  Right-side, of a trachea!") == "right side of trachea"


# --- the examples, one test each, and the golden file -----------------------------------------------------

GOLDEN = Path(__file__).parent / "data" / "extraction_golden.jsonl"


def test_concluding_statement_beats_a_leading_no():
    assert extract_label("No significant difference, so the answer is yes.").value == "yes"


def test_i_would_choose():
    assert extract_option("I would choose A", OPTIONS).value == "A"


def test_the_most_likely_diagnosis_is():
    assert extract_option("The most likely diagnosis is B", OPTIONS).value == "B"


def test_letter_is_the_answer():
    assert extract_option("B is the answer", OPTIONS).value == "B"


def test_rejected_options_are_not_chosen():
    assert extract_option("Option A is incorrect, option B is incorrect, C is correct", OPTIONS).value == "C"
    assert extract_option("The answer is (B) rather than (A).", OPTIONS).value == "B"
    assert extract_option("The answer is not A.", OPTIONS).unparseable


def test_most_similar_option_fallback_and_its_floor():
    # MedEvalKit picks the most similar option; a misspelt option text is read, an unrelated answer is not.
    assert extract_option("calcium chanel blockers", OPTIONS) == Extraction("C", "most_similar")
    assert extract_option("calcium chanel blockers", OPTIONS, fallback=False).unparseable
    assert extract_option("Surgery", OPTIONS).unparseable


def _golden_rows():
    rows = [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]
    assert len(rows) >= 200
    return rows


def test_golden_extraction_file():
    """At least 200 model-style outputs with decisions set by hand; every one must be read as decided."""
    wrong = []
    for row in _golden_rows():
        if row["task"] == "multiple_choice":
            got = extract_option(row["output"], row["options"]).value
        else:
            got = extract_label(row["output"], tuple(row["labels"])).value
        if got != row["expected"]:
            wrong.append((row["output"], row["expected"], got))
    assert wrong == []
