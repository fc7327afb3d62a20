"""The outbox: every outgoing Matrix event is written here before it is sent.

A message keeps the transaction id it got at enqueue time, so resending it after
a crash or a homeserver outage never duplicates it. Messages to one room leave
in the order they were enqueued: a later message never overtakes an earlier
pending one, even while that one waits out a backoff — except informational
notices (`commands.notify.INFORMATIONAL`, a new device's notice), which wait until
nothing else is pending in their room, so an answer to a command never waits behind
one. `attempts` counts failed
send attempts. The functions take a connection inside the caller's transaction
(`Database.transaction()`, or `Database.read()` for the read-only ones).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from typing import Any

import aiosqlite

from liaison.commands.notify import INFORMATIONAL, OutboxKind, check_quiet
from liaison.storage.db import changes, dump_json, fetch_one

_COLUMNS = (
    "id, room_id, event_type, content, txn_id, state, attempts, next_attempt_ms, created_ms,"
    " sent_ms, event_id, last_error, kind, case_ref, failed_ms"
)

_LATER = ", ".join(f"'{kind.value}'" for kind in sorted(INFORMATIONAL))
# The head of each room's queue: its oldest pending message, informational notices
# (`commands.notify.INFORMATIONAL`) only once nothing else is pending there; every other
# message waits behind the head.
_ROOM_HEADS = (
    "SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY room_id"
    f" ORDER BY kind IN ({_LATER}), id) AS place FROM outbox WHERE state = 'pending')"
    " WHERE place = 1"
)


@dataclass(frozen=True)
class OutboxMessage:
    """One outgoing event and where it stands: pending, sent or failed."""

    id: int
    room_id: str
    event_type: str
    content: dict[str, Any]
    txn_id: str
    state: str
    attempts: int
    next_attempt_ms: int
    created_ms: int
    sent_ms: int | None
    event_id: str | None
    last_error: str | None
    kind: str
    case_ref: str | None
    failed_ms: int | None = None


@dataclass(frozen=True)
class OutboxStats:
    """What metrics report: queue depth, permanent failures, how long the oldest waits."""

    pending: int
    failed: int
    oldest_pending_age_ms: int | None


def _message(row: aiosqlite.Row) -> OutboxMessage:
    return OutboxMessage(
        id=row[0],
        room_id=row[1],
        event_type=row[2],
        content=json.loads(row[3]),
        txn_id=row[4],
        state=row[5],
        attempts=row[6],
        next_attempt_ms=row[7],
        created_ms=row[8],
        sent_ms=row[9],
        event_id=row[10],
        last_error=row[11],
        kind=row[12],
        case_ref=row[13],
        failed_ms=row[14],
    )



async def enqueue(
    conn: aiosqlite.Connection,
    *,
    room_id: str,
    event_type: str,
    content: dict[str, Any],
    now_ms: int,
    kind: OutboxKind = OutboxKind.REPLY,
    case_ref: str | None = None,
    txn_id: str | None = None,
    delay_ms: int = 0,
) -> OutboxMessage:
    """Queue an event for `room_id`, due at once (or `delay_ms` later); a duplicate `txn_id`
    raises IntegrityError, a quiet `kind` sent as `m.text` ValueError (`commands.notify`)."""
    kind = OutboxKind(kind)
    check_quiet(kind, content)
    message_txn_id = txn_id if txn_id is not None else f"liaison-{uuid.uuid4().hex}"
    stored = dump_json(content)
    cursor = await conn.execute(
        "INSERT INTO outbox (room_id, event_type, content, txn_id, state, attempts,"
        " next_attempt_ms, created_ms, kind, case_ref)"
        " VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
        (room_id, event_type, stored, message_txn_id, now_ms + delay_ms, now_ms, kind.value,
         case_ref),
    )
    message_id = cursor.lastrowid
    if message_id is None:
        raise RuntimeError("SQLite returned no id for the outbox row")
    return OutboxMessage(
        id=message_id,
        room_id=room_id,
        event_type=event_type,
        content=json.loads(stored),
        txn_id=message_txn_id,
        state="pending",
        attempts=0,
        next_attempt_ms=now_ms + delay_ms,
        created_ms=now_ms,
        sent_ms=None,
        event_id=None,
        last_error=None,
        kind=kind.value,
        case_ref=case_ref,
    )


async def next_batch(conn: aiosqlite.Connection, *, now_ms: int, limit: int) -> list[OutboxMessage]:
    """Room queue heads that are due, oldest first; at most one message per room."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    rows = await conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM outbox"
        f" WHERE id IN ({_ROOM_HEADS}) AND next_attempt_ms <= ?"
        " ORDER BY id LIMIT ?",
        (now_ms, limit),
    )
    return [_message(row) for row in rows]


