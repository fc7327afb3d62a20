"""Small durable state: named values (the sync token) and what we know about rooms."""

from __future__ import annotations

from typing import Any

import aiosqlite

from liaison.storage.db import changes, fetch_one


async def get_value(conn: aiosqlite.Connection, key: str) -> str | None:
    """The value stored under `key`, or None."""
    row = await fetch_one(conn, "SELECT value FROM kv WHERE key = ?", (key,))
    return None if row is None else str(row[0])


async def set_value(conn: aiosqlite.Connection, key: str, value: str) -> None:
    """Store `value` under `key`, replacing any previous value."""
    await _execute(
        conn,
        "INSERT INTO kv (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


async def record_room_joined(conn: aiosqlite.Connection, *, room_id: str, joined_ms: int) -> int:
    """Note that the bot is in `room_id`; the first join time is kept and returned."""
    await _execute(
        conn,
        "INSERT INTO rooms (room_id, joined_ms) VALUES (?, ?) ON CONFLICT (room_id) DO NOTHING",
        (room_id, joined_ms),
    )
    stored = await room_joined_ms(conn, room_id)
    if stored is None:
        raise RuntimeError(f"room {room_id} vanished while recording the join")
    return stored


async def room_joined_ms(conn: aiosqlite.Connection, room_id: str) -> int | None:
    """When the bot first joined `room_id`, or None if it never did."""
    row = await fetch_one(conn, "SELECT joined_ms FROM rooms WHERE room_id = ?", (room_id,))
    return None if row is None else int(row[0])


async def mark_unencrypted_warned(conn: aiosqlite.Connection, room_id: str, *, now_ms: int) -> bool:
    """True only the first time, so the "this room is not encrypted" warning goes out once.

    Raises LookupError for a room never passed to `record_room_joined`.
    """
    changed = await changes(
        conn,
        "UPDATE rooms SET unencrypted_warned_ms = ?"
        " WHERE room_id = ? AND unencrypted_warned_ms IS NULL",
        (now_ms, room_id),
    )
    if changed == 1:
        return True
    if await room_joined_ms(conn, room_id) is None:
        raise LookupError(f"room {room_id} is not recorded; call record_room_joined first")
    return False


async def mark_unknown_room_explained(conn: aiosqlite.Connection, room_id: str, *,
                                     now_ms: int) -> bool:
    """True only the first time, so a room the bot serves no one in is told why once."""
    changed = await changes(
        conn,
        "UPDATE rooms SET unknown_explained_ms = ?"
        " WHERE room_id = ? AND unknown_explained_ms IS NULL",
        (now_ms, room_id),
    )
    return changed == 1
async def values_with_prefix(conn: aiosqlite.Connection, prefix: str) -> dict[str, str]:
    """Every key starting with `prefix` (the prefix removed) and its value."""
    rows = await conn.execute_fetchall(
        "SELECT key, value FROM kv WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
    return {str(key)[len(prefix):]: str(value) for key, value in rows}


async def _execute(conn: aiosqlite.Connection, sql: str, parameters: tuple[Any, ...]) -> None:
    await conn.execute(sql, parameters)
