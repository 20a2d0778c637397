"""PHI de-identification of text and records: every leak the review found, consistent surrogates, no bypass."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from medfoundry.curation.phi import record_scope, scrub_phi, scrub_record
from medfoundry.data.records import Record
from medfoundry.deid.surrogates import Surrogates


@pytest.fixture(autouse=True)
def _fixed_surrogate_key(monkeypatch):
    """A fixed key: a random one could, rarely, draw a surrogate that equals another original word ("John")."""
    from medfoundry.deid import surrogates

    monkeypatch.setenv(surrogates.KEY_ENV, "medfoundry-test-key")
    surrogates._process_key.cache_clear()
    yield
    surrogates._process_key.cache_clear()


# Each leak the review found, in a sentence the way a note would hold it.
LEAKS = [
    ("Smith, John was seen in clinic today for a cough.", ["Smith", "John"]),
    ("Chang was admitted with chest pain overnight.", ["Chang"]),
    ("She moved here from Springfield, Illinois last year.", ["Springfield", "Illinois"]),
    ("He lives on Elm Street in Boston with his wife.", ["Elm", "Boston"]),
    ("Seen on 3/4 for follow-up of her hypertension.", ["3/4"]),
    ("Billing: Acct 88-1234 for the admission.", ["88-1234"]),
    ("His truck, VIN 1HGCM82633A004352, was in the crash.", ["1HGCM82633A004352"]),
    ("The car with licence plate 7ABC123 hit the patient.", ["7ABC123"]),
    (
        "Mr. John Smith (MRN: 00123456) called 617-555-0192, jsmith@example.com, SSN 123-45-6789.",
        ["Smith", "00123456", "617-555-0192", "jsmith@", "123-45-6789"],
    ),
]


@pytest.mark.parametrize(("text", "leaked"), LEAKS, ids=[leak[0][:24] for leak in LEAKS])
def test_each_leak_the_review_found_is_removed(text, leaked):
    out = scrub_phi(text, "patient:1").text
    for value in leaked:
        assert not re.search(rf"(?<!\w){re.escape(value)}(?!\w)", out), (value, out)


def test_clinical_terms_eponyms_and_measurements_stay():
    text = (
        "She has Addison disease and Wilson disease, takes Lasix 40 mg and Coumadin 5 mg daily for 3 days. "
        "Parkinson disease in her father. Motor strength 5/5, BP 120/80, HR 72, a grade 3/4 murmur, 3/4 of a "
        "tablet. Graves disease, Down syndrome, Crohn's disease and Bell palsy. Seizure (HP:0001250)."
    )
    result = scrub_phi(text)
    assert result.text == text, [text[s.start : s.end] for s in result.spans]


def test_surrogates_are_consistent_within_a_patient_and_dates_shift_by_one_offset():
    key = b"k" * 32
    one, other = Surrogates("patient:1", key), Surrogates("patient:2", key)
    assert one.replace("NAME", "Smith") == Surrogates("patient:1", key).replace("NAME", "Smith")
    assert one.replace("NAME", "Smith") != "Smith"
    text = "Mr. John Smith was seen on 03/14/2021. Smith returned on 03/20/2021."
    out = scrub_phi(text, one).text
    names = re.findall(r"Mr\. (\w+) (\w+) was seen", out)[0]
    assert re.search(rf"\. {names[1]} returned", out), out  # "Smith" both times -> one surrogate
    dates = re.findall(r"\d{2}/\d{2}/\d{4}", out)
    assert len(dates) == 2 and "03/14/2021" not in dates
    from datetime import datetime

    gap = datetime.strptime(dates[1], "%m/%d/%Y") - datetime.strptime(dates[0], "%m/%d/%Y")
    assert gap.days == 6  # one offset per patient: intervals survive, so the note stays usable
    assert 1 <= one.shift_days <= 365 and one.shift_days != other.shift_days or one.scope != other.scope


def test_record_meta_columns_and_file_names_scrubbed_without_bypass(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "user_john_smith_ab12.png").write_bytes(b"png")
    record = Record(
        id="john_smith_notes-7",
        source="user:clinic/john_smith_2021-03-04.csv",
        kind="note",
        text="Smith, John was seen today.",
        image="images/user_john_smith_ab12.png",
        meta={
            "patient_name": "John Smith",
            "patient_id": "88123",
            "dialogue": "Doctor: Hello Mr. Smith, how is Elm Street in Boston? Patient: Fine, call 617-555-0192.",
            "phi_free": True,
            "line": 7,
        },
    )
    counts: Counter = Counter()
    out = scrub_record(record, counts, tmp_path)
    dumped = out.model_dump_json()
    for leaked in ("John", "Smith", "88123", "Boston", "Elm Street", "617-555-0192", "2021-03-04"):
        assert not re.search(rf"(?<![A-Za-z0-9]){re.escape(leaked)}(?![A-Za-z0-9])", dumped), leaked
    assert out.meta["phi_free"] is True and out.meta["line"] == 7  # labels kept, and ignored
    assert out.meta["dialogue"].startswith("Doctor: Hello Mr. ") and "Patient: Fine" in out.meta["dialogue"]
    assert (tmp_path / out.image).is_file() and not (images / "user_john_smith_ab12.png").exists()
    assert out.id != record.id and counts["NAME"] >= 4 and out.meta["phi_spans"] == sum(counts.values())


@pytest.mark.parametrize("source", ["hpo:HP:0001250", "icd10cm:E11.9", "pydicom:CT_small.dcm", "user:x"])
def test_no_source_prefix_or_phi_free_label_skips_scrubbing(source):
    record = Record(
        id="r1", source=source, kind="text", text="Chang was admitted on 3/4.", meta={"phi_free": True}
    )
    out = scrub_record(record)
    assert "Chang" not in out.text and "3/4" not in out.text
    assert out.source == source  # an ontology accession is not an identifier


def test_patient_scope_keys_surrogates_across_records():
    a = Record(id="a", source="user:x", kind="note", text="Mr. Smith improved.", meta={"patient_id": "P1"})
    b = Record(id="b", source="user:x", kind="note", text="Mr. Smith went home.", meta={"patient_id": "P1"})
    assert record_scope(a) == record_scope(b) == "patient:p1"
    first = re.search(r"Mr\. (\w+)", scrub_record(a).text).group(1)
    second = re.search(r"Mr\. (\w+)", scrub_record(b).text).group(1)
    assert first == second != "Smith"
