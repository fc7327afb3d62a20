"""The bot's direct rooms with people (escalations to supervisors go there): one per
person, recorded before the room is created so a crash never opens two."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from liaison.storage.db import fetch_one


@dataclass(frozen=True)
class DirectRoom:
    """The bot's direct room with one person: `room_id` None while it is being created;
    `invited_ms` once the homeserver took the invite; `joined_ms` once they joined."""

    user_id: str
    room_id: str | None
    created_ms: int
    invited_ms: int | None = None
    joined_ms: int | None = None



async def direct_room(conn: aiosqlite.Connection, user_id: str) -> DirectRoom | None:
    """The direct-message room the bot opened (or is opening) with `user_id`, if any."""
    row = await fetch_one(
        conn,
        "SELECT user_id, room_id, created_ms, invited_ms, joined_ms FROM direct_rooms"
        " WHERE user_id = ?", (user_id,)
    )
    return None if row is None else DirectRoom(*row)


async def direct_room_ids(conn: aiosqlite.Connection) -> frozenset[str]:
    """Every direct room the bot has recorded."""
    rows = await conn.execute_fetchall(
        "SELECT room_id FROM direct_rooms WHERE room_id IS NOT NULL")
    return frozenset(str(row[0]) for row in rows)


async def intend_direct_room(conn: aiosqlite.Connection, user_id: str, *, now_ms: int) -> None:
    """Record that a direct room with `user_id` is about to be created (replacing one the
    bot gave up on), before asking the homeserver."""
    await conn.execute(
        "INSERT INTO direct_rooms (user_id, room_id, created_ms) VALUES (?, NULL, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET room_id = NULL, created_ms = excluded.created_ms,"
        " invited_ms = NULL, joined_ms = NULL",
        (user_id, now_ms),
    )


async def save_direct_room(conn: aiosqlite.Connection, user_id: str, room_id: str, *,
                           now_ms: int) -> None:
    """The homeserver created the direct room with `user_id`: remember it."""
    await conn.execute(
        "INSERT INTO direct_rooms (user_id, room_id, created_ms) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id,"
        " created_ms = excluded.created_ms, invited_ms = NULL, joined_ms = NULL",
        (user_id, room_id, now_ms),
    )


async def mark_direct_room(conn: aiosqlite.Connection, user_id: str, *,
                           invited_ms: int | None = None, joined_ms: int | None = None) -> None:
    """The invite was taken (`invited_ms`) or the person joined (`joined_ms`); first time
    only."""
    await conn.execute(
        "UPDATE direct_rooms SET invited_ms = COALESCE(invited_ms, ?),"
        " joined_ms = COALESCE(joined_ms, ?) WHERE user_id = ?",
        (invited_ms, joined_ms, user_id),
    )


async def forget_direct_room(conn: aiosqlite.Connection, user_id: str) -> None:
    """The bot gave up on (and left) its direct room with `user_id`."""
    await conn.execute("DELETE FROM direct_rooms WHERE user_id = ?", (user_id,))
