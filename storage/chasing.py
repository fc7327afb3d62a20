"""Chases in SQLite: the planned steps of every delivery, and supervisors' direct rooms.

The database is the source of truth for every deadline: a delivery's steps are
written once, when its chase is planned, each with its due time; firing a step
marks it fired in the same transaction that queues its messages in the outbox, so
a step fires once or not at all, whatever the process does in between. The
scheduler in `bot.chaser` only wakes the bot for the next due time read from here.

The functions take a connection inside the caller's transaction
(`Database.transaction()`, or `Database.read()` for the read-only ones).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from liaison.commands.chase_policy import ChasePolicies
from liaison.commands.chasing import Action, ChaseSubject, Phase, PlannedStep
from liaison.commands.model import Priority
from liaison.commands.report import PostReport, ReportDelivery, build_report
from liaison.storage.db import changes, dump_json, fetch_one


@dataclass(frozen=True)
class SentMessage:
    """One message a fired step queued: the room, its outbox txn id, and the post whose
    language and time zone it was written in (None: English, UTC)."""

    room_id: str
    txn_id: str
    reader: str | None


@dataclass(frozen=True)
class ChasedDelivery:
    """A delivery as the chase sees it: the case, the target post and the facts that
    decide what may still fire."""

    delivery_id: int
    case_id: int
    case_ref: str
    origin_post: str
    post: str
    room_id: str
    subject: ChaseSubject


@dataclass(frozen=True)
class StepRecord:
    """One stored step and where it stands."""

    id: int
    delivery: ChasedDelivery
    step: PlannedStep
    state: str
    done_ms: int | None
    late: bool
    sent: tuple[SentMessage, ...]
    taken_notified_ms: int | None


_DELIVERY_COLUMNS = (
    "d.id, d.case_id, c.ref, c.origin_post, d.post, d.room_id, c.kind, c.priority,"
    " d.routed_ms, COALESCE(d.due_ms, c.due_ms), d.acknowledged_ms,"
    " COALESCE(d.answered_ms, d.refused_ms), c.state"
)
_STEP_COLUMNS = (
    "s.id, s.step, s.phase, s.action, s.targets, s.due_ms, s.state, s.done_ms, s.late,"
    f" s.sent, s.taken_notified_ms, {_DELIVERY_COLUMNS}"
)
_STEP_SELECT = (
    f"SELECT {_STEP_COLUMNS}"
    " FROM chase_steps s JOIN deliveries d ON d.id = s.delivery_id"
    " JOIN cases c ON c.id = d.case_id"
)


def _delivery(row: Sequence[Any]) -> ChasedDelivery:
    return ChasedDelivery(
        delivery_id=row[0], case_id=row[1], case_ref=row[2], origin_post=row[3], post=row[4],
        room_id=row[5],
        subject=ChaseSubject(kind=row[6], priority=Priority(row[7]), routed_ms=row[8],
                             due_ms=row[9], acknowledged_ms=row[10], answered_ms=row[11],
                             case_state=row[12]),
    )


def _step(row: aiosqlite.Row) -> StepRecord:
    return StepRecord(
        id=row[0],
        step=PlannedStep(key=row[1], phase=Phase(row[2]), action=Action(row[3]),
                         due_ms=row[5], targets=tuple(json.loads(row[4]))),
        state=row[6], done_ms=row[7], late=bool(row[8]),
        sent=tuple(SentMessage(item["room"], item["txn"], item.get("reader"))
                   for item in json.loads(row[9])),
        taken_notified_ms=row[10],
        delivery=_delivery(tuple(row)[11:]),
    )



# --- planning ---------------------------------------------------------------------------


async def unplanned_deliveries(conn: aiosqlite.Connection, *, delivery_id: int | None = None,
                               limit: int = 500, after_id: int = 0) -> list[ChasedDelivery]:
    """Deliveries of open cases (or just `delivery_id`) whose chase is not planned yet,
    oldest first; only those after `after_id` (everything before it was looked at)."""
    only = "" if delivery_id is None else " AND d.id = ?"
    rows = await conn.execute_fetchall(
        f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d JOIN cases c ON c.id = d.case_id"
        " WHERE d.id > ? AND c.state = 'open'"
        f" AND NOT EXISTS (SELECT 1 FROM chase_plans p WHERE p.delivery_id = d.id){only}"
        " ORDER BY d.id LIMIT ?",
        (after_id, limit) if delivery_id is None else (after_id, delivery_id, limit),
    )
    return [_delivery(tuple(row)) for row in rows]


async def last_delivery_id(conn: aiosqlite.Connection) -> int:
    """The highest delivery id so far (0 for none)."""
    row = await fetch_one(conn, "SELECT COALESCE(MAX(id), 0) FROM deliveries")
    return int(row[0]) if row is not None else 0


TAKEN_KINDS = ("acknowledged", "answered", "closed", "cancelled", "redacted", "declined")


# CROSS JOIN fixes the order: from the few new timeline entries to their cases' steps (by
# the unique indexes on deliveries.case_id and chase_steps.delivery_id), never through
# every pending step, which SQLite's planner otherwise prefers; the unary + keeps it from
# looking the steps up by their state index instead of their delivery.
TAKEN_STEPS_SQL = (
    f"SELECT {_STEP_COLUMNS} FROM (SELECT DISTINCT case_id FROM timeline"
    " WHERE id > ? AND id <= ? AND kind IN ("
    + ", ".join(f"'{kind}'" for kind in TAKEN_KINDS) + ")) t"
    " CROSS JOIN deliveries d ON d.case_id = t.case_id"
    " CROSS JOIN chase_steps s ON s.delivery_id = d.id"
    " JOIN cases c ON c.id = d.case_id"
    " WHERE +s.state = 'pending' ORDER BY s.due_ms, s.id"
)


async def pending_steps_of_taken(conn: aiosqlite.Connection, *, after_timeline_id: int
                                 ) -> tuple[list[StepRecord], int]:
    """Pending steps of cases whose timeline says something was taken (acknowledged,
    answered, closed, cancelled, withdrawn) after `after_timeline_id`, and the timeline id
    read up to: the candidates `phase_live` decides on, found without scanning every step."""
    row = await fetch_one(conn, "SELECT COALESCE(MAX(id), 0) FROM timeline")
    upto = int(row[0]) if row is not None else 0
    rows = await conn.execute_fetchall(TAKEN_STEPS_SQL, (after_timeline_id, upto))
    return [_step(row) for row in rows], upto


async def save_plan(conn: aiosqlite.Connection, delivery_id: int, steps: Iterable[PlannedStep],
                    *, now_ms: int) -> None:
    """Store a delivery's planned steps; raises IntegrityError if it was planned before."""
    await conn.execute("INSERT INTO chase_plans (delivery_id, planned_ms) VALUES (?, ?)",
                       (delivery_id, now_ms))
    await conn.executemany(
        "INSERT INTO chase_steps (delivery_id, step, phase, action, targets, due_ms)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(delivery_id, step.key, step.phase.value, step.action.value, dump_json(list(step.targets)),
          step.due_ms) for step in steps],
    )


