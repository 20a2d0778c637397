"""Our PHI rules on their own (no spaCy): names no list holds, names joined to a found one, whole addresses, and the
clinical words the rare-name rule must leave alone."""

from __future__ import annotations

from functools import lru_cache

import pytest

from medfoundry.deid.rules import PhiRules, english_zipf

pytest.importorskip("wordfreq", reason="wordfreq is a pinned dependency (make setup)")


@lru_cache(maxsize=1)
def _rules() -> PhiRules:
    return PhiRules()


def _uncovered(text: str, value: str, kind: str | None = None) -> str:
    """The letters and digits of `value` (first occurrence in `text`) that no span (of `kind`) covers."""
    start = text.index(value)
    covered = set()
    for span in _rules().find(text):
        if kind is None or span.kind == kind:
            covered.update(range(span.start, span.end))
    return "".join(ch for i, ch in enumerate(value, start) if ch.isalnum() and i not in covered)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Hilbrand, please call the ward before noon.", "Hilbrand"),
        ("Discharge summary copied to Oddgeirsdóttir at the practice.", "Oddgeirsdóttir"),
        ("The assistant to Tsuneto Heida signed the consent.", "Tsuneto Heida"),
        ("Consent witnessed by Naile D. Mevc and filed.", "Naile D. Mevc"),
        ("Records were faxed to Mrs. van den Brandhof yesterday.", "van den Brandhof"),
        ("It was Bulat's daughter who brought him in.", "Bulat"),
    ],
)
def test_a_capitalized_word_no_word_list_knows_is_a_name(text, name):
    assert _uncovered(text, name, "NAME") == "", _rules().find(text)


def test_names_joined_to_a_found_name_are_names_even_when_eponyms():
    text = "Geirsson and Arnold reviewed the films; Sheripov, Peterson and Osborne agreed."
    for name in ("Geirsson", "Arnold", "Sheripov", "Peterson", "Osborne"):
        assert _uncovered(text, name, "NAME") == "", (name, _rules().find(text))


def test_clinical_words_the_rare_name_rule_leaves_alone():
    text = (
        "Postoperatively, the EKGs and MRIs were unremarkable and AFib resolved. Supple neck. Triage done.\n"
        "Taking Vicodin 5 mg; no improvement on Sinemet. Alesse-28 daily. Cetaphil cream twice daily.\n"
        "Favorable Shimada histology. She denied Lhermitte's phenomenon. Gravida 2, para 1. Nonsmoker."
    )
    names = [text[s.start : s.end] for s in _rules().find(text) if s.kind == "NAME"]
    assert names == []
    # The rule is driven by how rare a word is in English text: these figures are what it rests on.
    assert english_zipf("gyarmaty") < 3.0 <= english_zipf("laurent")


@pytest.mark.parametrize(
    "address",
    [
        "the corner of 454 Kidd Avenue and Carver Streets",
        "Maxwell and 622 Massachusetts Avenue",
        "4966 Bond Street\nWarren\n, ME\n United States 29340",
        "544 Northwest Boulevard\n Apt. 910\n \n Bayonne\n \n United States 31154",
    ],
)
def test_whole_addresses_across_lines_and_intersections(address):
    text = f"Please send the letter to {address} by Friday."
    assert _uncovered(text, address, "ADDRESS") == "", _rules().find(text)


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("ZIP: 2169", "2169"),
        ("She works in Rockingham 28379 now.", "Rockingham 28379"),
        ("My friend lives in Peck with her son.", "Peck"),  # Peck, Idaho: 500 people, GeoNames
        ("Tom Baker\nIndependence\nUnited States", "Independence"),
        ("Old shows on van Bokhorst Street were loud.", "van Bokhorst Street"),
    ],
)
def test_places(text, place):
    assert _uncovered(text, place, "ADDRESS") == "", _rules().find(text)


def test_a_city_that_is_an_english_word_needs_its_state_below_it():
    text = "Many\npatients improved.\nKerman Laurent signed."
    spans = _rules().find(text)
    assert [text[s.start : s.end] for s in spans if s.kind == "ADDRESS"] == []
    assert _uncovered(text, "Kerman Laurent", "NAME") == ""
