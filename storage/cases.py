"""Cases, their deliveries and their timeline in SQLite.

A case is numbered per origin country (`KZ-0042`) from `case_numbers`, so a
reference is never reused. Each delivery keeps the outbox `txn_id` of its relayed
message; the relayed event id is read from the outbox row once the message is
sent, which is how a reaction or a reply to that event finds its delivery
(`delivery_by_relayed_event`). Every change of state here also appends to the
case's timeline, in the same transaction, and every timeline entry to the audit log
(`record_case_event`), without its content.

The functions take a connection inside the caller's transaction
(`Database.transaction()`, or `Database.read()` for the read-only ones).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import aiosqlite

from liaison.commands.model import Priority, Tlp
from liaison.commands.records import Case as Case
from liaison.commands.records import CaseState as CaseState
from liaison.commands.records import Delivery as Delivery
from liaison.commands.records import DeliveryState as DeliveryState
from liaison.commands.records import NewCase as NewCase
from liaison.commands.records import Revision as Revision
from liaison.commands.records import TimelineEntry as TimelineEntry
from liaison.commands.records import TimelineKind as TimelineKind
from liaison.storage import audit
from liaison.storage.db import changes, dump_json, fetch_one

REF_DIGITS = 4
"""References are zero-padded to four digits (KZ-0042) and grow beyond 9999 as needed."""


_CASE_COLUMNS = (
    "id, ref, kind, origin_post, priority, tlp, category, grading, related_ref, fields, text,"
    " due_ms, state, forwardable, origin_room, origin_event_id, origin_sender, created_ms,"
    " closed_ms, closed_by, outcome, deadline_class, handling, handling_text, action"
)
_DELIVERY_SELECT = (
    "SELECT d.id, d.case_id, d.post, d.room_id, d.relay_txn_id, d.state, d.routed_ms,"
    " d.acknowledged_ms, d.acknowledged_by, d.answered_ms, d.answered_by,"
    " o.event_id, o.sent_ms, d.seen_ms, d.seen_by, d.due_ms, d.first_due_ms, d.refused_ms,"
    " d.refused_by, d.refusal_reason, d.recipient"
    " FROM deliveries d LEFT JOIN outbox o ON o.txn_id = d.relay_txn_id"
)


def _case(row: aiosqlite.Row) -> Case:
    return Case(
        id=row[0], ref=row[1], kind=row[2], origin_post=row[3], priority=Priority(row[4]),
        tlp=Tlp(row[5]), category=row[6], grading=row[7], related_ref=row[8],
        fields=tuple((str(key), str(value)) for key, value in json.loads(row[9])),
        text=row[10], due_ms=row[11], state=row[12], forwardable=bool(row[13]),
        origin_room=row[14], origin_event_id=row[15], origin_sender=row[16],
        created_ms=row[17], closed_ms=row[18], closed_by=row[19], outcome=row[20],
        deadline_class=row[21], handling=row[22], handling_text=row[23], action=row[24],
    )


def _delivery(row: aiosqlite.Row) -> Delivery:
    return Delivery(
        id=row[0], case_id=row[1], post=row[2], room_id=row[3], relay_txn_id=row[4],
        state=row[5], routed_ms=row[6], acknowledged_ms=row[7], acknowledged_by=row[8],
        answered_ms=row[9], answered_by=row[10], relayed_event_id=row[11], sent_ms=row[12],
        seen_ms=row[13], seen_by=row[14], due_ms=row[15], first_due_ms=row[16],
        refused_ms=row[17], refused_by=row[18], refusal_reason=row[19], recipient=row[20],
    )



def format_ref(country: str, number: int) -> str:
    """`KZ-0042`."""
    return f"{country}-{number:0{REF_DIGITS}d}"


async def _next_ref(conn: aiosqlite.Connection, country: str) -> str:
    row = await fetch_one(
        conn,
        "INSERT INTO case_numbers (country, last_number) VALUES (?, 1)"
        " ON CONFLICT (country) DO UPDATE SET last_number = last_number + 1"
        " RETURNING last_number",
        (country,),
    )
    if row is None:
        raise RuntimeError("SQLite returned no case number")
    return format_ref(country, int(row[0]))


async def create_case(conn: aiosqlite.Connection, new: NewCase, *,
                      ref: str | None = None) -> Case:
    """Store a case under the next reference of its origin country (or `ref`, a case that
    crossed a link keeping its origin's reference: `handlers.links`); the timeline says so."""
    ref = ref if ref is not None else await _next_ref(conn, new.origin_country)
    cursor = await conn.execute(
        "INSERT INTO cases (ref, kind, origin_post, priority, tlp, category, grading,"
        " related_ref, fields, text, due_ms, state, forwardable, origin_room, origin_event_id,"
        " origin_sender, created_ms, deadline_class, handling, handling_text, action)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (ref, new.kind, new.origin_post, new.priority.value, new.tlp.value, new.category,
         new.grading, new.related_ref, dump_json([list(pair) for pair in new.fields]), new.text,
         new.due_ms, int(new.forwardable), new.origin_room, new.origin_event_id,
         new.origin_sender, new.created_ms, new.deadline_class, new.handling,
         new.handling_text, new.action),
    )
    case_id = cursor.lastrowid
    if case_id is None:
        raise RuntimeError("SQLite returned no id for the case")
    await add_timeline(conn, case_id, TimelineKind.CREATED, post=new.origin_post,
                       actor=new.origin_sender, ms=new.created_ms)
    case = await case_by_id(conn, case_id)
    assert case is not None
    return case


