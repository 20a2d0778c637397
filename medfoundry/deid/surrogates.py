"""Consistent surrogates for identifiers and per-patient date shifts.

Every surrogate is a keyed function of (scope, kind, value): the same identifier in the same patient (or document)
always gets the same replacement, so a note still reads as one story ("Mr. Garcia ... Garcia reports"), while the
key keeps the mapping from being recomputed by someone who only sees the output. The key comes from
`MEDFOUNDRY_PHI_KEY` (set it, e.g. from a Kubernetes Secret, when several runs must agree); without it each process
draws a random one, which is consistent within a curate run and unlinkable across runs.

Names and places come from Faker's en_US providers (seeded by the keyed hash); record numbers keep their shape
(digits stay digits, letters stay letters); dates move by one offset per patient, in their own format; e-mail
addresses, SSNs, URLs and IP addresses become typed tokens ("[EMAIL-3f9a]"), because a realistic one would look
like a leak to the curate stage's leftover-identifier check.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from datetime import date, datetime, timedelta
from functools import lru_cache

KEY_ENV = "MEDFOUNDRY_PHI_KEY"
# Dates move back by 1..MAX_SHIFT_DAYS days, one offset per patient (never 0, so no date survives as it was).
MAX_SHIFT_DAYS = 365
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_TOKEN_KINDS = {"EMAIL", "SSN", "URL", "IP"}


@lru_cache(maxsize=1)
def _process_key() -> bytes:
    configured = os.environ.get(KEY_ENV)
    return configured.encode() if configured else secrets.token_bytes(32)


@lru_cache(maxsize=1)
def _faker():
    from faker import Faker

    return Faker("en_US")


class Surrogates:
    """Replacement values for one scope (a patient, or a document when no patient id is known)."""

    def __init__(self, scope: str, key: bytes | None = None):
        self.scope = scope
        self.key = key if key is not None else _process_key()
        self.shift_days = 1 + self._number("date-shift", "", MAX_SHIFT_DAYS)

    def _digest(self, kind: str, value: str) -> bytes:
        message = f"{self.scope}\x1f{kind}\x1f{value}".encode()
        return hmac.new(self.key, message, hashlib.sha256).digest()

    def _number(self, kind: str, value: str, modulo: int) -> int:
        return int.from_bytes(self._digest(kind, value)[:8], "big") % modulo

    def replace(self, kind: str, value: str) -> str:
        if kind == "DATE":
            return self.shift_date(value)
        if kind == "NAME":
            return self.name(value)
        if kind == "ADDRESS":
            return self.address(value)
        if kind == "AGE":
            return "90+"  # HIPAA Safe Harbor: ages over 89 fold into one category
        if kind in _TOKEN_KINDS:
            return f"[{kind}-{self._digest(kind, _normal(value)).hex()[:4]}]"
        return self.shaped(kind, value)

    # -- names and places (Faker, seeded by the keyed hash) --------------------------------------------------------

    def _seeded_faker(self, kind: str, value: str):
        fake = _faker()
        fake.seed_instance(self._number(kind, _normal(value), 2**63))
        return fake

    def name(self, value: str) -> str:
        """Each name word maps on its own, so "John Smith", "Smith, John" and "Smith" stay one person."""
        out = []
        for part in re.split(r"(\W+)", value):
            if not part or not re.match(r"\w", part):
                out.append(part)
                continue
            if len(part) == 1:  # an initial
                letter = "ABCDEFGHIJKLMNOPRSTW"[self._number("initial", part.upper(), 20)]
                out.append(letter)
                continue
            word, salt = part, ""
            while word.lower() == part.lower():  # never the name itself
                fake = self._seeded_faker("name", part + salt)
                word = fake.last_name() if self._number("name-role", part + salt, 2) else fake.first_name()
                salt += "\x00"
            out.append(word.upper() if part.isupper() else word.lower() if part.islower() else word)
        return "".join(out)

    def address(self, value: str) -> str:
        fake = self._seeded_faker("address", value)
        if re.search(r"\d", value):
            if re.search(r"\b\d{5}\b", value) and not re.match(r"\s*\d+\s+\w", value):
                return f"{fake.city()}, {fake.state_abbr()} {fake.zipcode()}"
            return fake.street_address()
        if re.search(
            r"(?i)\b(?:street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|way|court)\b", value
        ):
            return fake.street_name()
        return fake.city()

    # -- numbers ---------------------------------------------------------------------------------------------------

    def shaped(self, kind: str, value: str) -> str:
        """Same shape, other characters: digits stay digits, letters letters, separators stay."""
        digest = self._digest(kind, _normal(value))
        stream = iter(digest * (1 + len(value) // len(digest)))
        out = []
        for ch in value:
            if ch.isdigit():
                out.append(str(next(stream) % 10))
            elif ch.isalpha() and ch.isascii():
                letter = "ABCDEFGHJKLMNPRSTUVWXYZ"[next(stream) % 23]
                out.append(letter if ch.isupper() else letter.lower())
            else:
                out.append(ch)
        shaped = "".join(out)
        return shaped if shaped != value else self.shaped(kind, value + "\x00")

    # -- dates -----------------------------------------------------------------------------------------------------

    def shift_date(self, value: str) -> str:
        """The date moved back by this scope's offset, written the way it was; a bare weekday or year moves too."""
        text = value.strip()
        if text.title() in _WEEKDAYS or text.title().rstrip("s") in _WEEKDAYS:
            day = _WEEKDAYS.index(text.title().rstrip("s"))
            return _same_case(text, _WEEKDAYS[(day - self.shift_days) % 7])
        if re.fullmatch(r"(?:1[89]|20)\d{2}", text):
            moved = date(int(text), 7, 1) - timedelta(days=self.shift_days)
            return str(moved.year)
        parsed = _parse_date(text)
        if parsed is None:
            return (
                self.shaped("DATE", value)
                if re.search(r"\d", value)
                else f"[DATE-{self._digest('DATE', _normal(value)).hex()[:4]}]"
            )
        moment, fmt = parsed
        moved = moment - timedelta(days=self.shift_days)
        return _format(moved, fmt, text)


