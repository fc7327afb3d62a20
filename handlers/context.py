"""What a handler may use while it runs: all of it bound to one transaction.

The shell opens one database transaction per event (`bot.event_transaction`), claims
the event id in it, and hands the handler this object. Whatever the handler stores or
sends (through `send`/`send_case`, which write to the outbox once the room's readers
may see it) and records (through `record`, on the audit log) commits together with
the claim, or not at all. The clock and the log context come from the shell as plain
callables, so handlers never import it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import aiosqlite

from liaison.commands.audience import (
    Audience,
    AudienceKind,
    CaseParties,
    Detail,
    Disclosure,
    carries_case_content,
    disclose,
    link_audience,
    room_audience,
)
from liaison.commands.links import LinkView
from liaison.commands.notify import OutboxKind
from liaison.commands.records import Case, TimelineKind
from liaison.config import Config
from liaison.storage import audit, cases, inbox, outbox
from liaison.storage.outbox import OutboxMessage

log = logging.getLogger(__name__)


class UndisclosedCaseContent(RuntimeError):
    """A message carrying case content was queued without a `Disclosure` for its room:
    a programming error, never sent (the event's transaction rolls back)."""


class Clock(Protocol):
    """The time as the shell reads it (`bot.clock.Clock`, or a test's clock)."""

    def now(self) -> datetime: ...

    def now_ms(self) -> int: ...


def _no_members(room_id: str) -> frozenset[str] | None:
    return None


def _no_log_context(case_ref: str) -> None:
    return None


@dataclass(frozen=True)
class FollowUp:
    content: dict[str, Any]
    kind: OutboxKind


@dataclass(frozen=True)
class Services:
    config: Config
    clock: Clock
    conn: aiosqlite.Connection
    bot_user_id: str
    joined_rooms: frozenset[str]
    encrypted_rooms: frozenset[str]
    follow_ups: list[FollowUp] = field(default_factory=list)
    """Messages that go out after the handler's reply (see `follow_reply`)."""
    members_of: Callable[[str], frozenset[str] | None] = _no_members
    """A room's joined and invited users, as the Matrix client knows them (None: unknown)."""
    note_case: Callable[[str], None] = _no_log_context
    """Names the case the event in hand is about in its log lines (`bot.logs.note_case`)."""
    links: LinkView = field(default_factory=LinkView)
    """The configured links and the partners' accepted directories (`commands.links`)."""
    charts: bool = True
    """Whether report charts can be drawn (the `charts` extra is installed:
    `bot.reports.charts_installed`); without it `!report` sends its table alone."""

    def audience(self, room_id: str) -> Audience:
        """Who reads what the bot writes into `room_id` (`commands.audience`)."""
        return audience_in(self.config, room_id, self.members_of(room_id), self.links)

    async def disclosure(self, room_id: str, case: Case, *, needed: Detail = Detail.PARTICIPANT,
                         escalation: bool = False) -> Disclosure | None:
        """May the readers of `room_id` see `case` (at least `needed` of it)? The proof
        `send` asks for, or None."""
        return await case_disclosure(self.conn, self.config, self.audience(room_id), case,
                                     needed=needed, escalation=escalation)

    async def record_disclosure(self, disclosure: Disclosure, case: Case, *, asked_by: str,
                                shown: str) -> None:
        """Put on the case's timeline (and so on the audit log) that its content was
        shown in a room at someone's request: who asked, where, what, how much."""
        await cases.add_timeline(
            self.conn, case.id, TimelineKind.DISCLOSED, ms=self.clock.now_ms(), actor=asked_by,
            detail={"room_id": disclosure.room_id, "shown": shown,
                    "level": disclosure.detail.name.lower()})

    def follow_reply(self, content: dict[str, Any], *, kind: OutboxKind) -> None:
        """Queue a message right after the reply to the command, as a reply to the same
        event and in the same transaction (`!report`'s chart after its table); dropped if
        the handler fails. Commands only: the router's command path sends these."""
        self.follow_ups.append(FollowUp(content, kind))

    async def send(
        self,
        room_id: str,
        content: dict[str, Any],
        *,
        kind: OutboxKind,
        case_ref: str | None = None,
        event_type: str = "m.room.message",
        disclosure: Disclosure | None = None,
    ) -> OutboxMessage:
        """Queue a message; it leaves once the transaction commits. A message that carries
        case content (`commands.audience.carries_case_content`) needs the `Disclosure`
        of that case to that room."""
        require_disclosure(kind, room_id, case_ref, disclosure)
        if case_ref is not None:
            self.note_case(case_ref)  # the event in hand is about this case: its log lines say so
        message = await outbox.enqueue(self.conn, room_id=room_id, event_type=event_type,
                                       content=content, now_ms=self.clock.now_ms(), kind=kind,
                                       case_ref=case_ref)
        return message

    async def send_case(self, room_id: str, content: dict[str, Any], *, case: Case,
                        kind: OutboxKind,
                        needed: Detail = Detail.PARTICIPANT, escalation: bool = False) -> bool:
        """Queue a message about `case` into `room_id` if the room's readers may see it
        (`disclosure`); False, and nothing queued, if they may not. A link room's reader is
        the partner's bot: it reads protocol events only (`handlers.links`), never a notice."""
        if self.links.link_for_room(room_id) is not None:
            log.info("a notice about a case was not written into a link room",
                     extra={"room_id": room_id, "case_ref": case.ref, "kind": kind})
            return False
        disclosure = await self.disclosure(room_id, case, needed=needed, escalation=escalation)
        if disclosure is None:
            log.warning("case content withheld from a room whose readers may not see it",
                        extra={"room_id": room_id, "case_ref": case.ref, "kind": kind})
            return False
        await self.send(room_id, content, kind=kind, case_ref=case.ref, disclosure=disclosure)
        return True

    async def claim(self, event_id: str, room_id: str) -> bool:
        """Mark an incoming event processed in this transaction; True only the first time,
        so a handler that acts on a reaction, reply or edit acts only then."""
        return await inbox.claim_event(self.conn, event_id=event_id, room_id=room_id,
                                       now_ms=self.clock.now_ms())

    async def record(
        self,
        action: str,
        *,
        actor: str,
        case_ref: str | None = None,
        room_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an action to the audit log in this transaction (ids and reasons in
        `detail`, never message content). Case timeline entries are recorded by
        `storage.cases` itself."""
        if case_ref is not None:
            self.note_case(case_ref)
        await audit.append(self.conn, ts_ms=self.clock.now_ms(), actor=actor, action=action,
                           case_ref=case_ref, room_id=room_id, detail=detail)


def require_disclosure(kind: str, room_id: str, case_ref: str | None,
                       disclosure: Disclosure | None) -> None:
    """Refuse to queue case content into a room without the proof that its readers may
    see it; every path that writes a case into a room passes here."""
    if not carries_case_content(kind):
        return
    if disclosure is None or not disclosure.covers(room_id, case_ref, Detail.REFERENCE):
        raise UndisclosedCaseContent(
            f"{kind} about {case_ref} into {room_id} without a disclosure for that room")


def audience_in(config: Config, room_id: str, members: frozenset[str] | None,
                links: LinkView | None = None) -> Audience:
    """Who reads `room_id`, given its members as the Matrix client knows them. A post's
    room that was upgraded still stands for its post (`Config.with_room_replacements`); a
    link room stands for the partner bot and the posts it published (`links`; without
    them, the configured links with no directory: the partner sees nothing yet)."""
    links = links if links is not None else LinkView(links=tuple(config.links))
    link = links.link_for_room(room_id)
    if link is not None:
        partner_posts = [post.id for post in links.partner_posts().values()
                         if post.room == room_id]
        return link_audience(room_id, partner_posts, link.max_tlp)
    post = config.post_by_room(room_id)
    if post is not None:
        readers = (members or frozenset()) - {config.bot.user_id}
        red_cleared = (room_id in config.handling.red_cleared_rooms and bool(readers)
                       and readers <= set(post.officers) | set(post.supervisors))
        return Audience(room_id, AudienceKind.POST, post=post.id, red_cleared=red_cleared)
    return room_audience(room_id, posts=config.posts, members=members,
                         bot_user_id=config.bot.user_id, admins=config.access.admins,
                         admins_room=config.access.admins_room)


async def case_parties(conn: aiosqlite.Connection, case: Case) -> CaseParties:
    """What the visibility of `case` depends on: its TLP, origin and target posts."""
    delivered = await cases.deliveries(conn, case.id)
    return CaseParties(ref=case.ref, tlp=case.tlp, origin=case.origin_post,
                       targets=frozenset(delivery.post for delivery in delivered))


async def case_disclosure(conn: aiosqlite.Connection, config: Config, audience: Audience,
                          case: Case, *, needed: Detail = Detail.PARTICIPANT,
                          escalation: bool = False) -> Disclosure | None:
    """`commands.audience.disclose` for a stored case."""
    posts = {post.id: post for post in config.posts}
    return disclose(audience, await case_parties(conn, case), posts, needed=needed,
                    escalation=escalation)
