"""The language each room chose with `!lang`: stored, so it outlives restarts and wins
over the post's configured language (see `bot.directory`)."""

from __future__ import annotations

import aiosqlite

from liaison.storage.db import fetch_one


async def room_languages(conn: aiosqlite.Connection) -> dict[str, str]:
    """room id → chosen language, for every room that chose one."""
    rows = list(await conn.execute_fetchall("SELECT room_id, language FROM room_languages"))
    return {str(room_id): str(language) for room_id, language in rows}


async def room_language(conn: aiosqlite.Connection, room_id: str) -> str | None:
    row = await fetch_one(conn, "SELECT language FROM room_languages WHERE room_id = ?",
                          (room_id,))
    return None if row is None else str(row[0])


async def set_room_language(conn: aiosqlite.Connection, *, room_id: str, language: str,
                            by: str, now_ms: int) -> str | None:
    """Store the room's language; returns the one it had chosen before (None: none)."""
    previous = await room_language(conn, room_id)
    await conn.execute(
        "INSERT INTO room_languages (room_id, language, set_by, set_ms) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (room_id) DO UPDATE SET language = excluded.language,"
        " set_by = excluded.set_by, set_ms = excluded.set_ms",
        (room_id, language, by, now_ms),
    )
    return previous
