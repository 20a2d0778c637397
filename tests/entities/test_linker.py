import pytest

from medfoundry.data.records import EntityMention, Record
from medfoundry.entities.linker import Linker, LinkerOptions


def spans(linker, text):
    return [(text[m.start : m.end], m.id, m.negated) for m in linker.link(text)]


def test_offsets_kinds_and_rare_flags(vocab_linker):
    text = "Marfan syndrome and pneumonia."
    mentions = vocab_linker.link(text)
    assert all(isinstance(m, EntityMention) for m in mentions)
    assert [(text[m.start : m.end], m.id, m.kind, m.rare) for m in mentions] == [
        ("Marfan syndrome", "D:marfan", "disease", True),
        ("pneumonia", "D:pneumonia", "disease", False),
    ]


def test_word_boundaries_and_longest_match(vocab_linker):
    assert [(s, i) for s, i, _ in spans(vocab_linker, "Pneumonias and bronchopneumonia, also pneumonia")] == [
        ("Pneumonias", "D:pneumonia"),
        ("pneumonia", "D:pneumonia"),
    ]
    found = spans(
        vocab_linker, "type 2 diabetes mellitus, not just diabetes mellitus; heart attack then heart disease"
    )
    assert [(s, i) for s, i, _ in found] == [
        ("type 2 diabetes mellitus", "D:t2dm"),
        ("diabetes mellitus", "D:diabetes"),
        ("heart attack", "D:mi"),
        ("heart disease", "D:heart-disease"),
    ]


def test_substrings_inside_words_never_match(vocab_linker):
    assert spans(vocab_linker, "supercough coughing xfever feverish") == []


def test_case_whitespace_hyphen_and_possessive_normalization(vocab_linker):
    text = "HEART-ATTACK, Heart\nattack, type-2 diabetes mellitus, Crohn disease, Sjogren syndrome"
    assert [i for _, i, _ in spans(vocab_linker, text)] == ["D:mi", "D:mi", "D:t2dm", "D:crohn", "D:sjogren"]


def test_plural_and_unicode_text(vocab_linker):
    text = "Ünïcode first: Sjögren syndrome — then coughs and fevers"
    found = spans(vocab_linker, text)
    assert [(s, i) for s, i, _ in found] == [
        ("Sjögren syndrome", "D:sjogren"),
        ("coughs", "P:cough"),
        ("fevers", "P:fever"),
    ]


def test_guard_against_short_ambiguous_forms(vocab_linker):
    # "ALL" (an acronym in the source) matches only in upper case and not inside an upper-case heading;
    # "AS" (two letters) and "cold" (a common word) never match as such
    text = "ALL was diagnosed. We saw all of them as they came in from the cold. IN ALL CASES. AS is rare."
    assert [(s, i) for s, i, _ in spans(vocab_linker, text)] == [("ALL", "D:ALL")]
    assert [i for _, i, _ in spans(vocab_linker, "common cold and ankylosing spondylitis")] == [
        "D:cold",
        "D:AS",
    ]
    # lower-case short drug synonyms are treated as acronyms
    assert [i for _, i, _ in spans(vocab_linker, "gaba levels; GABA levels")] == ["R:aspirin"]
    assert vocab_linker.stats["dropped"]["ambiguous_word"] >= 1
    assert vocab_linker.stats["dropped"]["two_letter_acronym"] >= 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No evidence of pneumonia.", {"pneumonia": True}),
        (
            "Patient denies chest pain, fever or chills but reports a cough.",
            {"chest pain": True, "fever": True, "cough": False},
        ),
        ("Pneumonia was ruled out.", {"Pneumonia": True}),
        ("No fever. Cough persists.", {"fever": True, "Cough": False}),
        ("There was no change in the fever pattern.", {"fever": False}),
        ("Not only fever but also cough.", {"fever": False, "cough": False}),
        (
            "No cough, then after a long and winding week of many visits a fever.",
            {"cough": True, "fever": False},
        ),
        ("Fever without cough.", {"Fever": False, "cough": True}),
    ],
)
def test_negation(vocab_linker, text, expected):
    assert {s: n for s, _, n in spans(vocab_linker, text)} == expected


def test_negation_can_be_switched_off(vocab_tree):
    linker = Linker.from_tree(vocab_tree, LinkerOptions(negation=False))
    assert [m.negated for m in linker.link("No evidence of pneumonia")] == [False]


def test_batch_matches_single_texts(vocab_linker):
    texts = ["pneumonia", "", "No fever here", "ALL", "cough" * 3, "heart attack and ALL"]
    batch = vocab_linker.link_batch(texts, batch_chars=10)
    assert batch == [vocab_linker.link(t) for t in texts]
    matches = vocab_linker.find(texts)
    assert len(matches) == sum(len(m) for m in batch)
    assert matches.doc.tolist() == sorted(matches.doc.tolist())
    assert vocab_linker.find([]).mentions() == []


def test_lookup_and_annotate_records(vocab_linker):
    assert vocab_linker.lookup("HEART attack") == "D:mi" and vocab_linker.lookup("nothing") is None
    records = [
        Record(id="a", source="t", kind="text", text="Fever and cough."),
        Record(
            id="b",
            source="t",
            kind="qa",
            question="Which drug is acetylsalicylic acid?",
            options={"A": "Aspirin", "B": "Ptosis", "C": "x", "D": "y"},
            answer="A",
        ),
    ]
    annotated = vocab_linker.annotate(records)
    assert [m.id for m in annotated[0].entities] == ["P:fever", "P:cough"]
    fields = [(m.id, getattr(m, "field", "text")) for m in annotated[1].entities]
    assert fields == [("R:aspirin", "question"), ("R:aspirin", "option:A"), ("P:ptosis", "option:B")]


def test_cached_linker_roundtrip(vocab_tree, tmp_path):
    built = Linker.cached(vocab_tree, tmp_path)
    assert len(list(tmp_path.glob("linker-*.pkl"))) == 1
    loaded = Linker.cached(vocab_tree, tmp_path)
    text = "No fever, but ALL and heart attack."
    assert loaded.link(text) == built.link(text) == Linker.from_tree(vocab_tree).link(text)
    Linker.cached(vocab_tree, tmp_path, LinkerOptions(negation=False))
    assert len(list(tmp_path.glob("linker-*.pkl"))) == 2