async def case_by_id(conn: aiosqlite.Connection, case_id: int) -> Case | None:
    row = await fetch_one(conn, f"SELECT {_CASE_COLUMNS} FROM cases WHERE id = ?",
                          (case_id,))
    return None if row is None else _case(row)


async def case_by_ref(conn: aiosqlite.Connection, ref: str) -> Case | None:
    row = await fetch_one(conn, f"SELECT {_CASE_COLUMNS} FROM cases WHERE ref = ?",
                          (ref,))
    return None if row is None else _case(row)


async def case_opened_by(
    conn: aiosqlite.Connection, *, room_id: str, event_id: str
) -> Case | None:
    """The case whose `!alert`/`!request` message is `event_id` in `room_id`."""
    row = await fetch_one(
        conn,
        f"SELECT {_CASE_COLUMNS} FROM cases WHERE origin_room = ? AND origin_event_id = ?",
        (room_id, event_id),
    )
    return None if row is None else _case(row)


async def latest_case_by(
    conn: aiosqlite.Connection, *, room_id: str, sender: str, since_ms: int
) -> Case | None:
    """The newest case `sender` opened in `room_id` at or after `since_ms`."""
    row = await fetch_one(
        conn,
        f"SELECT {_CASE_COLUMNS} FROM cases WHERE origin_room = ? AND origin_sender = ?"
        " AND created_ms >= ? ORDER BY created_ms DESC, id DESC LIMIT 1",
        (room_id, sender, since_ms),
    )
    return None if row is None else _case(row)


async def case_for_event(
    conn: aiosqlite.Connection, *, room_id: str, event_id: str
) -> Case | None:
    """The case an event in `room_id` belongs to: the officer's own `!alert`/`!request`
    that opened it there, or a message the bot sent there about it (its outbox row).
    Only the database decides; nothing an event says about itself is believed."""
    columns = ", ".join(f"c.{name.strip()}" for name in _CASE_COLUMNS.split(","))
    row = await fetch_one(
        conn,
        f"SELECT {_CASE_COLUMNS} FROM cases WHERE origin_room = ? AND origin_event_id = ?"
        f" UNION ALL SELECT {columns} FROM outbox o JOIN cases c ON c.ref = o.case_ref"
        " WHERE o.event_id = ? AND o.room_id = ? LIMIT 1",
        (room_id, event_id, event_id, room_id),
    )
    return None if row is None else _case(row)


