"""The chase shell: plans every delivery's reminders and escalations, fires them once,
stops them when the case is taken and tells the supervisors who were pinged.

The database holds every step and its due time (`storage.chasing`); the decisions
are the pure functions of `commands.chasing`. APScheduler only wakes this loop: one
job for the next due step, re-armed after every round, and a periodic job that
picks up new deliveries and acknowledgements (the router also wakes it after every
command). A round:

1. plans the chase of each open delivery that has none (so no case code has to call
   in here: a delivery is planned within a round of being routed);
2. stops pending steps whose phase was taken (acknowledged, answered, closed);
3. tells the rooms a fired escalation reached that the case was taken;
4. fires every due step, each in one transaction that re-checks the delivery, queues
   the messages in the outbox under stable txn ids and marks the step fired. A step
   that fell due while the bot was down fires once now, marked late.

A crash anywhere leaves each step pending (fires next round) or fired with its
messages queued (the outbox sends them, a resend being a no-op) — never both or
neither.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

import aiosqlite
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from liaison.bot.clock import Clock
from liaison.bot.directory import Directory
from liaison.commands.audience import Detail, Disclosure
from liaison.commands.case_render import CASE_KEY, case_metadata
from liaison.commands.chase_render import render_escalation, render_reminder, render_taken
from liaison.commands.chasing import (
    Action,
    Phase,
    Recipient,
    answer_deadline_ms,
    direct_fallback,
    escalation_recipients,
    is_late,
    phase_live,
    plan_delivery,
    suggested_snooze,
    taken_reason,
)
from liaison.commands.links import CaseEventKind
from liaison.commands.model import Post
from liaison.commands.notify import OutboxKind, msgtype_for
from liaison.commands.records import Case, TimelineKind
from liaison.commands.render import Notice, notice_content
from liaison.config import Config
from liaison.handlers.context import audience_in, case_disclosure, require_disclosure
from liaison.handlers.links import tell_from_shell
from liaison.handlers.red import deliver_waiting, red_home, red_reader
from liaison.storage import cases, chasing, outbox
from liaison.storage.chasing import SentMessage, StepRecord
from liaison.storage.db import Database

log = logging.getLogger(__name__)

RETRY_MS = 2_000
"""When a step had to wait (a direct room being opened) or a round failed, look again."""
PLAN_BATCH = 500
"""Deliveries read for planning at a time."""
NEXT_JOB = "chase-next-due"
CHECK_JOB = "chase-check"


class Destinations(Protocol):
    """The Matrix side: which rooms the bot is in, and supervisors' direct rooms."""

    def joined_rooms(self) -> frozenset[str]: ...

    def members(self, room_id: str) -> frozenset[str] | None: ...

    async def direct_room(self, user_id: str) -> str | None: ...


class Fired(Enum):
    FIRED = "fired"
    STOPPED = "stopped"
    WAITING = "waiting"
    GONE = "gone"


def chase_content(notice: Notice, case: Case, *, about: str, step: str | None = None,
                  reply_to: str | None = None, msgtype: str = "m.notice") -> dict[str, Any]:
    """An m.notice (m.text when it must ring: `commands.notify`) with the case's
    machine-readable key (`about`: reminder, escalation, taken; `step`: which step),
    replying to the relayed case when given."""
    metadata: dict[str, Any] = {**case_metadata(case), "about": about}
    if step is not None:
        metadata["step"] = step
    extra: dict[str, Any] = {CASE_KEY: metadata}
    if reply_to is not None:
        extra["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    return notice_content(notice.text, notice.html, mentions=notice.mentions, extra=extra,
                          msgtype=msgtype)