# --- pending steps ----------------------------------------------------------------------


async def pending_steps(conn: aiosqlite.Connection, *, due_by_ms: int | None = None
                        ) -> list[StepRecord]:
    """Pending steps (only those due by `due_by_ms` when given), earliest first."""
    condition = "s.state = 'pending'"
    values: tuple[int, ...] = ()
    if due_by_ms is not None:
        condition, values = "s.state = 'pending' AND s.due_ms <= ?", (due_by_ms,)
    rows = await conn.execute_fetchall(
        f"{_STEP_SELECT} WHERE {condition} ORDER BY s.due_ms, s.id", values)
    return [_step(row) for row in rows]


async def steps_of(conn: aiosqlite.Connection, delivery_id: int) -> list[StepRecord]:
    """Every step of one delivery, in firing order."""
    rows = await conn.execute_fetchall(
        f"{_STEP_SELECT} WHERE s.delivery_id = ? ORDER BY s.due_ms, s.id", (delivery_id,))
    return [_step(row) for row in rows]


async def step_by_id(conn: aiosqlite.Connection, step_id: int) -> StepRecord | None:
    row = await fetch_one(conn, f"{_STEP_SELECT} WHERE s.id = ?", (step_id,))
    return None if row is None else _step(row)


async def pending_count(conn: aiosqlite.Connection) -> int:
    """How many reminders and escalations are still to fire (one log line at shutdown)."""
    row = await fetch_one(conn, "SELECT COUNT(*) FROM chase_steps WHERE state = 'pending'")
    return 0 if row is None else int(row[0])


