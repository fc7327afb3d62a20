"""Where escalations can go: rooms the bot is in, and direct messages to supervisors.

A supervisor without a supervisors' room gets escalations in an encrypted direct
message. The bot opens it the first time (invite, `is_direct`, encryption from the
first event), remembers it in the database and reuses it; when the supervisor has
left it, the next escalation opens a new one. nio knows a new room only after the
next sync (and may learn its state over more than one), so a room just created is
not offered until it is encrypted with the supervisor in it: the escalation waits
(see `bot.chaser`) rather than failing in the outbox.

Every room opened is also listed in the bot's `m.direct` account data (user id → rooms),
as the spec asks of a client that creates a direct chat, so clients of the bot's account
list it as a direct chat; a failed update is tried again the next time the room is used.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from aiohttp import ClientError
from nio import AsyncClient, RoomCreateError, RoomPreset

from bot.clock import Clock
from bot.rawapi import ApiError, request_json
from storage import chasing
from storage.db import Database

log = logging.getLogger(__name__)

MEGOLM = "m.megolm.v1.aes-sha2"
SYNC_WAIT_MS = 60_000
"""How long a room the bot created may stay unknown to nio before it is given up."""
CREATE_RETRY_MS = 15_000
"""After a failed room creation, wait this long before trying again for that user."""
ROOM_NAME = "Liaison escalations"


def room_members(client: AsyncClient, room_id: str) -> frozenset[str] | None:
    """The joined and invited users of a room the bot is in (nio keeps both in `users`);
    None for a room it does not know."""
    room = client.rooms.get(room_id)
    return None if room is None else frozenset(room.users)


class DirectRooms:
    """The Matrix side of escalation destinations, for `bot.chaser.Chaser`."""

    def __init__(self, client: AsyncClient, db: Database, clock: Clock) -> None:
        self._client = client
        self._db = db
        self._clock = clock
        self._retry_at: dict[str, int] = {}
        self._unlisted: dict[str, str] = {}
        """Rooms (by user id) opened but not yet in `m.direct`: listed at their next use."""

    def joined_rooms(self) -> frozenset[str]:
        return frozenset(self._client.rooms)

    def members(self, room_id: str) -> frozenset[str] | None:
        return room_members(self._client, room_id)

    async def direct_room(self, user_id: str) -> str | None:
        """The direct room with `user_id`, ready to send into; None while it is being
        opened (try again shortly)."""
        async with self._db.read() as conn:
            known = await chasing.direct_room(conn, user_id)
        now = self._clock.now_ms()
        if known is not None:
            room = self._client.rooms.get(known.room_id)
            if room is not None and room.encrypted and user_id in room.users:
                if self._unlisted.get(user_id) == known.room_id:
                    await self._list_direct(user_id, known.room_id)
                return known.room_id
            if now - known.created_ms < SYNC_WAIT_MS:
                return None  # created, not (fully) synced yet: sync brings it in pieces
            log.info("the supervisor is no longer in the direct room; opening another",
                     extra={"user_id": user_id, "room_id": known.room_id})
        if self._retry_at.get(user_id, 0) > now:
            return None
        await self._open(user_id, now)
        return None

    async def _open(self, user_id: str, now: int) -> None:
        initial_state = [
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}},
            {"type": "m.room.history_visibility", "state_key": "",
             "content": {"history_visibility": "shared"}},
        ]
        try:
            response = await self._client.room_create(
                name=ROOM_NAME, is_direct=True, preset=RoomPreset.private_chat,
                invite=[user_id], initial_state=initial_state)
        except (ClientError, TimeoutError, OSError) as exc:
            response = RoomCreateError(f"{type(exc).__name__}: {exc}")
        if isinstance(response, RoomCreateError):
            self._retry_at[user_id] = now + CREATE_RETRY_MS
            log.warning("could not open a direct room for escalations; will retry",
                        extra={"user_id": user_id, "error": str(response)})
            return
        async with self._db.transaction() as conn:
            await chasing.save_direct_room(conn, user_id, response.room_id, now_ms=now)
        log.info("opened a direct room for escalations",
                 extra={"user_id": user_id, "room_id": response.room_id})
        await self._list_direct(user_id, response.room_id)

    async def _list_direct(self, user_id: str, room_id: str) -> None:
        """Add `room_id` to the bot's `m.direct` under `user_id` (read, add, write back)."""
        path = (f"/_matrix/client/v3/user/{quote(self._client.user_id, safe='')}"
                "/account_data/m.direct")
        try:
            current = await request_json(self._client, "GET", path)
            if not current.ok and current.errcode != "M_NOT_FOUND":
                raise ApiError("reading m.direct", current)
            direct: dict[str, Any] = current.body if current.ok else {}
            rooms = direct.get(user_id)
            rooms = [room for room in rooms if isinstance(room, str)] \
                if isinstance(rooms, list) else []
            if room_id not in rooms:
                written = await request_json(self._client, "PUT", path,
                                             {**direct, user_id: [*rooms, room_id]})
                if not written.ok:
                    raise ApiError("writing m.direct", written)
        except (ApiError, ClientError, TimeoutError, OSError) as exc:
            self._unlisted[user_id] = room_id
            log.warning("direct room not listed in m.direct; will retry",
                        extra={"user_id": user_id, "room_id": room_id, "error": str(exc)})
            return
        self._unlisted.pop(user_id, None)
