"""Links between bots: the configuration of a partner and the protocol's event contents.

A link joins this bot to one partner bot (another country's or agency's Liaison) over
one encrypted Matrix room that both bots share. Each side keeps its own posts, rules
and record; cases cross the link as protocol events (`docs/links.md`). This module is
pure: the shapes of the link's configuration and of every protocol event, and the rules
that decide what may cross. Storage (`storage.links`), the handlers
(`handlers.links`) and the Matrix side (`bot.links`) build on it.

Every protocol event's content carries `v` (the protocol version, `PROTOCOL_VERSION`)
and `id`, its idempotency key: a key already accepted from the partner changes nothing.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from liaison.commands.model import (
    MXID_RE,
    POST_ID_RE,
    ROOM_ID_RE,
    Agency,
    Post,
    Tlp,
    known_zone,
)

PROTOCOL_VERSION = 1
"""The version this bot speaks; an event with another `v` is refused (`unknown_version`)."""

LINK_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,31}$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")

EVENT_PREFIX = "org.liaison.link."


class LinkEventType(StrEnum):
    """The Matrix event types of the protocol; each is sent encrypted in the link room."""

    DIRECTORY = "org.liaison.link.directory"
    OFFER = "org.liaison.link.offer"
    RECEIPT = "org.liaison.link.receipt"
    CASE = "org.liaison.link.case"


LINK_TLP_CEILING = Tlp.AMBER
"""The highest TLP that may ever cross a link: AMBER+STRICT and RED never do."""

MAX_EVENT_BYTES = 60_000
"""The largest protocol event content accepted or sent (canonical JSON, UTF-8): below
Synapse's 65,536-byte event limit with room for the Megolm envelope's growth."""


class Link(BaseModel):
    """One partner bot, as the operator configures it (`links:` in the configuration)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Short name of the link, used in logs, metrics and CLI: uz")
    partner: str = Field(description="The partner bot's Matrix user id")
    room: str = Field(description="The encrypted room both bots share (room id)")
    partner_master_key: str = Field(
        description="The partner bot's cross-signing master key (unpadded base64 Ed25519, "
                    "as `liaison identity` prints it on the partner's side), exchanged out "
                    "of band; a partner device not signed by it is refused")
    countries: tuple[str, ...] = Field(
        description="Countries (ISO 3166-1 alpha-2) whose posts the partner may offer; a "
                    "directory naming others is refused")
    agencies: tuple[Agency, ...] = Field(
        default=(), description="Agencies the partner's posts may be; empty: any")
    max_tlp: Tlp = Field(default=Tlp.AMBER,
                         description="Highest TLP sent over or accepted from this link "
                                     "(AMBER at most)")
    expose: tuple[str, ...] | None = Field(
        default=None, description="Local post ids published to this partner; None (the "
                                  "default): every local post")
    expose_groups: tuple[str, ...] = Field(
        default=(), description="Local groups whose membership is published")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not LINK_NAME_RE.match(value):
            raise ValueError("a link name is 2-32 lower-case letters, digits and dashes")
        return value

    @field_validator("partner")
    @classmethod
    def _check_partner(cls, value: str) -> str:
        if not MXID_RE.match(value):
            raise ValueError(f"{value!r} is not a Matrix user id like @liaison:example.org")
        return value

    @field_validator("room")
    @classmethod
    def _check_room(cls, value: str) -> str:
        if not ROOM_ID_RE.match(value):
            raise ValueError("room must be a Matrix room id such as !abc123:example.org")
        return value

    @field_validator("partner_master_key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        text = value.strip()
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32 or "=" in text:
            raise ValueError("partner_master_key must be the unpadded base64 Ed25519 key "
                             "`liaison identity` prints (43 characters)")
        return text

    @field_validator("countries")
    @classmethod
    def _check_countries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name the countries whose posts this partner may offer")
        for country in value:
            if not COUNTRY_RE.match(country):
                raise ValueError(f"{country!r} is not an ISO 3166-1 alpha-2 code such as UZ")
        return value

    @field_validator("max_tlp")
    @classmethod
    def _check_tlp(cls, value: Tlp) -> Tlp:
        if not LINK_TLP_CEILING.covers(value):
            raise ValueError("AMBER+STRICT and RED never cross a link: max_tlp is at most "
                             "AMBER")
        return value


# --- protocol contents ---------------------------------------------------------------

Text = Annotated[str, StringConstraints(max_length=20_000)]
Short = Annotated[str, StringConstraints(max_length=200)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=200)]
PostId = Annotated[str, StringConstraints(pattern=POST_ID_RE.pattern, max_length=64)]
UserIdText = Annotated[str, StringConstraints(pattern=MXID_RE.pattern, max_length=255)]


