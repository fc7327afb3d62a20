"""What rings: every kind of message the bot queues, and whether it must reach a person now.

Default push rules silence every `m.notice` before they look at mentions
(`.m.rule.suppress_notices` is the first override rule), so a message someone must act
on now goes out as `m.text` mentioning exactly the people who must act; everything else
(answers to commands, help, status, reports, refusals) is a quiet `m.notice`.

`KIND_RULES` is the one table of kinds: whether each rings (its `Notification` class),
may enter an unencrypted room, goes ahead of its batch, or waits behind the rest; a kind
without a row fails `tests/unit/test_notify.py`. The configuration may lower a class
(`notifications.quiet_priorities`, `notifications.quiet_posts`), never raise one: a quiet
kind has no way to become `m.text`, and `storage.outbox` refuses to queue one that is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from liaison.commands.model import Priority

MsgType = Literal["m.text", "m.notice"]


class OutboxKind(StrEnum):
    """Every kind of message the bot writes to the outbox."""

    CASE_RELAY = "case-relay"
    """A case relayed to a target post (handlers.cases)."""
    CASE_ACK = "case-ack"
    """The origin room is told a target acknowledged."""
    CASE_HIT = "case-hit"
    """A case's thread is told that another case holds what it holds (handlers.hits)."""
    CHASE_REMIND = "chase-remind"
    """A reminder in the target room, mentioning its duty officers (bot.chaser)."""
    CHASE_ESCALATE = "chase-escalate"
    """An escalation to supervisors, in their room or a direct message."""
    CHASE_TAKEN = "chase-taken"
    """The rooms an escalation reached are told the case was taken."""
    UNDECRYPTABLE = "undecryptable"
    """The sender is told the bot could not read their message (bot.undecryptable)."""
    REPLY = "reply"
    """The answer to the officer who typed a command (help, status, pending, reports…)."""
    REFUSAL = "refusal"
    """A command or device the bot will not serve."""
    FLOOD_REFUSAL = "flood-refusal"
    """Too many commands: the one notice before the bot goes quiet for a while."""
    PLAINTEXT_WARNING = "plaintext-warning"
    """The one message allowed into an unencrypted room: why the bot will not work there."""
    DEVICE_NOTICE = "device-notice"
    """A member's devices changed (bot.devicewatch)."""
    CASE_REPLY = "case-reply"
    """A reply carried between the origin and the targets."""
    CASE_ATTACHMENT = "case-attachment"
    """A file or photo carried between the origin and the targets (a media msgtype)."""
    CASE_UPDATE = "case-update"
    CASE_EDIT = "case-edit"
    CASE_WITHDRAWN = "case-withdrawn"
    CASE_CLOSED = "case-closed"
    CASE_CANCELLED = "case-cancelled"
    CASE_DELAYED = "case-delayed"
    """The requester is told at once that a target delays its answer (`!delay`)."""
    CASE_DECLINED = "case-declined"
    """The requester is told a target refused the request (`!refuse`)."""
    ADMIN_NOTICE = "admin-notice"
    """The admins' room is told of a room the bot serves nobody in (bot.command_runner)."""
    REPORT_WEEKLY = "report-weekly"
    """The weekly report's table (bot.reports)."""
    REPORT_CHART = "report-chart"
    """A report's chart, drawn just before it is sent."""
    LINK_PROTOCOL = "link-protocol"
    """A protocol event to a partner bot in a link room (`handlers.links`, `docs/links.md`):
    read by a bot, never by a person, so it never rings."""


def case_notice_kind(about: str) -> OutboxKind:
    """The kind of a case notice told to the origin or targets (`about`: ack, reply,
    update, edit, withdrawn, closed, cancelled, attachment); ValueError for any other."""
    return OutboxKind(f"case-{about}")


class Notification(Enum):
    """How hard a kind of message tries to reach a person."""

    RING = "ring"
    """`m.text` mentioning who must act: default push rules notify, with sound and
    highlight for the people mentioned."""
    RING_IF_PRESSING = "ring-if-pressing"
    """Rings for flash and urgent cases; quiet for routine ones (an acknowledgement of a
    routine case can wait until someone looks)."""
    QUIET = "quiet"
    """`m.notice` (or the media msgtype of an attachment): never rings."""


@dataclass(frozen=True)
class KindRule:
    """Everything the shell decides by a message's kind, in one row."""

    notification: Notification
    """Whether it rings (`Notification`)."""
    plaintext: bool = False
    """May enter an unencrypted room: only the warning that the bot will not work there."""
    ahead: bool = False
    """Sent ahead of the rest of its batch (a relay: the alert is what must arrive first)."""
    informational: bool = False
    """Nobody asked for it and nobody must act on it: in its room's queue, the answers to
    commands and everything else go before it (`storage.outbox`), so a new device's
    notice never holds up the `!ping` that device sent."""


_RING, _PRESSING, _QUIET = (Notification.RING, Notification.RING_IF_PRESSING,
                            Notification.QUIET)