async def revise_case(
    conn: aiosqlite.Connection,
    case: Case,
    revision: Revision,
    *,
    post: str,
    by: str,
    now_ms: int,
    detail: Mapping[str, Any],
) -> None:
    """Store an edit of the case's details; the timeline says who edited what."""
    await conn.execute(
        "UPDATE cases SET fields = ?, text = ?, grading = ?, due_ms = ? WHERE id = ?",
        (dump_json([list(pair) for pair in revision.fields]), revision.text, revision.grading,
         revision.due_ms, case.id),
    )
    await add_timeline(conn, case.id, TimelineKind.EDITED, post=post, actor=by, ms=now_ms,
                       detail=detail)


async def add_delivery(
    conn: aiosqlite.Connection,
    case_id: int,
    *,
    post: str,
    room_id: str,
    relay_txn_id: str,
    now_ms: int,
    due_ms: int | None = None,
    recipient: str | None = None,
) -> Delivery:
    """Record that the case was queued for `post` as the outbox message `relay_txn_id`
    (`due_ms`: its own answer deadline; `recipient`: RED's named person)."""
    cursor = await conn.execute(
        "INSERT INTO deliveries (case_id, post, room_id, relay_txn_id, state, routed_ms,"
        " due_ms, first_due_ms, recipient) VALUES (?, ?, ?, ?, 'routed', ?, ?, ?, ?)",
        (case_id, post, room_id, relay_txn_id, now_ms, due_ms, due_ms, recipient),
    )
    delivery_id = cursor.lastrowid
    if delivery_id is None:
        raise RuntimeError("SQLite returned no id for the delivery")
    await add_timeline(conn, case_id, TimelineKind.ROUTED, post=post, ms=now_ms)
    delivery = await _delivery_where(conn, "d.id = ?", (delivery_id,))
    assert delivery is not None
    return delivery


async def deliveries(conn: aiosqlite.Connection, case_id: int) -> list[Delivery]:
    """The case's deliveries in the order they were routed."""
    rows = await conn.execute_fetchall(f"{_DELIVERY_SELECT} WHERE d.case_id = ? ORDER BY d.id",
                                       (case_id,))
    return [_delivery(row) for row in rows]


async def delivery_for(conn: aiosqlite.Connection, case_id: int, post: str) -> Delivery | None:
    return await _delivery_where(conn, "d.case_id = ? AND d.post = ?", (case_id, post))


async def delivery_by_relayed_event(
    conn: aiosqlite.Connection, event_id: str
) -> Delivery | None:
    """The delivery whose relayed message became `event_id` (a reaction's or reply's target)."""
    return await _delivery_where(conn, "o.event_id = ?", (event_id,))


async def _delivery_where(
    conn: aiosqlite.Connection, condition: str, values: Sequence[object]
) -> Delivery | None:
    row = await fetch_one(conn, f"{_DELIVERY_SELECT} WHERE {condition}", tuple(values))
    return None if row is None else _delivery(row)


async def acknowledge(
    conn: aiosqlite.Connection, delivery: Delivery, *, by: str, now_ms: int
) -> bool:
    """Mark the delivery acknowledged by `by`; False (and nothing stored) if it already was."""
    return await _mark_delivery(conn, delivery, TimelineKind.ACKNOWLEDGED, by=by, now_ms=now_ms)


async def mark_answered(
    conn: aiosqlite.Connection, delivery: Delivery, *, by: str, now_ms: int
) -> bool:
    """Mark the delivery answered (an answer acknowledges too); False if it already was."""
    return await _mark_delivery(conn, delivery, TimelineKind.ANSWERED, by=by, now_ms=now_ms)


_DELIVERY_MARKS: Mapping[TimelineKind, str] = {
    TimelineKind.ACKNOWLEDGED:
        "UPDATE deliveries SET acknowledged_ms = :now_ms, acknowledged_by = :by,"
        " state = CASE state WHEN 'routed' THEN 'acknowledged' ELSE state END"
        " WHERE id = :id AND acknowledged_ms IS NULL",
    TimelineKind.ANSWERED:
        "UPDATE deliveries SET state = 'answered', answered_ms = :now_ms, answered_by = :by,"
        " acknowledged_ms = COALESCE(acknowledged_ms, :now_ms),"
        " acknowledged_by = COALESCE(acknowledged_by, :by)"
        " WHERE id = :id AND answered_ms IS NULL",
}
"""How a delivery is marked with each of these timeline kinds: an update guarded by its
not being so already."""


