"""The records the core reasons about: a case, its deliveries, its timeline, and the
drafts that become them. Plain frozen dataclasses, filled by `storage.cases` from
SQLite and read by the renderers, routing and chasing; no I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from liaison.commands.model import Priority, Tlp
from liaison.commands.parser import CaseKind

CaseState = Literal["open", "closed", "cancelled"]
DeliveryState = Literal["routed", "acknowledged", "answered"]


class TimelineKind(StrEnum):
    """What a timeline entry records."""

    CREATED = "created"
    ROUTED = "routed"
    REFUSED = "refused"
    ACKNOWLEDGED = "acknowledged"
    ANSWERED = "answered"
    UPDATED = "updated"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    REPLIED = "replied"
    EDITED = "edited"
    REDACTED = "redacted"
    ATTACHED = "attached"
    """A photo or file was attached (see `commands.attachments`); never its content."""
    DISCLOSED = "disclosed"
    """Its content was shown in a room at someone's request (`!status`, `!pending`,
    `!escalations`): who asked, where, how much (see `commands.audience`)."""
    PURGED = "purged"
    """Its content was removed under the retention policy (see `storage.retention`)."""
    SEEN = "seen"
    """A member of the target room sent a read receipt on the relayed case (or later)."""
    REMINDED = "reminded"
    """The chaser reminded a target post (`commands.chasing`)."""
    ESCALATED = "escalated"
    """The chaser escalated to supervisors."""
    SNOOZED = "snoozed"
    """A target post snoozed its reminders (`!snooze`)."""
    DELAYED = "delayed"
    """The target post put its answer off (`!delay`): the reason code and new deadline."""
    DECLINED = "declined"
    """The target post refused the request (`!refuse`) with a reason code."""
    PERMITTED = "permitted"
    """The originator permitted an H2 case to be passed on to a post (`!permit`)."""


@dataclass(frozen=True)
class NewCase:
    """A routed draft about to be stored; the reference is allocated on insert."""

    kind: CaseKind
    origin_post: str
    origin_country: str
    priority: Priority
    tlp: Tlp
    category: str | None
    grading: str | None
    related_ref: str | None
    fields: tuple[tuple[str, str], ...]
    text: str
    due_ms: int | None
    forwardable: bool
    origin_room: str
    origin_event_id: str
    origin_sender: str
    created_ms: int
    deadline_class: str | None = None
    handling: str | None = None
    handling_text: str | None = None
    action: str | None = None


@dataclass(frozen=True)
class Case:
    id: int
    ref: str
    kind: CaseKind
    origin_post: str
    priority: Priority
    tlp: Tlp
    category: str | None
    grading: str | None
    related_ref: str | None
    fields: tuple[tuple[str, str], ...]
    text: str
    due_ms: int | None
    state: CaseState
    forwardable: bool
    origin_room: str
    origin_event_id: str
    origin_sender: str
    created_ms: int
    closed_ms: int | None
    closed_by: str | None
    outcome: str | None
    deadline_class: str | None = None
    """The request's deadline class (`commands.deadlines`)."""
    handling: str | None = None
    """H0-H3 (`commands.handling`); `handling_text` is an H3 case's restriction."""
    handling_text: str | None = None
    action: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state == "open"


@dataclass(frozen=True)
class Delivery:
    """One case at one target post. `relayed_event_id` and `sent_ms` come from the outbox
    row of the relayed message and stay None until the homeserver accepted it."""

    id: int
    case_id: int
    post: str
    room_id: str
    relay_txn_id: str
    state: DeliveryState
    routed_ms: int
    acknowledged_ms: int | None
    acknowledged_by: str | None
    answered_ms: int | None
    answered_by: str | None
    relayed_event_id: str | None
    sent_ms: int | None
    seen_ms: int | None = None
    seen_by: str | None = None
    due_ms: int | None = None
    """This delivery's answer deadline (its class counted from receipt, moved by `!delay`);
    None: the case's `due_ms`, or the chase policy's."""
    first_due_ms: int | None = None
    refused_ms: int | None = None
    refused_by: str | None = None
    refusal_reason: str | None = None
    recipient: str | None = None
    """TLP:RED: the named person it went to, in a direct message (`post` is their id)."""


@dataclass(frozen=True)
class TimelineEntry:
    id: int
    case_id: int
    kind: str
    post: str | None
    actor: str | None
    ms: int
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class Revision:
    """What an edit of the opening command may change in a routed case."""

    fields: tuple[tuple[str, str], ...]
    text: str
    grading: str | None
    due_ms: int | None