class _Content(BaseModel):
    """Common to every protocol event: the version and the idempotency key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    id: Key


class DirectoryPost(BaseModel):
    """One post a bot exposes to a partner: never its room, officers or supervisors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: PostId
    names: dict[Literal["en", "ru", "ar"], Short]
    country: Annotated[str, StringConstraints(pattern=COUNTRY_RE.pattern)]
    agency: Agency
    language: Literal["en", "ru", "ar"] = "en"
    timezone: Short = "UTC"
    clearance: Tlp = Tlp.AMBER
    groups: tuple[Short, ...] = ()
    neighbours: tuple[PostId, ...] = ()


class DirectoryContent(_Content):
    """`org.liaison.link.directory`: the posts a bot exposes; the highest `version` wins."""

    version: int = Field(ge=1)
    posts: tuple[DirectoryPost, ...] = Field(max_length=2000)


class Attachment(BaseModel):
    """A file of the case, as the origin's encrypted upload (the Matrix `file` object:
    `url`, `key`, `iv`, `hashes`, `v`), re-uploaded by the receiving bot for its rooms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Short
    mimetype: Short = "application/octet-stream"
    size: int = Field(ge=0)
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    file: dict[str, Any]


class OfferContent(_Content):
    """`org.liaison.link.offer`: one case offered to one of the partner's posts. The
    idempotency key is `offer:<ref>:<target>`; several targets at one partner are several
    offers of the same `ref`, which the partner keeps as one inbound case."""

    ref: Key
    kind: Literal["alert", "request"]
    origin_post: PostId
    origin_sender: UserIdText
    target: PostId
    targets: tuple[PostId, ...] = Field(description="All of the case's targets at this "
                                                    "partner (informational)")
    priority: Literal["flash", "urgent", "routine"]
    tlp: Tlp
    category: Short | None = None
    grading: Short | None = None
    handling: Short | None = None
    handling_text: Short | None = None
    action: Short | None = None
    deadline_class: Short | None = None
    fields: tuple[tuple[Short, Text], ...] = Field(default=(), max_length=200)
    text: Text = ""
    due_ms: int | None = None
    created_ms: int
    attachments: tuple[Attachment, ...] = Field(default=(), max_length=20)


class RefusalReason(StrEnum):
    """Why a bot refuses an offer or a protocol event (rendered to the origin officer)."""

    UNKNOWN_VERSION = "unknown_version"
    SCHEMA = "schema"
    TOO_LARGE = "too_large"
    NOT_PARTNER = "not_partner"
    UNSIGNED_DEVICE = "unsigned_device"
    TLP = "tlp"
    CLEARANCE = "clearance"
    UNKNOWN_POST = "unknown_post"
    NOT_EXPOSED = "not_exposed"
    UNKNOWN_CASE = "unknown_case"
    NOT_TARGET = "not_target"
    COUNTRY = "country"
    NOT_REACHABLE = "not_reachable"
    STALE = "stale"


class ReceiptContent(_Content):
    """`org.liaison.link.receipt`: the answer to one offer (`receipt:<ref>:<target>`)."""

    ref: Key
    target: PostId
    accepted: bool
    partner_ref: Key | None = None
    """The partner's own reference of its inbound case (None when refused)."""
    reason: RefusalReason | None = None
    detail: Short = ""


class CaseEventKind(StrEnum):
    """What happened to a case that crossed a link, told to the other side."""

    # the target's side tells the origin
    SEEN = "seen"
    ACK = "ack"
    ANSWERED = "answered"
    REMINDED = "reminded"
    ESCALATED = "escalated"
    DELAYED = "delayed"
    DECLINED = "declined"
    # both ways
    REPLY = "reply"
    ATTACHMENT = "attachment"
    # the origin's side tells the target
    UPDATE = "update"
    CLOSE = "close"
    CANCEL = "cancel"