async def _mark_delivery(conn: aiosqlite.Connection, delivery: Delivery, kind: TimelineKind,
                         *, by: str, now_ms: int) -> bool:
    """Mark the delivery `kind` by `by` (`_DELIVERY_MARKS`) and put that on the case's
    timeline; False (and nothing stored) if it already was."""
    marked = await changes(conn, _DELIVERY_MARKS[kind],
                           {"now_ms": now_ms, "by": by, "id": delivery.id})
    if marked != 1:
        return False
    await add_timeline(conn, delivery.case_id, kind, post=delivery.post, actor=by, ms=now_ms)
    return True


async def finish_case(
    conn: aiosqlite.Connection,
    case: Case,
    state: Literal["closed", "cancelled"],
    *,
    post: str,
    by: str,
    now_ms: int,
    outcome: str | None = None,
) -> bool:
    """Close or cancel an open case; False (and nothing stored) if it is no longer open."""
    changed = await changes(
        conn,
        "UPDATE cases SET state = ?, closed_ms = ?, closed_by = ?, outcome = ?"
        " WHERE id = ? AND state = 'open'",
        (state, now_ms, by, outcome or None, case.id),
    )
    if changed != 1:
        return False
    kind = TimelineKind.CLOSED if state == "closed" else TimelineKind.CANCELLED
    detail = {"outcome": outcome} if outcome else {}
    await add_timeline(conn, case.id, kind, post=post, actor=by, ms=now_ms, detail=detail)
    return True


