"""Incoming events: exactly-once command processing and events we cannot decrypt yet.

`claim_event` belongs in the same transaction as the command's effects, so a
crash keeps both or neither and a replayed sync finds the event already claimed.
Undecryptable events are kept until their keys arrive (then forgotten) so the
bot can ask for the keys and, if that fails, tell the sender. Updates to an
undecryptable event that is no longer stored are no-ops: it was decrypted meanwhile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from liaison.storage.db import changes, fetch_one


@dataclass(frozen=True)
class UndecryptableEvent:
    """An encrypted event waiting for its Megolm session key."""

    event_id: str
    room_id: str
    sender: str
    session_id: str
    source: dict[str, Any]
    received_ms: int
    attempts: int
    last_key_request_ms: int | None
    notified_ms: int | None


async def claim_event(
    conn: aiosqlite.Connection, *, event_id: str, room_id: str, now_ms: int
) -> bool:
    """Mark `event_id` processed; True only for the first claim, so act only then."""
    changed = await changes(
        conn,
        "INSERT OR IGNORE INTO processed_events (event_id, room_id, processed_ms) VALUES (?, ?, ?)",
        (event_id, room_id, now_ms),
    )
    return changed == 1


async def is_processed(conn: aiosqlite.Connection, event_id: str) -> bool:
    """True once `claim_event` has been committed for this event."""
    return await fetch_one(
        conn,
        "SELECT 1 FROM processed_events WHERE event_id = ?", (event_id,)
    ) is not None


async def save_undecryptable(
    conn: aiosqlite.Connection,
    *,
    event_id: str,
    room_id: str,
    sender: str,
    session_id: str,
    source: dict[str, Any],
    received_ms: int,
) -> bool:
    """Keep an event we could not decrypt; False if it was already kept."""
    changed = await changes(
        conn,
        "INSERT OR IGNORE INTO undecryptable_events"
        " (event_id, room_id, sender, session_id, source, received_ms, attempts)"
        " VALUES (?, ?, ?, ?, ?, ?, 0)",
        (
            event_id,
            room_id,
            sender,
            session_id,
            json.dumps(source, ensure_ascii=False, separators=(",", ":")),
            received_ms,
        ),
    )
    return changed == 1


async def list_undecryptable(conn: aiosqlite.Connection) -> list[UndecryptableEvent]:
    """Every kept undecryptable event, oldest first."""
    rows = await conn.execute_fetchall(
        "SELECT event_id, room_id, sender, session_id, source, received_ms, attempts,"
        " last_key_request_ms, notified_ms"
        " FROM undecryptable_events ORDER BY received_ms, event_id"
    )
    return [
        UndecryptableEvent(
            event_id=row[0],
            room_id=row[1],
            sender=row[2],
            session_id=row[3],
            source=json.loads(row[4]),
            received_ms=row[5],
            attempts=row[6],
            last_key_request_ms=row[7],
            notified_ms=row[8],
        )
        for row in rows
    ]


async def note_key_requested(conn: aiosqlite.Connection, event_id: str, *, now_ms: int) -> None:
    """Remember when we last asked other devices for this event's key."""
    await changes(
        conn,
        "UPDATE undecryptable_events SET last_key_request_ms = ? WHERE event_id = ?",
        (now_ms, event_id),
    )


async def note_attempt(conn: aiosqlite.Connection, event_id: str) -> None:
    """Count one more failed attempt to decrypt the event."""
    await changes(
        conn,
        "UPDATE undecryptable_events SET attempts = attempts + 1 WHERE event_id = ?",
        (event_id,),
    )


async def mark_notified(conn: aiosqlite.Connection, event_id: str, *, now_ms: int) -> None:
    """Record that the sender was told we cannot read the event; the first time is kept."""
    await changes(
        conn,
        "UPDATE undecryptable_events SET notified_ms = ?"
        " WHERE event_id = ? AND notified_ms IS NULL",
        (now_ms, event_id),
    )


async def forget_undecryptable(conn: aiosqlite.Connection, event_id: str) -> None:
    """Drop the event once it has been decrypted."""
    await changes(conn, "DELETE FROM undecryptable_events WHERE event_id = ?", (event_id,))
