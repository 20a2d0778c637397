"""Context-dependent abbreviations link only in a defining or clinical context; experiencer and temporality."""

import pytest

from medfoundry.entities.abbreviations import CLINICAL_ABBREVIATIONS, long_form
from medfoundry.entities.linker import Linker
from medfoundry.entities.tree import EntityTree

NODES = [
    {"id": "D:mi", "name": "Myocardial infarction", "kind": "disease", "synonyms": ["heart attack"]},
    {"id": "D:dm", "name": "Diabetes mellitus", "kind": "disease"},
    {"id": "D:hf", "name": "Heart failure", "kind": "disease"},
    {"id": "D:af", "name": "Atrial fibrillation", "kind": "disease"},
    {"id": "D:ra", "name": "Rheumatoid arthritis", "kind": "disease"},
    {"id": "D:marfan", "name": "Marfan syndrome", "kind": "disease", "rare": True},
    {"id": "D:pneumonia", "name": "Pneumonia", "kind": "disease"},
    {"id": "D:breast-cancer", "name": "Breast cancer", "kind": "disease"},
    {"id": "R:metformin", "name": "Metformin", "kind": "drug"},
]


@pytest.fixture(scope="module")
def linker():
    return Linker.from_tree(EntityTree.from_rows(NODES))


def _links(linker, text):
    return {(text[m.start : m.end], m.id) for m in linker.link(text)}


CASES = {
    # short form: (clinical context, defining context, non-medical context)
    "MI": (
        "Patient admitted with chest pain; troponin rising, MI suspected.",
        "She had a myocardial infarction (MI) last year. The MI was anterior.",
        "Ship the parcel to Ann Arbor, MI 48104 by Friday.",
    ),
    "DM": (
        "Pt with poorly controlled DM, on metformin 500 mg bid.",
        "Diabetes mellitus (DM) is common. DM raises the risk of stroke.",
        "Send me a DM when you get to the station.",
    ),
    "HF": (
        "Admitted for acute HF exacerbation, treated with diuretics.",
        "Heart failure (HF) affects millions; HF admissions rise in winter.",
        "Amateur operators use the HF band for long-distance contacts.",
    ),
    "AF": (
        "ECG shows AF with rapid ventricular response.",
        "Atrial fibrillation (AF) is the most common arrhythmia. AF raises stroke risk.",
        "The AF squadron flew low over the town.",
    ),
    "RA": (
        "RA flare this month, methotrexate dose increased.",
        "Rheumatoid arthritis (RA) is autoimmune. RA affects small joints.",
        "Our RA organised a pizza night for the dorm.",
    ),
}
EXPECTED = {"MI": "D:mi", "DM": "D:dm", "HF": "D:hf", "AF": "D:af", "RA": "D:ra"}


@pytest.mark.parametrize("short", sorted(CASES))
def test_abbreviation_links_in_clinical_context(linker, short):
    clinical, _, _ = CASES[short]
    mentions = [m for m in linker.link(clinical) if clinical[m.start : m.end] == short]
    assert [m.id for m in mentions] == [EXPECTED[short]]
    assert mentions[0].model_extra["abbreviation"] == "context"


@pytest.mark.parametrize("short", sorted(CASES))
def test_abbreviation_links_where_the_document_defines_it(linker, short):
    _, defining, _ = CASES[short]
    mentions = [m for m in linker.link(defining) if defining[m.start : m.end] == short]
    assert len(mentions) == 2 and {m.id for m in mentions} == {EXPECTED[short]}
    assert {m.model_extra["abbreviation"] for m in mentions} == {"defined"}


@pytest.mark.parametrize("short", sorted(CASES))
def test_abbreviation_does_not_link_in_a_non_medical_context(linker, short):
    _, _, other = CASES[short]
    assert linker.link(other) == []


def test_a_defined_short_form_links_even_when_not_listed(linker):
    text = "Marfan syndrome (MFS) is inherited. In MFS the aorta dilates."
    assert ("MFS", "D:marfan") in _links(linker, text) and "MFS" not in CLINICAL_ABBREVIATIONS
    assert linker.link("MFS is a file system.") == []  # not defined here, not listed


def test_schwartz_hearst_long_form():
    text = "admitted with congestive heart failure (CHF)"
    start, end = long_form(text, text.index("("), "CHF")
    assert text[start:end] == "congestive heart failure"
    assert long_form("the patient (PT)", 12, "XYZ") is None


def test_family_members_conditions_carry_experiencer_family(linker):
    text = "Patient presents with pneumonia. Her mother had breast cancer at 50."
    by_name = {text[m.start : m.end]: m for m in linker.link(text)}
    assert by_name["pneumonia"].experiencer == "patient"
    assert by_name["breast cancer"].experiencer == "family"
    family_history = linker.link("Family history of diabetes mellitus and heart failure in his father.")
    assert [m.experiencer for m in family_history] == ["family", "family"]
    assert [m.experiencer for m in linker.link("No family history of breast cancer.")] == ["family"]
    assert linker.link("No family history of breast cancer.")[0].negated


def test_temporality_historical_and_current(linker):
    text = "History of myocardial infarction in 2010. Now admitted with pneumonia."
    by_name = {text[m.start : m.end]: m for m in linker.link(text)}
    assert by_name["myocardial infarction"].temporality == "historical"
    assert by_name["pneumonia"].temporality == "current"
    assert linker.link("Status post MI, on aspirin.")[0].temporality == "historical"
    assert linker.link("Heart failure diagnosed 3 years ago.")[0].temporality == "historical"
    # the history of present illness is the current problem
    assert linker.link("History of present illness: pneumonia for 3 days.")[0].temporality == "current"


def test_listed_abbreviations_resolve_in_the_full_tree(do_tree):
    _, full = do_tree
    resolved = full.abbreviations.listed
    assert {"MI", "DM", "HF", "AF", "RA"} <= set(resolved)
    assert full.ids[resolved["MI"]] == full.lookup("myocardial infarction")
    assert len(resolved) >= len(CLINICAL_ABBREVIATIONS) - 2