async def add_timeline(
    conn: aiosqlite.Connection,
    case_id: int,
    kind: TimelineKind,
    *,
    ms: int,
    post: str | None = None,
    actor: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO timeline (case_id, kind, post, actor, ms, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (case_id, kind.value, post, actor, ms, dump_json(dict(detail or {}))),
    )
    await record_case_event(conn, case_id, kind, ms=ms, post=post, actor=actor, detail=detail)


RECORDED_KEYS = frozenset({"target", "reason", "detail", "event_id", "changes", "step",
                           "due_ms", "late", "rooms", "unreachable", "until_ms", "for",
                           "messages", "timeline_details", "sha256", "size", "mimetype",
                           "msgtype", "room_id", "shown", "level", "code", "new_due_ms",
                           "delay", "recipients", "handling", "action", "class", "entities"})
"""The timeline detail keys that hold ids, reasons and times, never what officers wrote
(an update's `text`, a closure's `outcome`): the audit log keeps only these, and so does
a case's timeline once the case is purged."""


def recordable(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a timeline detail that is not content (`RECORDED_KEYS`)."""
    return {key: value for key, value in (detail or {}).items() if key in RECORDED_KEYS}


async def record_case_event(
    conn: aiosqlite.Connection,
    case_id: int,
    kind: str,
    *,
    ms: int,
    post: str | None,
    actor: str | None,
    detail: Mapping[str, Any] | None,
) -> None:
    """Append a timeline entry to the audit log: its kind is the action, the room is the
    post's (its delivery's room, or the origin room), the detail only `recordable`."""
    row = await fetch_one(
        conn,
        "SELECT c.ref, c.kind, c.priority, c.tlp, c.category, c.origin_post, c.origin_room,"
        " (SELECT d.room_id FROM deliveries d WHERE d.case_id = c.id AND d.post = ?)"
        " FROM cases c WHERE c.id = ?",
        (post, case_id),
    )
    if row is None:
        raise LookupError(f"case {case_id} does not exist")
    recorded = recordable(detail)
    if post is not None:
        recorded["post"] = post
    if kind == TimelineKind.CREATED:
        recorded.update(kind=row[1], priority=row[2], tlp=row[3], category=row[4])
    room_id = row[7] if row[7] is not None else (row[6] if post == row[5] else None)
    if kind == TimelineKind.DISCLOSED:  # the room it was shown in
        room_id = recorded.get("room_id")
    await audit.append(conn, ts_ms=ms, actor=actor or audit.LIAISON, action=str(kind),
                       case_ref=row[0], room_id=room_id, detail=recorded)


async def mark_seen(conn: aiosqlite.Connection, room_id: str, event_id: str, reader: str, *,
                    now_ms: int) -> list[Delivery]:
    """A read receipt from `reader` on `event_id` in `room_id`: every delivery into that room
    relayed at or before that event and not seen yet is seen now (the timeline says so).
    The event is placed by when the bot sent it (its outbox row) or processed it; an event
    the bot does not know places nothing. Returns the deliveries marked."""
    row = await fetch_one(
        conn,
        "SELECT sent_ms FROM outbox WHERE event_id = ? AND room_id = ?"
        " UNION ALL SELECT processed_ms FROM processed_events WHERE event_id = ? AND room_id = ?",
        (event_id, room_id, event_id, room_id),
    )
    if row is None or row[0] is None:
        return []
    rows = await conn.execute_fetchall(
        f"{_DELIVERY_SELECT} WHERE d.room_id = ? AND d.seen_ms IS NULL AND o.sent_ms <= ?"
        " AND d.state = 'routed'",
        (room_id, row[0]),
    )
    marked = [_delivery(found) for found in rows]
    for delivery in marked:
        await conn.execute("UPDATE deliveries SET seen_ms = ?, seen_by = ? WHERE id = ?",
                           (now_ms, reader, delivery.id))
        await add_timeline(conn, delivery.case_id, TimelineKind.SEEN, ms=now_ms,
                           post=delivery.post, actor=reader)
    return marked


async def mark_delivery_seen(conn: aiosqlite.Connection, delivery: Delivery, *, reader: str,
                             now_ms: int) -> bool:
    """The delivery was seen by `reader` (told by a partner bot: `handlers.links`); False
    if it was seen already."""
    changed = await changes(conn, "UPDATE deliveries SET seen_ms = ?, seen_by = ?"
                            " WHERE id = ? AND seen_ms IS NULL", (now_ms, reader, delivery.id))
    if changed != 1:
        return False
    await add_timeline(conn, delivery.case_id, TimelineKind.SEEN, ms=now_ms,
                       post=delivery.post, actor=reader)
    return True


async def timeline(conn: aiosqlite.Connection, case_id: int) -> list[TimelineEntry]:
    """The case's history, oldest first."""
    rows = await conn.execute_fetchall(
        "SELECT id, case_id, kind, post, actor, ms, detail FROM timeline"
        " WHERE case_id = ? ORDER BY id",
        (case_id,),
    )
    return [TimelineEntry(id=row[0], case_id=row[1], kind=row[2], post=row[3], actor=row[4],
                          ms=row[5], detail=json.loads(row[6])) for row in rows]


async def open_cases_from(conn: aiosqlite.Connection, post: str) -> list[Case]:
    """Open cases the post sent, oldest first."""
    rows = await conn.execute_fetchall(
        f"SELECT {_CASE_COLUMNS} FROM cases WHERE origin_post = ? AND state = 'open'"
        " ORDER BY id",
        (post,),
    )
    return [_case(row) for row in rows]


async def open_cases_to(conn: aiosqlite.Connection, post: str) -> list[tuple[Case, Delivery]]:
    """Open cases delivered to the post, with the post's delivery, oldest first."""
    columns = ", ".join(f"c.{name.strip()}" for name in _CASE_COLUMNS.split(","))
    rows = await conn.execute_fetchall(
        f"SELECT {columns} FROM cases c JOIN deliveries d ON d.case_id = c.id"
        " WHERE d.post = ? AND c.state = 'open' ORDER BY c.id",
        (post,),
    )
    found = []
    for row in rows:
        case = _case(row)
        delivery = await delivery_for(conn, case.id, post)
        assert delivery is not None
        found.append((case, delivery))
    return found
