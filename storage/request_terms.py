"""Delays, refusals and permits in SQLite (issue 20; schema in 0012_request_terms.sql).

A delay moves one delivery's answer deadline and its pending answer-phase chase steps;
a refusal marks the delivery refused (the chase reads a refused delivery as taken, see
`storage.chasing`); a permit lets an H2 case go to one more post. Each also lands on the
case's timeline and so in the audit log (`storage.cases.add_timeline`).

The functions take a connection inside the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiosqlite

from liaison.commands.chasing import Phase, PlannedStep
from liaison.commands.records import Delivery, TimelineKind
from liaison.storage.cases import add_timeline, deliveries
from liaison.storage.db import changes


async def delay_delivery(conn: aiosqlite.Connection, delivery: Delivery, *, new_due_ms: int,
                         by: str, now_ms: int, detail: Mapping[str, Any]) -> None:
    """Move the delivery's answer deadline to `new_due_ms` (keeping the first one)."""
    await conn.execute(
        "UPDATE deliveries SET due_ms = ?, first_due_ms = COALESCE(first_due_ms, due_ms, ?)"
        " WHERE id = ?", (new_due_ms, delivery.due_ms, delivery.id))
    await add_timeline(conn, delivery.case_id, TimelineKind.DELAYED, ms=now_ms,
                       post=delivery.post, actor=by, detail=detail)


async def replan_answer(conn: aiosqlite.Connection, delivery_id: int,
                        steps: Iterable[PlannedStep], *, suffix: str) -> None:
    """Replace the delivery's pending answer-phase steps with `steps` (their keys get
    `suffix`, so they never clash with steps that already fired)."""
    await conn.execute(
        "DELETE FROM chase_steps WHERE delivery_id = ? AND phase = ? AND state = 'pending'",
        (delivery_id, Phase.ANSWER.value))
    await conn.executemany(
        "INSERT INTO chase_steps (delivery_id, step, phase, action, targets, due_ms)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(delivery_id, f"{step.key}.{suffix}", step.phase.value, step.action.value,
          json.dumps(list(step.targets)), step.due_ms)
         for step in steps if step.phase is Phase.ANSWER])


async def refuse_delivery(conn: aiosqlite.Connection, delivery: Delivery, *, reason: str,
                          by: str, now_ms: int, detail: Mapping[str, Any]) -> bool:
    """Mark the delivery refused; False (nothing stored) if it was answered or refused."""
    changed = await changes(
        conn,
        "UPDATE deliveries SET refused_ms = ?, refused_by = ?, refusal_reason = ?"
        " WHERE id = ? AND refused_ms IS NULL AND answered_ms IS NULL",
        (now_ms, by, reason, delivery.id))
    if changed != 1:
        return False
    await add_timeline(conn, delivery.case_id, TimelineKind.DECLINED, ms=now_ms,
                       post=delivery.post, actor=by, detail=detail)
    return True


async def permits(conn: aiosqlite.Connection, case_id: int) -> frozenset[str]:
    """The posts the originator permitted an H2 case to be passed on to."""
    rows = await conn.execute_fetchall("SELECT post FROM case_permits WHERE case_id = ?",
                                       (case_id,))
    return frozenset(str(row[0]) for row in rows)


async def add_permit(conn: aiosqlite.Connection, case_id: int, post: str, *, by: str,
                     now_ms: int, origin_post: str) -> bool:
    """Record a permit; False if the post was permitted already."""
    changed = await changes(
        conn,
        "INSERT INTO case_permits (case_id, post, permitted_by, permitted_ms)"
        " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", (case_id, post, by, now_ms))
    if changed != 1:
        return False
    await add_timeline(conn, case_id, TimelineKind.PERMITTED, ms=now_ms, post=origin_post,
                       actor=by, detail={"target": post})
    return True


async def delivery_in_room(conn: aiosqlite.Connection, case_id: int,
                           room_id: str) -> Delivery | None:
    """The case's delivery into `room_id` (a RED delivery's direct room)."""
    for delivery in await deliveries(conn, case_id):
        if delivery.room_id == room_id:
            return delivery
    return None


# --- TLP:RED: messages waiting for a direct room ------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """A message about a RED case for one person, until their direct room is ready."""

    txn_id: str
    user_id: str
    case_id: int
    kind: str
    content: dict[str, Any]


async def wait_for_direct_room(conn: aiosqlite.Connection, *, txn_id: str, user_id: str,
                               case_id: int, kind: str, content: Mapping[str, Any],
                               now_ms: int) -> None:
    await conn.execute(
        "INSERT INTO direct_waiting (txn_id, user_id, case_id, kind, content, created_ms)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (txn_id, user_id, case_id, kind, json.dumps(dict(content), ensure_ascii=False),
         now_ms))


async def waiting(conn: aiosqlite.Connection) -> list[Waiting]:
    """Unsent messages of open cases, oldest first."""
    rows = await conn.execute_fetchall(
        "SELECT w.txn_id, w.user_id, w.case_id, w.kind, w.content FROM direct_waiting w"
        " JOIN cases c ON c.id = w.case_id WHERE w.sent_ms IS NULL AND c.state = 'open'"
        " ORDER BY w.created_ms, w.txn_id")
    return [Waiting(row[0], row[1], row[2], row[3], json.loads(row[4])) for row in rows]


async def mark_waiting_sent(conn: aiosqlite.Connection, txn_id: str, *, room_id: str,
                            now_ms: int) -> bool:
    """The message went to the outbox (its content now lives there only); a RED relay's
    delivery learns its room. `room_id` "withheld": it never will (the content goes)."""
    changed = await changes(
        conn, "UPDATE direct_waiting SET sent_ms = ?, room_id = ?, content = '{}'"
              " WHERE txn_id = ? AND sent_ms IS NULL", (now_ms, room_id, txn_id))
    if changed != 1:
        return False
    if room_id != "withheld":
        await conn.execute("UPDATE deliveries SET room_id = ? WHERE relay_txn_id = ?",
                           (room_id, txn_id))
    return True
