"""The domain: posts, groups, category rules, priorities and TLP levels.

These pydantic models are shared by the configuration (which loads them from
YAML), the command language (which parses cases) and routing (which decides
where a case may go). They hold no I/O.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from liaison.commands.quiet_hours import QuietHours

POST_ID_RE = re.compile(r"^[A-Z]{2}-[A-Z0-9]+(?:-[A-Z0-9]+)*$")
GROUP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,39}$")
# A server name: a DNS name or IPv4 literal, or an IPv6 literal in brackets, with an
# optional port (`example.org`, `127.0.0.1:39123`, `[::1]:8448`).
SERVER_NAME = r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
MXID_RE = re.compile(rf"^@[a-z0-9._=\-/+]+:{SERVER_NAME}$")
# Room version 12 ids are a bare hash (`!abc…`); older ones carry the server (`!abc:server`).
ROOM_ID_RE = re.compile(rf"^![A-Za-z0-9._~\-=+/]+(?::{SERVER_NAME})?$")

LANGUAGES = ("en", "ru", "ar")


class Priority(StrEnum):
    """How fast a case must be taken: flash (minutes), urgent (hours), routine (days)."""

    FLASH = "flash"
    URGENT = "urgent"
    ROUTINE = "routine"


class Tlp(StrEnum):
    """Traffic Light Protocol 2.0 levels, ordered from least to most restricted."""

    CLEAR = "CLEAR"
    GREEN = "GREEN"
    AMBER = "AMBER"
    AMBER_STRICT = "AMBER+STRICT"
    RED = "RED"

    @property
    def rank(self) -> int:
        return _TLP_ORDER.index(self)

    def covers(self, other: Tlp) -> bool:
        """True when a post cleared up to `self` may receive a case marked `other`."""
        return self.rank >= other.rank

    @classmethod
    def parse(cls, text: str) -> Tlp:
        """Read `amber+strict`, `AMBER`, `tlp:red` etc.; raise ValueError otherwise."""
        cleaned = text.strip().upper().removeprefix("TLP:").replace("_", "+")
        if cleaned == "WHITE":  # TLP 1.0 name, still typed by habit
            cleaned = "CLEAR"
        try:
            return cls(cleaned)
        except ValueError:
            raise ValueError(f"unknown TLP level {text!r}") from None


_TLP_ORDER = [Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT, Tlp.RED]


class Agency(StrEnum):
    POLICE = "police"
    CUSTOMS = "customs"
    BORDER = "border"
    DRUG_CONTROL = "drug-control"
    FIU = "fiu"
    REGIONAL_CENTRE = "regional-centre"



def known_zone(value: str) -> str:
    """`value` if it names an IANA time zone; a config error otherwise."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}; write it like Asia/Almaty"
                         ) from None
    return value


Zone = Annotated[str, AfterValidator(known_zone)]
"""An IANA time zone name such as Asia/Almaty (`known_zone`)."""


class Post(BaseModel):
    """A unit with one Matrix room: a border post, a customs office, a regional centre."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Post id, country prefix then name: UZ-TERMEZ")
    names: dict[str, str] = Field(description="Display name per language (en, ru, ar)")
    country: str = Field(description="ISO 3166-1 alpha-2 country code")
    agency: Agency
    room: str = Field(description="Matrix room id of the post's encrypted room")
    language: str = "en"
    timezone: Zone = "UTC"
    clearance: Tlp = Tlp.AMBER
    neighbours: tuple[str, ...] = ()
    duty_officers: tuple[str, ...] = ()
    supervisors: tuple[str, ...] = ()
    officers: tuple[str, ...] = Field(
        default=(),
        description="If set, only these users (and the supervisors) act for the post; "
        "empty: every member of the post's room",
    )
    supervisors_room: str | None = Field(
        default=None,
        description="Room where the supervisors get escalations (none: direct messages)",
    )
    quiet_hours: str | None = Field(
        default=None, description="Daily window such as 22:00-06:00 when routine chases wait"
    )

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not POST_ID_RE.match(value):
            raise ValueError("post id must look like UZ-TERMEZ (country, dash, capitals/digits)")
        return value

    @field_validator("country")
    @classmethod
    def _check_country(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{2}", value):
            raise ValueError("country must be an ISO 3166-1 alpha-2 code in capitals, e.g. KZ")
        return value

    @field_validator("room", "supervisors_room")
    @classmethod
    def _check_room(cls, value: str | None) -> str | None:
        if value is not None and not ROOM_ID_RE.match(value):
            raise ValueError("room must be a Matrix room id such as !abc123:example.org")
        return value

    @field_validator("language")
    @classmethod
    def _check_language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _check_quiet_hours(cls, value: str | None) -> str | None:
        return None if value is None else str(QuietHours.parse(value))

    @field_validator("names")
    @classmethod
    def _check_names(cls, value: dict[str, str]) -> dict[str, str]:
        if "en" not in value:
            raise ValueError("names needs at least an English name (en)")
        unknown = sorted(set(value) - set(LANGUAGES))
        if unknown:
            raise ValueError(f"names has unsupported languages: {', '.join(unknown)}")
        return value

    @field_validator("duty_officers", "supervisors", "officers")
    @classmethod
    def _check_users(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for user in value:
            if not MXID_RE.match(user):
                raise ValueError(f"{user!r} is not a Matrix user id like @name:server")
        return value

    def name(self, language: str) -> str:
        return self.names.get(language) or self.names["en"]


class Group(BaseModel):
    """A named set of posts that can be targeted at once (`to:caricc`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    posts: tuple[str, ...]

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not GROUP_NAME_RE.match(value):
            raise ValueError("group name must be lower-case letters, digits and dashes")
        return value


class CategoryRule(BaseModel):
    """Extra targets for a category: `financial` also goes to the national FIU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: str
    add: tuple[str, ...] = Field(
        description="Post ids to add, or `same-country:<agency>` for the origin country's agency"
    )
