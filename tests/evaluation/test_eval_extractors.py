"""Hand-checked extraction cases, including the tricky outputs models actually produce."""

from __future__ import annotations

import pytest

from medfoundry.evaluation.extractors import (
    UNPARSEABLE,
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