FROM_TARGET_SIDE = frozenset({CaseEventKind.SEEN, CaseEventKind.ACK, CaseEventKind.ANSWERED,
                              CaseEventKind.REMINDED, CaseEventKind.ESCALATED,
                              CaseEventKind.DELAYED, CaseEventKind.DECLINED,
                              CaseEventKind.REPLY, CaseEventKind.ATTACHMENT})
FROM_ORIGIN_SIDE = frozenset({CaseEventKind.REPLY, CaseEventKind.ATTACHMENT,
                              CaseEventKind.UPDATE, CaseEventKind.CLOSE, CaseEventKind.CANCEL})


class CaseEventContent(_Content):
    """`org.liaison.link.case`: one case event. `ref` is always the origin's reference
    (as offered); `post` is the target post it is about (the acknowledging post, the
    replying post); `by` the officer, `ms` when it happened on the sender's side."""

    ref: Key
    event: CaseEventKind
    post: PostId | None = None
    by: UserIdText | None = None
    ms: int
    text: Text = ""
    outcome: Short | None = None
    attachment: Attachment | None = None


# --- what this bot knows of its partners ----------------------------------------------


@dataclass(frozen=True)
class LinkView:
    """The configured links and the directory each partner last published (accepted):
    what routing, rendering and the audience of a link room read. Built by the shell
    (`bot.directory`) from the configuration and `storage.links`; empty without links."""

    links: tuple[Link, ...] = ()
    directories: Mapping[str, DirectoryContent] = dataclass_field(default_factory=dict)
    """Link name → the partner's newest accepted directory."""

    def by_name(self, name: str) -> Link | None:
        return next((link for link in self.links if link.name == name), None)

    def link_for_room(self, room_id: str) -> Link | None:
        """The link whose room `room_id` is, if any."""
        return next((link for link in self.links if link.room == room_id), None)

    def partner_posts(self) -> dict[str, Post]:
        """Every partner post as a `Post` whose `room` is its link's room (no officers,
        supervisors or duty officers: those are the partner's), keyed by post id. A post
        a link may not serve (country, agency) is left out, as is a post id that another
        link already offers."""
        posts: dict[str, Post] = {}
        for link in self.links:
            directory = self.directories.get(link.name)
            if directory is None:
                continue
            for entry in directory.posts:
                if entry.id in posts or not serves(link, entry):
                    continue
                posts[entry.id] = Post(
                    id=entry.id, country=entry.country,
                    names={str(lang): name for lang, name in entry.names.items()},
                    agency=entry.agency, room=link.room, language=entry.language,
                    timezone=entry.timezone if _known_zone(entry.timezone) else "UTC",
                    clearance=min(entry.clearance, link.max_tlp, key=lambda t: t.rank),
                    neighbours=entry.neighbours)
        return posts

    def link_for_post(self, post_id: str) -> Link | None:
        """The link behind a partner post, if `post_id` is one."""
        post = self.partner_posts().get(post_id)
        return None if post is None else self.link_for_room(post.room)

    def partner_groups(self) -> dict[str, tuple[str, ...]]:
        """Group name → the partner posts that published membership of it."""
        groups: dict[str, list[str]] = {}
        for post_id, _link, groups_of in self._memberships():
            for group in groups_of:
                groups.setdefault(group, []).append(post_id)
        return {name: tuple(members) for name, members in groups.items()}

    def _memberships(self) -> list[tuple[str, str, tuple[str, ...]]]:
        allowed = self.partner_posts()
        out: list[tuple[str, str, tuple[str, ...]]] = []
        for link in self.links:
            directory = self.directories.get(link.name)
            if directory is None:
                continue
            out.extend((entry.id, link.name, entry.groups) for entry in directory.posts
                       if entry.id in allowed and allowed[entry.id].room == link.room)
        return out


def serves(link: Link, post: DirectoryPost) -> bool:
    """Whether `link` may carry cases to and from `post` (its country and agency)."""
    return post.country in link.countries and (not link.agencies
                                               or post.agency in link.agencies)


def _known_zone(name: str) -> bool:
    try:
        known_zone(name)
    except ValueError:
        return False
    return True
