"""The entities of a case that hits are matched on: identifiers and people, found and
normalised.

Found in two places:

- `key: value` fields whose key is declared in the catalogue's one table
  (`commands.vocabulary.ENTITY_FIELDS`, keys in English, Russian and Arabic): plate,
  VIN, container, passport, phone, IBAN, name (with `dob` and `nationality`);
- free text, for identifiers whose form checks itself: VINs with their ISO 3779 check
  digit, ISO 6346 container numbers, IBANs, phone numbers that parse in the origin
  post's country, the two lines of a passport's machine-readable zone; and a plate
  named as one (`plate 01A123BC`, `госномер 01 А 123 ВС`).

Normalised so that the same thing written two ways is one key: plates without spaces or
dashes and with Cyrillic letters that look Latin read as Latin (`01 А 123 ВС` is
`01A123BC`: on a plate, look-alikes must match, where everywhere else in Liaison they
are refused), phones in E.164 (`phonenumbers`), IBANs and containers compact and checked
(`python-stdnum`), dates of birth in ISO. VIN and MRZ check digits are written here:
no well-kept library checks them. Pure functions; `extract` caps what one case may hold.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import iso6346

from liaison.commands.identifiers import strip_invisible
from liaison.commands.names import Person, name_forms
from liaison.commands.vocabulary import ENTITY_FIELDS, FIELD_KEYS, fold_word


class EntityKind(StrEnum):
    PLATE = "plate"
    VIN = "vin"
    CONTAINER = "container"
    IBAN = "iban"
    PHONE = "phone"
    PASSPORT = "passport"
    NAME = "name"
    FILE = "file"
    """An attachment's SHA-256."""


STRONG_KINDS = frozenset(EntityKind) - {EntityKind.NAME}
"""A match on one of these is a hit; a name match is only "possible", with its score."""


@dataclass(frozen=True)
class Entity:
    kind: EntityKind
    value: str
    """The normalised key: `01A123BC`, `+998901234567`; a name as typed (cleaned)."""
    dob: str | None = None
    country: str | None = None

    @property
    def person(self) -> Person:
        return Person(name_forms(self.value), dob=self.dob, country=self.country)


@dataclass(frozen=True)
class EntityLimits:
    max_entities: int = 50
    """Entities kept from one case; the rest are dropped and the origin is told."""
    max_value_chars: int = 120
    """A field value longer than this is not an identifier or a name."""
    max_scan_chars: int = 20000
    """Free text scanned for identifiers, at most."""


@dataclass(frozen=True)
class Extraction:
    entities: tuple[Entity, ...]
    dropped: int = 0
    """How many entities over `EntityLimits.max_entities` were not kept."""


_FIELD_KIND = {fold_word(typed): ENTITY_FIELDS[key] for key, words in FIELD_KEYS.items()
               if key in ENTITY_FIELDS for typed in (key, *words)}
_LOOKALIKES = str.maketrans("АВЕКМНОРСТУХІЈЅ", "ABEKMHOPCTYXIJS")
_ARABIC_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_PLATE_STRIP = re.compile(r"[\s\-–—._/]+")
_PLATE_RE = re.compile(r"[0-9A-Z\u0600-\u06ff\u0400-\u04ff]{3,12}")
_VIN_RE = re.compile(r"(?<![A-Z0-9])[A-HJ-NPR-Z0-9]{17}(?![A-Z0-9])")
_CONTAINER_RE = re.compile(r"(?<![A-Z0-9])[A-Z]{3}[UJZR] ?\d{6} ?\d(?![A-Z0-9])")
_IBAN_RE = re.compile(r"(?<![A-Z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4}){3,8}(?![A-Z0-9])")
_MRZ_RE = re.compile(r"^[A-Z0-9<]{44}$")
_PLATE_WORDS = ("plate", "plates", "госномер", "номер", "г/н", "гос.номер", "لوحة", "اللوحة")
_PLATE_MENTION = re.compile(
    r"(?:" + "|".join(re.escape(word) for word in _PLATE_WORDS) + r")\s*[:#№]?\s*"
    r"((?:[0-9A-Za-z\u0400-\u04ff\u0660-\u0669\u0621-\u064a]{1,8}[ \-.]{0,2}){1,6})",
    re.IGNORECASE)
_PLATE_FILLERS = frozenset({"number", "no", "nr", "номер", "знак", "رقم"})
"""Words between `plate` and the plate itself (`plate number 01A123BC`)."""
_DATE_RES = (
    (re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})"), (1, 2, 3)),
    (re.compile(r"(\d{1,2})[./](\d{1,2})[./](\d{4})"), (3, 2, 1)),
)
_VIN_VALUES = {**{str(d): d for d in range(10)}, **dict(zip(
    "ABCDEFGHJKLMNPRSTUVWXYZ", (1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7,
                                8, 9), strict=True))}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_MRZ_COUNTRIES = {"KAZ": "KZ", "UZB": "UZ", "TJK": "TJ", "KGZ": "KG", "TKM": "TM",
                  "AFG": "AF", "RUS": "RU", "IRN": "IR", "PAK": "PK", "ARE": "AE",
                  "SAU": "SA", "OMN": "OM", "QAT": "QA", "KWT": "KW", "BHR": "BH",
                  "JOR": "JO", "IRQ": "IQ", "SYR": "SY", "TUR": "TR", "AZE": "AZ"}


