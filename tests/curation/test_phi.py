"""PHI scrubbing: a self-contained test, and a measured test on real MTS-Dialog notes with injected identifiers."""

from __future__ import annotations

import csv
import random
import re
from collections import Counter

import pytest

from medfoundry.curation.phi import clinical_vocabulary, scrub_phi


def test_identifiers_replaced_with_typed_placeholders():
    text = (
        "Mr. John Smith (MRN: 00123456) was seen on 03/14/2021 by Dr. Alice Wong. Call 617-555-0192 or "
        "email jsmith@example.com. SSN 123-45-6789. Lives at 1234 Oak Street Apt. 5, Boston, MA 02115. "
        "Portal https://portal.example.org/chart?id=9 from 192.168.0.12. A 92-year-old grandmother. "
        "Her daughter Maria came along. Smith reports less pain."
    )
    result = scrub_phi(text)
    out = result.text
    for leaked in (
        "John",
        "Smith",
        "00123456",
        "03/14/2021",
        "Alice",
        "Wong",
        "617-555-0192",
        "jsmith@",
        "123-45-6789",
        "1234 Oak",
        "Boston",
        "02115",
        "portal.example",
        "192.168",
        "92-year",
        "Maria",
    ):
        assert leaked not in out, leaked
    for placeholder in (
        "[NAME]",
        "[MRN]",
        "[DATE]",
        "[PHONE]",
        "[EMAIL]",
        "[SSN]",
        "[ADDRESS]",
        "[URL]",
        "[IP]",
        "[AGE]",
    ):
        assert placeholder in out, placeholder
    assert out.startswith("Mr. [NAME] (MRN: [MRN])")
    assert result.counts["NAME"] >= 4  # Smith is also caught where it stands alone, once known


def test_clinical_terms_and_measurements_left_intact():
    text = (
        "She has Addison disease and Wilson disease, takes Lasix 40 mg and Coumadin 5 mg daily. Parkinson disease "
        "in her father. Motor strength 5/5, BP 120/80, HR 72, temperature 98.6. Graves disease, Hodgkin lymphoma "
        "in 2003, Down syndrome, Crohn's disease and Bell palsy. Follow up in 2 weeks. Hemoglobin A1c 7.2%."
    )
    result = scrub_phi(text)
    assert result.text == text, [text[s.start : s.end] for s in result.spans]


MONTHS_AND_STOPWORDS = {
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "patient",
    "history",
}


def _inject(rng: random.Random, fake):
    """One synthetic identifier sentence: (sentence, [(kind, value)])."""
    kind = rng.choice(["NAME", "NAME", "DATE", "PHONE", "EMAIL", "MRN", "ADDRESS", "SSN", "URL", "IP"])
    if kind == "NAME":
        first, last = fake.first_name(), fake.last_name()
        template, parts = rng.choice(
            [
                ("Patient {f} {l} was seen today.", [first, last]),
                ("{f} {l} is here for follow-up.", [first, last]),
                ("She was accompanied by her husband, {f}.", [first]),
                ("Discussed with Dr. {l} from cardiology.", [last]),
                ("Mrs. {l} reports improvement.", [last]),
                ("Referred by {f} {l}, MD.", [first, last]),
                ("The plan was discussed with {f} {l} at the bedside.", [first, last]),
                ("Her son {f} {l} will drive her home.", [first, last]),
                ("Emergency contact: {f} {l}.", [first, last]),
            ]
        )
        return template.format(f=first, l=last), [("NAME", p) for p in parts]
    if kind == "DATE":
        fmt = rng.choice(["%m/%d/%Y", "%B %d, %Y", "%Y-%m-%d", "%d %B %Y", "%b %d, %Y", "%m-%d-%y", "%B %Y"])
        value = fake.date_between("-60y", "today").strftime(fmt)
        sentence = rng.choice(
            ["Seen on {}.", "DOB: {}.", "Follow-up scheduled for {}.", "Symptoms began {}."]
        )
        return sentence.format(value), [("DATE", value)]
    if kind == "PHONE":
        value = fake.phone_number()
        return rng.choice(["Call {} with questions.", "Contact number: {}.", "Her cell is {}."]).format(
            value
        ), [("PHONE", value)]
    if kind == "EMAIL":
        value = fake.email()
        return f"Email results to {value}.", [("EMAIL", value)]
    if kind == "MRN":
        value = str(fake.random_number(digits=rng.choice([6, 7, 8]), fix_len=True))
        return rng.choice(["MRN: {}.", "Medical record number {}.", "MR# {}"]).format(value), [("MRN", value)]
    if kind == "ADDRESS":
        street, city, state, zipcode = fake.street_address(), fake.city(), fake.state_abbr(), fake.zipcode()
        return f"Lives at {street}, {city}, {state} {zipcode}.", [
            ("ADDRESS", street),
            ("ADDRESS", f"{city}, {state} {zipcode}"),
        ]
    if kind == "SSN":
        value = fake.ssn()
        return rng.choice(["SSN {}.", "Social security number: {}."]).format(value), [("SSN", value)]
    if kind == "URL":
        value = fake.url() + fake.uri_path()
        return f"Portal: {value}", [("URL", value)]
    value = rng.choice([fake.ipv4(), fake.ipv6()])
    return f"Logged in from {value}.", [("IP", value)]