async def mark_sent(
    conn: aiosqlite.Connection, message_id: int, *, event_id: str, now_ms: int
) -> None:
    """Record that the homeserver accepted the message as `event_id`."""
    await _update_pending(
        conn,
        message_id,
        "state = 'sent', sent_ms = ?, event_id = ?, last_error = NULL",
        (now_ms, event_id),
    )


async def replace_content(conn: aiosqlite.Connection, message: OutboxMessage,
                          content: dict[str, Any]) -> OutboxMessage:
    """Put `content` in place of a pending message's content — a render request (a report's
    chart) by what it was rendered to — keeping its transaction id, so whatever happens
    next, the same event is sent under the same id."""
    stored = dump_json(content)
    await _update_pending(conn, message.id, "content = ?", (stored,))
    return replace(message, content=json.loads(stored))


async def note_event_id(conn: aiosqlite.Connection, *, txn_id: str, event_id: str) -> bool:
    """Record the event id of a message whose echo came back through sync, identified by its
    transaction id, even before the send's own response is handled (`mark_sent` follows
    with the same id). An officer may react to a message that quickly; this lets the
    reaction find it. True when an unknown event id was recorded."""
    changed = await changes(
        conn,
        "UPDATE outbox SET event_id = ? WHERE txn_id = ? AND event_id IS NULL",
        (event_id, txn_id),
    )
    return changed == 1


async def mark_retry(
    conn: aiosqlite.Connection, message_id: int, *, error: str, next_attempt_ms: int
) -> None:
    """Count a failed attempt; the message and its room's queue wait until `next_attempt_ms`."""
    await _update_pending(
        conn,
        message_id,
        "attempts = attempts + 1, last_error = ?, next_attempt_ms = ?",
        (error, next_attempt_ms),
    )


async def mark_failed(
    conn: aiosqlite.Connection, message_id: int, *, error: str, now_ms: int
) -> None:
    """Give up on the message for good; the next message of its room becomes due."""
    await _update_pending(
        conn,
        message_id,
        "state = 'failed', attempts = attempts + 1, last_error = ?, failed_ms = ?",
        (error, now_ms),
    )


async def _update_pending(
    conn: aiosqlite.Connection, message_id: int, assignments: str, values: tuple[Any, ...]
) -> None:
    changed = await changes(
        conn,
        f"UPDATE outbox SET {assignments} WHERE id = ? AND state = 'pending'",
        (*values, message_id),
    )
    if changed != 1:
        raise LookupError(f"outbox message {message_id} is not pending")


async def next_wakeup_ms(conn: aiosqlite.Connection) -> int | None:
    """When the worker next has something to send: the earliest due time among room heads.

    Messages queued behind a backing-off head are ignored: they cannot be sent
    before it, and counting them would wake the worker for nothing.
    """
    row = await fetch_one(
        conn,
        f"SELECT MIN(next_attempt_ms) FROM outbox WHERE id IN ({_ROOM_HEADS})"
    )
    return None if row is None or row[0] is None else int(row[0])


async def stats(conn: aiosqlite.Connection, *, now_ms: int) -> OutboxStats:
    """Pending and failed counts and the age of the oldest pending message."""
    row = await fetch_one(
        conn,
        "SELECT"
        " (SELECT COUNT(*) FROM outbox WHERE state = 'pending'),"
        " (SELECT COUNT(*) FROM outbox WHERE state = 'failed'),"
        " (SELECT MIN(created_ms) FROM outbox WHERE state = 'pending')"
    )
    if row is None:
        raise RuntimeError("SQLite returned no outbox statistics")
    pending, failed, oldest_created_ms = row
    age_ms = None if oldest_created_ms is None else max(0, now_ms - oldest_created_ms)
    return OutboxStats(pending=pending, failed=failed, oldest_pending_age_ms=age_ms)


async def get(conn: aiosqlite.Connection, message_id: int) -> OutboxMessage | None:
    """The message with this id, in whatever state, or None."""
    row = await fetch_one(conn, f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (message_id,))
    return None if row is None else _message(row)


async def pending(conn: aiosqlite.Connection) -> list[OutboxMessage]:
    """Every message not sent yet, oldest first."""
    rows = await conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' ORDER BY id")
    return [_message(row) for row in rows]
