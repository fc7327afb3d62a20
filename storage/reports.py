"""Scheduled reports in SQLite: when each schedule was first seen, and which report slots
(one room, one period) were claimed — the truth that makes each go out once.

A slot is claimed in the same transaction that queues its messages in the outbox, so a
crash leaves it either unclaimed with nothing queued (it is sent at the next start) or
claimed with its messages queued (the outbox sends them) — never both or neither. The
functions take a connection inside the caller's transaction.
"""

from __future__ import annotations

import aiosqlite

from liaison.storage.db import changes, fetch_one


async def first_seen(conn: aiosqlite.Connection, schedule: str, *, now_ms: int) -> int:
    """When `schedule` was first seen; recorded as `now_ms` if this is the first time."""
    await conn.execute(
        "INSERT INTO report_schedules (schedule, first_seen_ms) VALUES (?, ?)"
        " ON CONFLICT (schedule) DO NOTHING", (schedule, now_ms))
    row = await fetch_one(conn, "SELECT first_seen_ms FROM report_schedules WHERE schedule = ?",
                          (schedule,))
    if row is None:
        raise RuntimeError("SQLite lost a report schedule it just stored")
    return int(row[0])


async def last_slot_ms(conn: aiosqlite.Connection, schedule: str) -> int | None:
    """The end of the latest period of `schedule` claimed so far (sent or skipped)."""
    row = await fetch_one(conn, "SELECT MAX(until_ms) FROM report_slots WHERE schedule = ?",
                          (schedule,))
    return None if row is None or row[0] is None else int(row[0])


async def claim_slot(conn: aiosqlite.Connection, *, room_id: str, since_ms: int, until_ms: int,
                     schedule: str, skipped: bool = False, late: bool = False,
                     now_ms: int) -> bool:
    """Claim the slot of `schedule` ending at `until_ms` (its report of `room_id` over
    `since_ms`..`until_ms`); False when it was claimed before. Two schedules for the same
    room and time (different posts) each have their own slot."""
    return await changes(
        conn,
        "INSERT INTO report_slots (room_id, since_ms, until_ms, schedule, state, late,"
        " claimed_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (room_id, since_ms, until_ms, schedule, "skipped" if skipped else "queued", int(late),
         now_ms),
    ) == 1