class Chaser:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: Config,
        *,
        destinations: Destinations,
        wake_sender: Callable[[], None],
        ready: asyncio.Event | None = None,
        languages: Directory | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._config = config
        self._destinations = destinations
        self._wake_sender = wake_sender
        self._ready = ready
        self._posts: Mapping[str, Post] = {post.id: post for post in config.posts}
        self._languages = languages
        """Rooms' `!lang` choices: each round reads them again, so posts read their own."""
        self._wakeup = asyncio.Event()
        self._scheduler: Any = None
        self._planned_through = 0
        self._taken_through = 0
        self.started_ms = clock.now_ms()
        """Steps due before this instant fell due while the bot was not running."""

    def wake(self) -> None:
        """Look now (after a command: a new case, an acknowledgement, a snooze)."""
        self._wakeup.set()

    async def run(self) -> None:
        if self._ready is not None:
            await self._ready.wait()
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.start()
        every = self._config.chasing.check_every.total_seconds()
        self._scheduler.add_job(self._wake_job, IntervalTrigger(seconds=every), id=CHECK_JOB,
                                coalesce=True, max_instances=1)
        try:
            while True:
                self._wakeup.clear()
                try:
                    next_ms = await self.tick()
                except Exception:
                    log.exception("chase round failed; retrying")
                    next_ms = self._clock.now_ms() + RETRY_MS
                self._arm(next_ms)
                await self._wakeup.wait()
        finally:
            self._scheduler.shutdown(wait=False)

    async def _wake_job(self) -> None:
        self.wake()

    def _arm(self, at_ms: int | None) -> None:
        """One scheduler job, at the next due time; replaced after every round."""
        if at_ms is None:
            if self._scheduler.get_job(NEXT_JOB) is not None:
                self._scheduler.remove_job(NEXT_JOB)
            return
        self._scheduler.add_job(self._wake_job, DateTrigger(datetime.fromtimestamp(
            at_ms / 1000, UTC)), id=NEXT_JOB, replace_existing=True, misfire_grace_time=None)

    async def tick(self) -> int | None:
        """One round (see the module docstring); returns when the next one is due."""
        now = self._clock.now_ms()
        if self._languages is not None:
            await self._languages.refresh(self._db)
            self._posts = {post.id: post for post in self._languages.config.posts}
        more = True
        while more:  # a transaction per batch: the database lock is never held for long
            async with self._db.transaction() as conn:
                planned_through, more = await self._plan(conn, now)
            self._planned_through = planned_through  # only once committed
        async with self._db.transaction() as conn:
            taken_through = await self._stop_taken(conn, now)
            told = await self._tell_taken(conn, now)
        self._taken_through = taken_through
        red_queued, red_waiting = await deliver_waiting(
            self._db, self._config, self._destinations, self._clock)  # TLP:RED DMs
        async with self._db.read() as conn:
            due = await chasing.pending_steps(conn, due_by_ms=now)
        retry_at: int | None = None
        fired = 0
        for record in due:
            try:
                outcome = await self._fire(record)
            except Exception:  # one broken step must not hold up the others
                log.exception("chase step failed; will retry",
                              extra={"step_id": record.id, "case_ref": record.delivery.case_ref})
                outcome = Fired.WAITING
            if outcome is Fired.FIRED:
                fired += 1
            elif outcome is Fired.WAITING:
                retry_at = now + RETRY_MS
        if told or fired or red_queued:
            self._wake_sender()
        async with self._db.read() as conn:
            next_due = await chasing.next_due_ms(conn, after_ms=now)
        if red_waiting:
            retry_at = now + RETRY_MS
        candidates = [ms for ms in (next_due, retry_at) if ms is not None]
        return min(candidates) if candidates else None

    # --- planning and stopping ----------------------------------------------------------

    async def _plan(self, conn: aiosqlite.Connection, now: int) -> tuple[int, bool]:
        """Plan the next batch of new deliveries; the delivery id planned through once
        this transaction commits, and whether more may be waiting."""
        upto = await chasing.last_delivery_id(conn)
        through = self._planned_through
        found = await chasing.unplanned_deliveries(conn, after_id=through, limit=PLAN_BATCH)
        link_rooms = {link.room for link in self._config.links}
        for delivery in found:
            through = delivery.delivery_id
            if delivery.room_id in link_rooms:  # the partner's bot chases it (docs/links.md)
                await chasing.save_plan(conn, delivery.delivery_id, (), now_ms=now)
                continue
            try:
                steps = plan_delivery(delivery.subject, self._posts.get(delivery.post),
                                      self._config.chasing.policies)
            except Exception:  # one bad delivery must not stop every other from being chased
                log.exception("chase could not be planned for a delivery",
                              extra={"case_ref": delivery.case_ref, "post": delivery.post})
                continue
            await chasing.save_plan(conn, delivery.delivery_id, steps, now_ms=now)
        if len(found) < PLAN_BATCH:  # every delivery up to `upto` has been looked at
            return max(through, upto), False
        return through, True

    async def _stop_taken(self, conn: aiosqlite.Connection, now: int) -> int:
        """Stop what was taken since the last round; the timeline id read up to."""
        pending, taken_through = await chasing.pending_steps_of_taken(
            conn, after_timeline_id=self._taken_through)
        await chasing.stop_steps(conn, [record.id for record in pending if not phase_live(
            record.step.phase, record.delivery.subject)], now_ms=now)
        return taken_through

    async def _tell_taken(self, conn: aiosqlite.Connection, now: int) -> int:
        """Tell each room a fired escalation reached that its case was taken; how many
        messages were queued."""
        groups: dict[tuple[int, Phase], list[StepRecord]] = {}
        for record in await chasing.untold_escalations(conn):
            groups.setdefault((record.delivery.delivery_id, record.step.phase), []).append(record)
        queued = 0
        for (_, phase), records in groups.items():
            first = records[0]
            reason = taken_reason(phase, first.delivery.subject)
            if reason is None:
                continue
            case = await cases.case_by_id(conn, first.delivery.case_id)
            if case is None:
                continue
            delivery = await cases.delivery_for(conn, case.id, first.delivery.post)
            rooms = {message.room_id: message.reader for record in records
                     for message in record.sent}
            for index, (room_id, reader) in enumerate(rooms.items()):
                disclosure = await self._disclosure(conn, room_id, case, escalation=True)
                if disclosure is None:
                    continue
                notice = render_taken(case, reason, delivery, posts=self._posts,
                                      reader=self._posts.get(reader or ""))
                require_disclosure(OutboxKind.CHASE_TAKEN, room_id, case.ref, disclosure)
                msgtype = msgtype_for(OutboxKind.CHASE_TAKEN, priority=case.priority,
                                      post=reader, settings=self._config.notifications)
                await outbox.enqueue(
                    conn, room_id=room_id, event_type="m.room.message",
                    content=chase_content(notice, case, about="taken", msgtype=msgtype),
                    now_ms=now, kind=OutboxKind.CHASE_TAKEN, case_ref=case.ref,
                    txn_id=f"liaison-chase-taken-{first.id}-{index}")
                queued += 1
            await chasing.mark_taken_notified(conn, [record.id for record in records],
                                              now_ms=now)
        return queued

    # --- firing -------------------------------------------------------------------------

    async def _fire(self, record: StepRecord) -> Fired:
        """Fire one due step: resolve where it goes (opening direct rooms outside any
        transaction), then queue and record it in one transaction."""
        step, delivery = record.step, record.delivery
        if not phase_live(step.phase, delivery.subject):
            return await self._stop(record)
        destinations: list[tuple[str, Recipient | None]] = [(delivery.room_id, None)]
        unreachable: list[str] = []
        if step.action is Action.ESCALATE:
            destinations, waiting = await self._escalation_destinations(record)
            # Until every supervisor reached by direct message has joined it, or the wait
            # is over (the step's due time is in the database: a restart waits no longer).
            wait_ms = int(self._config.chasing.direct_room_wait.total_seconds() * 1000)
            if waiting and self._clock.now_ms() - step.due_ms < wait_ms:
                return Fired.WAITING
            unreachable = [recipient.user_id for recipient in waiting if recipient.user_id]
            destinations += self._fallbacks(waiting, destinations)
        async with self._db.transaction() as conn:
            fresh = await chasing.step_by_id(conn, record.id)
            if fresh is None or fresh.state != "pending":
                return Fired.GONE
            if not phase_live(fresh.step.phase, fresh.delivery.subject):
                await chasing.stop_steps(conn, [record.id], now_ms=self._clock.now_ms())
                return Fired.STOPPED
            case = await cases.case_by_id(conn, delivery.case_id)
            relayed = await cases.delivery_for(conn, delivery.case_id, delivery.post)
            if case is None:
                return Fired.GONE
            now = self._clock.now_ms()
            late = is_late(fresh.step.due_ms, now, self.started_ms)
            sent = []
            withheld = []
            for index, (room_id, recipient) in enumerate(destinations):
                disclosure = await self._disclosure(conn, room_id, case,
                                                    escalation=recipient is not None)
                if disclosure is None:
                    withheld.append(room_id)
                    continue
                if recipient is not None:  # what the case says only to those who may read it
                    recipient = replace(recipient,
                                        insider=disclosure.detail >= Detail.PARTICIPANT)
                notice, reader = self._render(fresh, case, recipient, now=now, late=late)
                reply_to = relayed.relayed_event_id if relayed and recipient is None else None
                txn_id = f"liaison-chase-{record.id}-{index}"
                kind = _outbox_kind(step.action)
                require_disclosure(kind, room_id, case.ref, disclosure)
                msgtype = msgtype_for(kind, priority=case.priority, post=reader,
                                      settings=self._config.notifications)
                await outbox.enqueue(
                    conn, room_id=room_id, event_type="m.room.message", now_ms=now,
                    content=chase_content(notice, case, about=_about(step.action),
                                          step=step.key, reply_to=reply_to, msgtype=msgtype),
                    kind=kind, case_ref=case.ref, txn_id=txn_id)
                sent.append(SentMessage(room_id, txn_id, reader))
            await chasing.mark_fired(conn, record.id, now_ms=now, late=late, sent=sent)
            detail: dict[str, Any] = {"step": step.key, "due_ms": fresh.step.due_ms,
                                      "late": late, "rooms": [m.room_id for m in sent]}
            if unreachable:
                detail["unreachable"] = unreachable
            if withheld:  # rooms whose readers may not see the case (TLP, audience)
                detail["withheld"] = withheld
            if sent or withheld:  # who was told, or kept out; to nobody: only logged
                await cases.add_timeline(conn, case.id, _timeline_kind(step.action), ms=now,
                                           post=delivery.post, detail=detail)
                await tell_from_shell(  # a case that came over a link: its origin's bot
                    conn, self._config.links, case.id, delivery.post, _link_event(step.action),
                    by=None, now_ms=now, unique=step.key)
        if unreachable:
            log.error("escalation sent without some supervisors: they did not join the "
                      "direct room in time", extra={"case_ref": case.ref, "users": unreachable})
        if not sent:
            log.warning("escalation reached nobody: no supervisors configured for it",
                        extra={"case_ref": case.ref, "step": step.key,
                               "targets": list(step.targets)})
        log.info("chase step fired", extra={"case_ref": case.ref, "step": step.key,
                                            "late": late, "rooms": len(destinations)})
        return Fired.FIRED

    async def _stop(self, record: StepRecord) -> Fired:
        async with self._db.transaction() as conn:
            await chasing.stop_steps(conn, [record.id], now_ms=self._clock.now_ms())
        return Fired.STOPPED

    def _fallbacks(self, waiting: list[Recipient], chosen: list[tuple[str, Recipient | None]]
                   ) -> list[tuple[str, Recipient | None]]:
        """The supervisors' rooms that stand in for direct rooms nobody joined, each once
        and only when not already a destination."""
        joined = self._destinations.joined_rooms()
        rooms = {room_id for room_id, _ in chosen}
        extra: list[tuple[str, Recipient | None]] = []
        for recipient in waiting:
            fallback = direct_fallback(recipient, joined)
            if fallback is not None and fallback.room_id not in rooms:
                assert fallback.room_id is not None
                rooms.add(fallback.room_id)
                extra.append((fallback.room_id, fallback))
        return extra

    async def _escalation_destinations(
        self, record: StepRecord
    ) -> tuple[list[tuple[str, Recipient | None]], list[Recipient]]:
        """(room, recipient) for each recipient that can be reached now, and the recipients
        whose direct room they have not joined yet."""
        delivery = record.delivery
        recipients = escalation_recipients(
            record.step.targets, origin=self._posts.get(delivery.origin_post),
            target=self._posts.get(delivery.post) or red_home(delivery.post, self._posts),
            posts=self._posts,
            regional_centre=self._config.chasing.regional_centre,
            joined_rooms=self._destinations.joined_rooms())
        recipients = await self._in_rooms_that_may_read(recipients, delivery.case_id)
        reachable: list[tuple[str, Recipient | None]] = []
        waiting: list[Recipient] = []
        for recipient in recipients:
            if recipient.room_id is not None:
                reachable.append((recipient.room_id, recipient))
                continue
            assert recipient.user_id is not None
            room_id = await self._destinations.direct_room(recipient.user_id)
            if room_id is None:
                waiting.append(recipient)
            else:
                reachable.append((room_id, recipient))
        return reachable, waiting

    async def _in_rooms_that_may_read(self, recipients: list[Recipient],
                                      case_id: int) -> list[Recipient]:
        """Supervisors whose supervisors' room may not read the case (someone else is in
        it: `commands.audience`) are reached each in a direct message instead, rather than
        told nothing."""
        async with self._db.read() as conn:
            case = await cases.case_by_id(conn, case_id)
            if case is None:
                return recipients
            chosen: list[Recipient] = []
            for recipient in recipients:
                reader = recipient.reader
                if (recipient.room_id is None or reader is None
                        or recipient.room_id != reader.supervisors_room
                        or await self._disclosure(conn, recipient.room_id, case,
                                                  escalation=False) is not None):
                    chosen.append(recipient)
                    continue
                log.warning("supervisors' room has readers who may not see the case; "
                            "its supervisors get direct messages",
                            extra={"room_id": recipient.room_id, "case_ref": case.ref})
                chosen += [Recipient(None, user, (user,), reader, True)
                           for user in recipient.mentions]
        return chosen

    async def _disclosure(self, conn: aiosqlite.Connection, room_id: str, case: Case, *,
                          escalation: bool) -> Disclosure | None:
        """What the readers of `room_id` may see of `case` (`commands.audience`); a reminder
        needs the case itself, an escalation at least its reference."""
        config = self._languages.config if self._languages is not None else self._config
        audience = audience_in(config, room_id, self._destinations.members(room_id))
        return await case_disclosure(
            conn, config, audience, case, escalation=escalation,
            needed=Detail.REFERENCE if escalation else Detail.PARTICIPANT)

    def _render(self, record: StepRecord, case: Case, recipient: Recipient | None, *,
                now: int, late: bool) -> tuple[Notice, str | None]:
        """The notice for one destination and the post whose language it is in."""
        step, delivery = record.step, record.delivery
        policy = self._config.chasing.policies.of(delivery.subject.priority)
        answer_due = answer_deadline_ms(delivery.subject, policy)
        if recipient is None:  # a RED delivery's person reads it as their post, mentioned
            target = self._posts.get(delivery.post) or red_reader(delivery.post, self._posts)
            return render_reminder(case, step.phase, due_ms=step.due_ms,
                                   answer_due_ms=answer_due, target=target, posts=self._posts,
                                   late=late, snooze=suggested_snooze(policy)), delivery.post
        notice = render_escalation(case, step.phase, recipient, target_post=delivery.post,
                                   routed_ms=delivery.subject.routed_ms, due_ms=step.due_ms,
                                   answer_due_ms=answer_due, now_ms=now, posts=self._posts,
                                   late=late)
        return notice, recipient.reader.id if recipient.reader is not None else None


def _about(action: Action) -> str:
    return "reminder" if action is Action.REMIND else "escalation"


def _link_event(action: Action) -> CaseEventKind:
    return CaseEventKind.REMINDED if action is Action.REMIND else CaseEventKind.ESCALATED


def _outbox_kind(action: Action) -> OutboxKind:
    return OutboxKind.CHASE_REMIND if action is Action.REMIND else OutboxKind.CHASE_ESCALATE


def _timeline_kind(action: Action) -> TimelineKind:
    return TimelineKind.REMINDED if action is Action.REMIND else TimelineKind.ESCALATED