async def next_due_ms(conn: aiosqlite.Connection, *, after_ms: int | None = None) -> int | None:
    """When the earliest pending step (due after `after_ms`, when given) falls due; None
    when there is none."""
    row = await fetch_one(
        conn,
        "SELECT MIN(due_ms) FROM chase_steps WHERE state = 'pending' AND due_ms > ?",
        (-1 if after_ms is None else after_ms,),
    )
    return None if row is None or row[0] is None else int(row[0])


async def mark_fired(conn: aiosqlite.Connection, step_id: int, *, now_ms: int, late: bool,
                     sent: Sequence[SentMessage]) -> bool:
    """Record that the step fired and what it queued; False if it was no longer pending."""
    return await changes(
        conn,
        "UPDATE chase_steps SET state = 'fired', done_ms = ?, late = ?, sent = ?"
        " WHERE id = ? AND state = 'pending'",
        (now_ms, int(late), dump_json([{"room": message.room_id, "txn": message.txn_id,
                                    "reader": message.reader} for message in sent]), step_id),
    ) == 1


async def stop_steps(conn: aiosqlite.Connection, step_ids: Iterable[int], *, now_ms: int) -> int:
    """Stop pending steps whose phase was taken; how many were stopped."""
    stopped = 0
    for step_id in step_ids:
        stopped += await changes(
            conn, "UPDATE chase_steps SET state = 'stopped', done_ms = ?"
                  " WHERE id = ? AND state = 'pending'", (now_ms, step_id))
    return stopped


async def reschedule(conn: aiosqlite.Connection, due: Mapping[int, int]) -> None:
    """Move pending steps (by id) to new due times (a snooze)."""
    await conn.executemany(
        "UPDATE chase_steps SET due_ms = ? WHERE id = ? AND state = 'pending'",
        [(due_ms, step_id) for step_id, due_ms in due.items()],
    )


# --- telling supervisors a case was taken -----------------------------------------------


async def untold_escalations(conn: aiosqlite.Connection) -> list[StepRecord]:
    """Fired escalations whose rooms have not been told the case was taken (the caller
    decides which of them are taken now)."""
    rows = await conn.execute_fetchall(
        f"{_STEP_SELECT} WHERE s.state = 'fired' AND s.action = 'escalate'"
        " AND s.taken_notified_ms IS NULL AND s.sent != '[]' ORDER BY s.delivery_id, s.id")
    return [_step(row) for row in rows]


async def mark_taken_notified(conn: aiosqlite.Connection, step_ids: Iterable[int], *,
                              now_ms: int) -> None:
    await conn.executemany(
        "UPDATE chase_steps SET taken_notified_ms = ? WHERE id = ? AND taken_notified_ms IS NULL",
        [(now_ms, step_id) for step_id in step_ids],
    )


# --- supervisors' views -----------------------------------------------------------------