def clean(value: str) -> str:
    """NFKC, without invisible characters, Arabic-Indic digits as digits, one space."""
    folded = unicodedata.normalize("NFKC", strip_invisible(value)).translate(_ARABIC_DIGITS)
    return " ".join(folded.split())


def normalise_plate(value: str) -> str | None:
    """`01 А 123 ВС` (Cyrillic) → `01A123BC`; None when it cannot be a plate."""
    compact = _PLATE_STRIP.sub("", clean(value).upper()).translate(_LOOKALIKES)
    if not _PLATE_RE.fullmatch(compact) or not any(char.isdigit() for char in compact):
        return None
    return compact


def vin_check_digit(vin: str) -> str:
    """The ISO 3779 (North American) check digit of a 17-character VIN."""
    total = sum(_VIN_VALUES[char] * weight for char, weight in zip(vin, _VIN_WEIGHTS,
                                                                    strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def normalise_vin(value: str, *, checked: bool) -> str | None:
    """A VIN in capitals without spaces; with `checked`, only if its check digit holds
    (free text), else any VIN-shaped value (a field: not every maker sets the digit)."""
    compact = re.sub(r"[\s\-]+", "", clean(value).upper())
    if not _VIN_RE.fullmatch(compact):
        return None
    if checked and vin_check_digit(compact) != compact[8]:
        return None
    return compact


def normalise_container(value: str) -> str | None:
    compact = iso6346.compact(clean(value))
    return compact if iso6346.is_valid(compact) else None


def normalise_iban(value: str) -> str | None:
    compact = stdnum_iban.compact(clean(value))
    return compact if stdnum_iban.is_valid(compact) else None


def normalise_phone(value: str, region: str | None) -> str | None:
    """E.164, reading a national number in `region` (the origin post's country)."""
    try:
        number = phonenumbers.parse(clean(value), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_passport(value: str) -> str | None:
    compact = re.sub(r"[\s\-№#]+", "", clean(value).upper()).translate(_LOOKALIKES)
    return compact if re.fullmatch(r"[A-Z0-9]{5,12}", compact) else None


def normalise_dob(value: str) -> str | None:
    """`03.02.1980`, `3/2/1980`, `1980-02-03` → `1980-02-03`."""
    cleaned = clean(value)
    for pattern, order in _DATE_RES:
        found = pattern.search(cleaned)
        if found is None:
            continue
        year, month, day = (int(found.group(index)) for index in order)
        if 1900 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31:
            return f"{year:04d}-{month:02d}-{day:02d}"
    return None


def normalise_name(value: str, limits: EntityLimits) -> str | None:
    """A name cleaned of dates and digits; None unless it has two letters or more."""
    cleaned = clean(value)
    for pattern, _ in _DATE_RES:
        cleaned = pattern.sub(" ", cleaned)
    cleaned = " ".join(re.sub(r"[\d(),;:]+", " ", cleaned).split())
    if len(cleaned) > limits.max_value_chars or sum(char.isalpha() for char in cleaned) < 2:
        return None
    if not name_forms(cleaned).skeleton:
        return None
    return cleaned


def normalise(kind: EntityKind, value: str, *, region: str | None = None) -> str | None:
    """The key of one typed value of `kind` (what `!check` and fields use)."""
    match kind:
        case EntityKind.PLATE:
            return normalise_plate(value)
        case EntityKind.VIN:
            return normalise_vin(value, checked=False)
        case EntityKind.CONTAINER:
            return normalise_container(value)
        case EntityKind.IBAN:
            return normalise_iban(value)
        case EntityKind.PHONE:
            return normalise_phone(value, region)
        case EntityKind.PASSPORT:
            return normalise_passport(value)
        case EntityKind.NAME:
            return normalise_name(value, EntityLimits())
        case EntityKind.FILE:
            digest = clean(value).lower()
            return digest if re.fullmatch(r"[0-9a-f]{64}", digest) else None


def mrz_check_digit(data: str) -> str:
    """ICAO 9303 check digit: weights 7, 3, 1 over digits, letters (A=10) and `<` (0)."""
    total = 0
    for index, char in enumerate(data):
        value = int(char) if char.isdigit() else (0 if char == "<" else ord(char) - 55)
        total += value * (7, 3, 1)[index % 3]
    return str(total % 10)


def read_mrz(first: str, second: str) -> list[Entity]:
    """The passport number and the holder (name, date of birth, nationality) of a TD3
    machine-readable zone, if its check digits hold."""
    if not (first.startswith("P") and _MRZ_RE.fullmatch(first) and _MRZ_RE.fullmatch(second)):
        return []
    number, nationality, dob = second[0:9], second[10:13], second[13:19]
    if mrz_check_digit(number) != second[9] or mrz_check_digit(dob) != second[19]:
        return []
    found = [Entity(EntityKind.PASSPORT, number.replace("<", ""))]
    surname, _, given = first[5:].partition("<<")
    name = " ".join((given.replace("<", " ") + " " + surname.replace("<", " ")).split())
    if name and dob.isdigit():
        year = int(dob[:2])
        century = 1900 if year > 40 else 2000
        iso = f"{century + year:04d}-{dob[2:4]}-{dob[4:6]}"
        found.append(Entity(EntityKind.NAME, name.title(), dob=iso,
                            country=_MRZ_COUNTRIES.get(nationality)))
    return found


def extract(fields: Sequence[tuple[str, str]], text: str, *, region: str | None,
            limits: EntityLimits = EntityLimits()) -> Extraction:
    """Every entity of a case's fields and free text, each once, in the order found; at
    most `limits.max_entities` (the rest counted in `dropped`)."""
    found: list[Entity] = []
    names: list[str] = []
    dobs: list[str] = []
    country: str | None = None
    for key, value in fields:
        kind = _FIELD_KIND.get(fold_word(" ".join(strip_invisible(key).split())))
        if kind is None or len(value) > limits.max_value_chars:
            found.extend(_from_text(value, region=region, limits=limits))
            continue
        if kind == "dob":
            dob = normalise_dob(value)
            dobs.extend([dob] if dob else [])
        elif kind == "nationality":
            country = _country(value)
        elif kind == EntityKind.NAME:
            name = normalise_name(value, limits)
            if name is not None:
                names.append(name)
                dob = normalise_dob(value)
                if dob is not None:
                    dobs.append(dob)
        else:
            key_value = normalise(EntityKind(kind), value, region=region)
            if key_value is not None:
                found.append(Entity(EntityKind(kind), key_value))
    dob = dobs[0] if len(set(dobs)) == 1 else None
    people = [Entity(EntityKind.NAME, name, dob=dob, country=country) for name in names]
    found = people + found + _from_text(text[:limits.max_scan_chars], region=region,
                                        limits=limits)
    unique = list(dict.fromkeys(found))
    return Extraction(tuple(unique[:limits.max_entities]),
                      dropped=max(0, len(unique) - limits.max_entities))


def _country(value: str) -> str | None:
    cleaned = clean(value).upper()
    if re.fullmatch(r"[A-Z]{2}", cleaned):
        return cleaned
    return _MRZ_COUNTRIES.get(cleaned)


def _from_text(text: str, *, region: str | None, limits: EntityLimits) -> list[Entity]:
    """The self-checking identifiers in free text, and plates named as plates."""
    cleaned = unicodedata.normalize("NFKC", strip_invisible(text)).translate(_ARABIC_DIGITS)
    upper = cleaned.upper()
    found: list[Entity] = []
    for match in _VIN_RE.finditer(upper):
        vin = normalise_vin(match.group(), checked=True)
        if vin is not None:
            found.append(Entity(EntityKind.VIN, vin))
    for match in _CONTAINER_RE.finditer(upper):
        container = normalise_container(match.group())
        if container is not None:
            found.append(Entity(EntityKind.CONTAINER, container))
    found.extend(Entity(EntityKind.IBAN, iban) for iban in _ibans(upper))
    lines = [line.strip() for line in upper.splitlines()]
    for first, second in itertools.pairwise(lines):
        found.extend(read_mrz(first, second))
    for match in _PLATE_MENTION.finditer(cleaned):
        plate = normalise_plate(_plate_tokens(match.group(1)))
        if plate is not None:
            found.append(Entity(EntityKind.PLATE, plate))
    found.extend(Entity(EntityKind.PHONE, phone) for phone in _phones(cleaned, region))
    return found[:limits.max_entities * 2]


def _plate_tokens(text: str) -> str:
    """The words after `plate` that still belong to it: short groups, until a word that
    is only letters and longer than three (`01 А 123 ВС white` → `01 А 123 ВС`)."""
    kept: list[str] = []
    for word in re.split(r"[ \-.]+", text.strip()):
        if not kept and word.lower() in _PLATE_FILLERS:
            continue
        if not word or (word.isalpha() and len(word) > 3 and kept):
            break
        kept.append(word)
    return "".join(kept)


def _ibans(upper: str) -> Iterable[str]:
    for match in _IBAN_RE.finditer(upper):
        groups = match.group().split(" ") if " " in match.group() else [match.group()]
        for end in range(len(groups), 0, -1):  # a trailing word may not belong to it
            candidate = normalise_iban("".join(groups[:end]))
            if candidate is not None:
                yield candidate
                break


def _phones(text: str, region: str | None) -> Iterable[str]:
    try:
        matcher = phonenumbers.PhoneNumberMatcher(text, region or "ZZ",
                                                  leniency=phonenumbers.Leniency.VALID,
                                                  max_tries=200)
        for match in matcher:
            yield phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        return