def _normal(value: str) -> str:
    return re.sub(r"\s+", " ", value.strip().lower())


def _same_case(original: str, word: str) -> str:
    return word.upper() if original.isupper() else word.lower() if original.islower() else word


# Formats tried in order; the matching one writes the shifted date back, so "03/04/2021" stays MM/DD/YYYY.
_FORMATS = [
    "%m/%d/%Y",
    "%m/%d/%y",
    "%m-%d-%Y",
    "%m-%d-%y",
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%d.%m.%Y",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%B %d, %Y",
    "%B %d %Y",
    "%b %d, %Y",
    "%b. %d, %Y",
    "%b %d %Y",
    "%d %B %Y",
    "%d %b %Y",
    "%B %Y",
    "%b %Y",
    "%B, %Y",
    "%B %d",
    "%b %d",
    "%d %B",
    "%m/%d",
    "%A, %B %d, %Y",
]


def _parse_date(text: str) -> tuple[datetime, str] | None:
    cleaned = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text).replace("Sept", "Sep")
    cleaned = re.sub(r"^(?:the\s+)?(\d{1,2})\s+of\s+", r"\1 ", cleaned, flags=re.I)
    for fmt in _FORMATS:
        try:
            moment = datetime.strptime(cleaned, fmt)
        except ValueError:
            continue
        if "%Y" not in fmt and "%y" not in fmt:
            moment = moment.replace(year=2000)  # a leap year, so Feb 29 parses; the year is not written back
        return moment, fmt
    try:
        from dateutil import parser

        moment = parser.parse(cleaned, default=datetime(2000, 1, 1))
    except (ValueError, OverflowError):
        return None
    return moment, ""


def _format(moment: datetime, fmt: str, original: str) -> str:
    if not fmt:
        return (
            moment.strftime("%B %d, %Y")
            if re.search(r"(?:1[89]|20)\d{2}", original)
            else moment.strftime("%B %d")
        )
    text = moment.strftime(fmt)
    if re.match(r"\d", original) and original[:1] != "0" and fmt.startswith(("%m", "%d")):
        text = re.sub(r"\b0(\d)", r"\1", text)  # "3/4/2021" stays unpadded
    if fmt in ("%B %d", "%B %d, %Y", "%b %d, %Y", "%b %d") and not re.search(r"\b0\d", original):
        text = re.sub(r"\b0(\d)", r"\1", text)
    return _same_case(original, text) if original.isupper() or original.islower() else text