async def _rows_touching(conn: aiosqlite.Connection, posts: Iterable[str], query: str,
                         values: Sequence[object], order: str) -> Iterable[aiosqlite.Row]:
    """The rows of `query` (a SELECT over deliveries `d` joined to cases `c`, ending in its
    WHERE conditions) about deliveries to or from one of `posts`, in `order`; none without
    posts."""
    wanted = sorted(set(posts))
    if not wanted:
        return []
    marks = ", ".join("?" for _ in wanted)
    return await conn.execute_fetchall(
        f"{query} AND (d.post IN ({marks}) OR c.origin_post IN ({marks})) ORDER BY {order}",
        (*values, *wanted, *wanted),
    )


async def fired_escalations(conn: aiosqlite.Connection, *, posts: Iterable[str]
                            ) -> list[StepRecord]:
    """Fired escalations of open cases delivered to or sent by `posts`, oldest first."""
    rows = await _rows_touching(
        conn, posts,
        f"{_STEP_SELECT} WHERE s.state = 'fired' AND s.action = 'escalate' AND c.state = 'open'",
        (), "s.delivery_id, s.done_ms, s.id")
    return [_step(row) for row in rows]


async def report_deliveries(conn: aiosqlite.Connection, *, since_ms: int,
                            posts: Iterable[str]) -> list[ReportDelivery]:
    """Deliveries to or from `posts` that were routed since `since_ms` or are still open
    (an open one may be overdue now, however old)."""
    rows = await _rows_touching(
        conn, posts,
        f"SELECT {_DELIVERY_COLUMNS},"
        # Escalations this bot fired, and those a partner bot fired for a post behind a
        # link and told as a case event (`handlers.links`: timeline, at_partner).
        " (SELECT json_group_array(fired.ms) FROM ("
        "   SELECT s.done_ms AS ms FROM chase_steps s WHERE s.delivery_id = d.id"
        "   AND s.action = 'escalate' AND s.state = 'fired'"
        "   UNION ALL SELECT t.ms FROM timeline t WHERE t.case_id = d.case_id"
        "   AND t.post = d.post AND t.kind = 'escalated'"
        "   AND json_extract(t.detail, '$.at_partner') = 1) AS fired), c.deadline_class"
        " FROM deliveries d JOIN cases c ON c.id = d.case_id"
        " WHERE (d.routed_ms >= ? OR c.state = 'open')",
        (since_ms,), "d.id")
    found = []
    for row in rows:
        delivery = _delivery(tuple(row))
        found.append(ReportDelivery(
            post=delivery.post, origin_post=delivery.origin_post, subject=delivery.subject,
            escalations=tuple(int(ms) for ms in json.loads(row[13]) if ms is not None),
            deadline_class=row[14]))
    return found



async def cases_sent(conn: aiosqlite.Connection, *, since_ms: int, posts: Iterable[str],
                     until_ms: int) -> dict[str, int]:
    """How many cases each of `posts` sent from `since_ms` up to `until_ms` (routed or
    not)."""
    wanted = sorted(set(posts))
    if not wanted:
        return {}
    marks = ", ".join("?" for _ in wanted)
    rows = await conn.execute_fetchall(
        f"SELECT origin_post, COUNT(*) FROM cases WHERE origin_post IN ({marks})"
        " AND created_ms >= ? AND created_ms <= ? GROUP BY origin_post",
        (*wanted, since_ms, until_ms),
    )
    return {str(row[0]): int(row[1]) for row in rows}


async def post_reports(conn: aiosqlite.Connection, posts: Sequence[str], *,
                       policies: ChasePolicies, since_ms: int, now_ms: int
                       ) -> list[PostReport]:
    """The figures of `!report` and `liaison stats`: one `PostReport` per post, in the
    order given, over the period from `since_ms` to `now_ms`."""
    deliveries = await report_deliveries(conn, since_ms=since_ms, posts=posts)
    sent = await cases_sent(conn, since_ms=since_ms, posts=posts, until_ms=now_ms)
    return build_report(posts, deliveries, sent=sent, policies=policies, since_ms=since_ms,
                        now_ms=now_ms)
