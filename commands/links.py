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
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from liaison.commands.model import (
    MXID_RE,
    POST_ID_RE,
    ROOM_ID_RE,
    Agency,
    Group,
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

MAX_EVENT_BYTES = 44_000
"""The largest protocol event content accepted or sent (canonical JSON, UTF-8). Megolm
encrypts the event (type, content, room id) and the ciphertext travels in unpadded
base64, a third larger: 44,000 bytes become about 59,000 in `m.room.encrypted`, which
leaves room for the envelope and the federation PDU's own fields under Synapse's
65,536-byte limit on a whole event (60,000 would become about 80,300 and never be sent)."""


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
    due_ms: int | None = Field(default=None, ge=0)
    """A `delayed` event's new answer deadline (ms since the epoch); None for others."""


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
        return dict(self._partner_posts)

    @cached_property
    def _partner_posts(self) -> dict[str, Post]:
        """`partner_posts`, built once per view (the view never changes: a new directory
        makes a new view)."""
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
                    names={"en": entry.id} | {str(lang): name
                                              for lang, name in entry.names.items()},
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


# --- the rules of the protocol (pure) ---------------------------------------------------

ParsedContent = DirectoryContent | OfferContent | ReceiptContent | CaseEventContent

_CONTENT_MODELS: dict[str, type[DirectoryContent | OfferContent | ReceiptContent
                                 | CaseEventContent]] = {
    LinkEventType.DIRECTORY: DirectoryContent,
    LinkEventType.OFFER: OfferContent,
    LinkEventType.RECEIPT: ReceiptContent,
    LinkEventType.CASE: CaseEventContent,
}
Language = Literal["en", "ru", "ar"]
_LANGUAGES: tuple[Language, ...] = ("en", "ru", "ar")


@dataclass(frozen=True)
class LinkRefusal:
    """Why a protocol event (or an offer) is refused: the reason the partner and the
    origin officer are told (rendered from `reason`) and a detail in English for the
    log, the audit trail and the receipt's `detail`."""

    reason: RefusalReason
    detail: str


def canonical_json(value: object) -> bytes:
    """The canonical JSON of a content (sorted keys, no spaces, UTF-8): what the size
    limit counts and the directory digest hashes."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def directory_key(version: int) -> str:
    """The `id` of the directory of `version`."""
    return f"directory:{version}"


def offer_key(ref: str, target: str) -> str:
    """The `id` of the offer of case `ref` to the partner's post `target`."""
    return f"offer:{ref}:{target}"


def receipt_key(ref: str, target: str) -> str:
    """The `id` of the receipt answering the offer of `ref` to `target`."""
    return f"receipt:{ref}:{target}"


def case_event_key(ref: str, event: CaseEventKind, post: str | None, unique: str) -> str:
    """The `id` of a case event: `case:<ref>:<event>:<post>` (`-` when it is about the
    whole case), then `:<unique>` when the same kind may happen again for that post
    (a reply's or a reminder's own event id or step); `unique` empty for what happens
    once (an ack, a close)."""
    key = f"case:{ref}:{event.value}:{post or '-'}"
    return f"{key}:{unique}" if unique else key


def directory_posts(link: Link, posts: Sequence[Post],
                    groups: Sequence[Group]) -> tuple[DirectoryPost, ...]:
    """The local posts published to `link`, in configuration order: those `link.expose`
    names (every post when it is None), with the groups of `link.expose_groups` they
    belong to and the neighbours the partner may know (published posts and the
    partner's own). Never a room, officer or supervisor; a clearance above the link's
    `max_tlp` is published as `max_tlp`, as nothing above it crosses."""
    exposed = [post for post in posts
               if link.expose is None or post.id in link.expose]
    published = {post.id for post in exposed}
    shown_groups = [group for group in groups if group.name in link.expose_groups]
    return tuple(
        DirectoryPost(
            id=post.id,
            names={lang: post.names[lang] for lang in _LANGUAGES if lang in post.names},
            country=post.country, agency=post.agency,
            language=_language(post.language),
            timezone=post.timezone,
            clearance=min(post.clearance, link.max_tlp, key=lambda tlp: tlp.rank),
            groups=tuple(group.name for group in shown_groups if post.id in group.posts),
            neighbours=tuple(neighbour for neighbour in post.neighbours
                             if neighbour in published
                             or neighbour[:2] in link.countries))
        for post in exposed)


def _language(value: str) -> Language:
    return next((lang for lang in _LANGUAGES if lang == value), "en")


def directory_digest(posts: tuple[DirectoryPost, ...]) -> str:
    """SHA-256 (hex) of the published posts' canonical JSON: the directory is published
    again (its version up by one) only when this changes."""
    payload = canonical_json([post.model_dump(mode="json") for post in posts])
    return hashlib.sha256(payload).hexdigest()


def directory_to_publish(link: Link, posts: Sequence[Post], groups: Sequence[Group],
                         published: tuple[int, str] | None
                         ) -> tuple[DirectoryContent, str] | None:
    """The directory to publish to `link` and its digest, when what it exposes differs
    from what was last published (`published`: that version and digest, as
    `storage.links.published` gives them; None: never published); its version is the
    last one plus one. None when the partner already has it."""
    exposed = directory_posts(link, posts, groups)
    digest = directory_digest(exposed)
    if published is not None and published[1] == digest:
        return None
    version = 1 if published is None else published[0] + 1
    return DirectoryContent(id=directory_key(version), version=version, posts=exposed), digest


def oversized(content: BaseModel) -> LinkRefusal | None:
    """`TOO_LARGE` when a content to send is over `MAX_EVENT_BYTES` (a case with long text
    and many fields in Cyrillic or Arabic can be): the partner would refuse it, and
    encrypted it would not fit in a Matrix event. None when it fits."""
    size = len(canonical_json(content.model_dump(mode="json")))
    if size > MAX_EVENT_BYTES:
        return LinkRefusal(RefusalReason.TOO_LARGE, f"{size} bytes, more than {MAX_EVENT_BYTES}")
    return None


MAX_NESTING = 16
"""No protocol content nests deeper (an offer's fields are 3 levels); deeper is refused
before anything reads it, the same on every Python (whose JSON encoders and pydantic
give up at different depths)."""


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON-like `value` nests more than `limit` levels, walked without recursion."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def parse_content(event_type: str, content: Mapping[str, Any]) -> ParsedContent | LinkRefusal:
    """Read a protocol event's content: its type known, its size within
    `MAX_EVENT_BYTES`, its `v` this bot's version, its schema exact (no unknown field)
    and its `id` the key its fields give."""
    model = _CONTENT_MODELS.get(event_type)
    if model is None:
        return LinkRefusal(RefusalReason.SCHEMA, f"unknown event type {event_type[:80]!r}")
    if _deeper_than(content, MAX_NESTING):
        return LinkRefusal(RefusalReason.SCHEMA,
                           f"the content is nested deeper than {MAX_NESTING} levels")
    try:
        raw = canonical_json(content)
    except (TypeError, ValueError, RecursionError):  # RecursionError: nested too deep
        return LinkRefusal(RefusalReason.SCHEMA, "the content is not JSON")
    if len(raw) > MAX_EVENT_BYTES:
        return LinkRefusal(RefusalReason.TOO_LARGE,
                           f"{len(raw)} bytes, more than {MAX_EVENT_BYTES}")
    version = content.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        return LinkRefusal(RefusalReason.UNKNOWN_VERSION,
                           f"protocol version {str(version)[:20]!r}, this bot speaks "
                           f"{PROTOCOL_VERSION}")
    try:
        parsed = model.model_validate_json(raw)
    except ValidationError as error:
        return LinkRefusal(RefusalReason.SCHEMA, _first_error(error))
    expected = _expected_key(parsed)
    if expected is not None and parsed.id != expected:
        return LinkRefusal(RefusalReason.SCHEMA,
                           f"id {parsed.id[:80]!r} should be {expected[:80]!r}")
    if isinstance(parsed, CaseEventContent):
        return _check_event_shape(parsed) or parsed
    return parsed


def _expected_key(parsed: ParsedContent) -> str | None:
    """The `id` a content must carry, or None when only its prefix is fixed (a case
    event: checked in `_check_event_shape`)."""
    if isinstance(parsed, DirectoryContent):
        return directory_key(parsed.version)
    if isinstance(parsed, OfferContent):
        return offer_key(parsed.ref, parsed.target)
    if isinstance(parsed, ReceiptContent):
        return receipt_key(parsed.ref, parsed.target)
    return None


def _check_event_shape(event: CaseEventContent) -> LinkRefusal | None:
    prefix = case_event_key(event.ref, event.event, event.post, "")
    if event.id != prefix and not event.id.startswith(prefix + ":"):
        return LinkRefusal(RefusalReason.SCHEMA,
                           f"id {event.id[:80]!r} should start with {prefix[:80]!r}")
    if event.event is CaseEventKind.ATTACHMENT and event.attachment is None:
        return LinkRefusal(RefusalReason.SCHEMA, "an attachment event without its attachment")
    return None


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "content"
    return f"{where}: {first['msg']}"[:200]


def check_directory(link: Link, content: DirectoryContent) -> LinkRefusal | None:
    """Whether the partner may publish this directory: every post of a country (and
    agency) the link serves, each id once. Refused as a whole otherwise."""
    foreign = [post.id for post in content.posts if not serves(link, post)]
    if foreign:
        return LinkRefusal(RefusalReason.COUNTRY,
                           f"posts the link {link.name} does not serve (countries "
                           f"{','.join(link.countries)}"
                           + (f", agencies {','.join(link.agencies)}" if link.agencies else "")
                           + f"): {', '.join(foreign[:10])}")
    seen: set[str] = set()
    for post in content.posts:
        if post.id in seen:
            return LinkRefusal(RefusalReason.SCHEMA, f"post {post.id} is listed twice")
        if "en" not in post.names:
            return LinkRefusal(RefusalReason.SCHEMA, f"post {post.id} has no English name")
        seen.add(post.id)
    return None


def may_cross(link: Link, tlp: Tlp) -> bool:
    """Whether a case of `tlp` may cross `link`: never AMBER+STRICT or RED, never above
    the link's `max_tlp`."""
    return LINK_TLP_CEILING.covers(tlp) and link.max_tlp.covers(tlp)


def check_offer(link: Link, offer: OfferContent, target: Post | None, *,
                partner_directory: DirectoryContent | None) -> LinkRefusal | None:
    """Whether this bot accepts `offer` from `link`'s partner for its post `target`
    (the local post named `offer.target`, None when there is none): the TLP may cross
    the link, the target is a local post exposed to the link and cleared for the TLP,
    the origin post is one the partner published and the link serves."""
    if not may_cross(link, offer.tlp):
        return LinkRefusal(RefusalReason.TLP,
                           f"TLP:{offer.tlp.value} does not cross the link {link.name} "
                           f"(AMBER+STRICT and RED never do; at most "
                           f"TLP:{link.max_tlp.value})")
    if offer.target not in offer.targets:
        return LinkRefusal(RefusalReason.SCHEMA, f"target {offer.target} is not in targets")
    if target is None or target.id != offer.target:
        return LinkRefusal(RefusalReason.UNKNOWN_POST, f"no post {offer.target} here")
    if link.expose is not None and target.id not in link.expose:
        return LinkRefusal(RefusalReason.NOT_EXPOSED,
                           f"{target.id} is not offered to the link {link.name}")
    if not target.clearance.covers(offer.tlp):
        return LinkRefusal(RefusalReason.CLEARANCE,
                           f"{target.id} is cleared up to TLP:{target.clearance.value}, "
                           f"the case is TLP:{offer.tlp.value}")
    origin = None if partner_directory is None else next(
        (post for post in partner_directory.posts if post.id == offer.origin_post), None)
    if origin is None:
        return LinkRefusal(RefusalReason.UNKNOWN_POST,
                           f"origin post {offer.origin_post} is not in the partner's "
                           f"directory")
    if not serves(link, origin):
        return LinkRefusal(RefusalReason.COUNTRY,
                           f"origin post {origin.id} is of a country or agency the link "
                           f"{link.name} does not serve")
    return None


def check_case_event(event: CaseEventContent, *, we_are_origin: bool,
                     offered_posts: frozenset[str]) -> LinkRefusal | None:
    """Whether a case event of a case that crossed the link may be applied: its kind
    is one the other side may send (the target's side when this bot is the origin,
    the origin's otherwise) and its `post` is among `offered_posts`, the posts the case
    was offered to at the partner (when this bot is the origin) or here (when the
    partner is). Events from the target's side always name their post; the origin's
    may be about the whole case (no `post`)."""
    allowed = FROM_TARGET_SIDE if we_are_origin else FROM_ORIGIN_SIDE
    if event.event not in allowed:
        side = "the origin's" if we_are_origin else "the target's"
        return LinkRefusal(RefusalReason.SCHEMA,
                           f"a {event.event.value} event does not come from {side} side")
    if event.post is None:
        if we_are_origin:
            return LinkRefusal(RefusalReason.NOT_TARGET,
                               f"a {event.event.value} event must name its post")
        return None
    if event.post not in offered_posts:
        return LinkRefusal(RefusalReason.NOT_TARGET,
                           f"{event.ref} was not offered to {event.post}")
    return None