KIND_RULES: Mapping[OutboxKind, KindRule] = {
    OutboxKind.CASE_RELAY: KindRule(_RING, ahead=True),
    OutboxKind.LINK_PROTOCOL: KindRule(_QUIET, ahead=True),
    OutboxKind.CHASE_REMIND: KindRule(_RING),
    OutboxKind.CHASE_ESCALATE: KindRule(_RING),
    OutboxKind.UNDECRYPTABLE: KindRule(_RING),
    OutboxKind.CASE_ACK: KindRule(_PRESSING),
    OutboxKind.CHASE_TAKEN: KindRule(_PRESSING),
    OutboxKind.CASE_DELAYED: KindRule(_RING),
    OutboxKind.CASE_DECLINED: KindRule(_RING),
    OutboxKind.REPLY: KindRule(_QUIET),
    OutboxKind.REFUSAL: KindRule(_QUIET),
    OutboxKind.FLOOD_REFUSAL: KindRule(_QUIET),
    OutboxKind.PLAINTEXT_WARNING: KindRule(_QUIET, plaintext=True),
    OutboxKind.DEVICE_NOTICE: KindRule(_QUIET, informational=True),
    OutboxKind.CASE_REPLY: KindRule(_QUIET),
    OutboxKind.CASE_ATTACHMENT: KindRule(_QUIET),
    OutboxKind.CASE_UPDATE: KindRule(_QUIET),
    OutboxKind.CASE_HIT: KindRule(_QUIET),
    OutboxKind.CASE_EDIT: KindRule(_QUIET),
    OutboxKind.CASE_WITHDRAWN: KindRule(_QUIET),
    OutboxKind.CASE_CLOSED: KindRule(_QUIET),
    OutboxKind.CASE_CANCELLED: KindRule(_QUIET),
    OutboxKind.ADMIN_NOTICE: KindRule(_QUIET),
    OutboxKind.REPORT_WEEKLY: KindRule(_QUIET),
    OutboxKind.REPORT_CHART: KindRule(_QUIET),
}
"""The one table of outbox kinds; a kind without a row fails `tests/unit/test_notify.py`."""

NOTIFICATIONS: Mapping[OutboxKind, Notification] = {
    kind: rule.notification for kind, rule in KIND_RULES.items()}

PRESSING = frozenset({Priority.FLASH, Priority.URGENT})

INFORMATIONAL = frozenset(kind for kind, rule in KIND_RULES.items() if rule.informational)
PLAINTEXT_ALLOWED = frozenset(kind for kind, rule in KIND_RULES.items() if rule.plaintext)
AHEAD_OF_BATCH = frozenset(kind for kind, rule in KIND_RULES.items() if rule.ahead)


class NotificationSettings(BaseModel):
    """The `notifications` section: where messages that would ring are sent quietly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quiet_priorities: tuple[Priority, ...] = ()
    """Cases of these priorities never ring (for example `routine` in busy rooms)."""
    quiet_posts: tuple[str, ...] = ()
    """Post ids whose rooms get every message as a quiet notice."""


LOUDEST = NotificationSettings()
"""Nothing lowered: every class as the table says."""


def msgtype_for(kind: OutboxKind, *, priority: Priority | None = None,
                post: str | None = None,
                settings: NotificationSettings = LOUDEST) -> MsgType:
    """`m.text` when a message of `kind` about a case of `priority`, read at `post` (None:
    a direct message or a room that is no post's), must ring; else `m.notice`."""
    notification = NOTIFICATIONS[kind]
    if notification is Notification.QUIET:
        return "m.notice"
    if notification is Notification.RING_IF_PRESSING and priority not in PRESSING:
        return "m.notice"
    if priority is not None and priority in settings.quiet_priorities:
        return "m.notice"
    if post is not None and post in settings.quiet_posts:
        return "m.notice"
    return "m.text"


def check_quiet(kind: OutboxKind, content: Mapping[str, Any]) -> None:
    """Refuse a quiet kind dressed as `m.text`: the configuration and the code may lower a
    class, never raise one."""
    if NOTIFICATIONS[kind] is Notification.QUIET and content.get("msgtype") == "m.text":
        raise ValueError(f"outbox kind {kind.value} is quiet and may not be sent as m.text")


def quiet_post_problems(data: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """`notifications.quiet_posts` entries that name no configured post (on the raw YAML,
    so the loader reports them with line numbers)."""
    section = data.get("notifications")
    posts = data.get("posts")
    if not isinstance(section, dict) or not isinstance(posts, list):
        return []
    known = {post.get("id") for post in posts if isinstance(post, dict)}
    quiet = section.get("quiet_posts")
    if not isinstance(quiet, list):
        return []
    return [(("notifications", "quiet_posts", index), f"{post_id} is not a configured post id")
            for index, post_id in enumerate(quiet)
            if isinstance(post_id, str) and post_id not in known]