def _leaked(kind: str, value: str, original: str, scrubbed: str) -> bool:
    if kind == "NAME":  # a name part counts as leaked when it shows as a word it was not already in the note
        word = re.compile(rf"(?<!\w){re.escape(value)}(?!\w)")
        return bool(word.search(scrubbed)) and not word.search(original)
    return value in scrubbed


@pytest.mark.shared
def test_phi_recall_on_mts_dialog_notes_with_injected_identifiers(shared_dir):
    """At least 95% of injected identifiers removed; clinical vocabulary of the real notes kept."""
    faker = pytest.importorskip("faker")
    folder = shared_dir / "data" / "mts_dialog"
    notes = []
    for path in sorted(folder.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            notes += [
                row["section_text"] for row in csv.DictReader(fh) if len(row["section_text"].split()) >= 15
            ]
    assert len(notes) > 300
    rng = random.Random(2024)
    fake = faker.Faker("en_US")
    fake.seed_instance(2024)
    rng.shuffle(notes)
    notes = notes[:400]
    total, removed = Counter(), Counter()
    misses = []
    vocab = clinical_vocabulary()
    terms_before = terms_after = 0
    for note in notes:
        sentences = re.split(r"(?<=[.!?])\s+", note)
        injected = []
        for _ in range(3):
            sentence, parts = _inject(rng, fake)
            injected += parts
            sentences.insert(rng.randrange(len(sentences) + 1), sentence)
        scrubbed = scrub_phi(" ".join(sentences)).text
        for kind, value in injected:
            total[kind] += 1
            if _leaked(kind, value, note, scrubbed):
                misses.append((kind, value))
            else:
                removed[kind] += 1
        # Clinical terms: words of the original note found in the ICD-10-CM / HPO / drug vocabulary.
        clean = scrub_phi(note).text
        words = lambda t: Counter(  # noqa: E731
            w
            for w in re.findall(r"[A-Za-z][A-Za-z'-]+", t)
            if len(w) >= 5 and w.lower() in vocab and w.lower() not in MONTHS_AND_STOPWORDS
        )
        before, after = words(note), words(clean)
        terms_before += sum(before.values())
        terms_after += sum(min(after[w], c) for w, c in before.items())
    recall = sum(removed.values()) / sum(total.values())
    kept_terms = terms_after / terms_before
    per_kind = {k: f"{removed[k]}/{total[k]}" for k in sorted(total)}
    print(
        f"\nPHI recall {recall:.4f} over {sum(total.values())} identifiers {per_kind}; "
        f"clinical terms kept {kept_terms:.4f} ({terms_after}/{terms_before}); misses {misses[:10]}"
    )
    assert recall >= 0.95, (recall, per_kind, misses[:20])
    assert kept_terms >= 0.99, kept_terms
