"""Where escalations can go: rooms the bot is in, and direct messages to supervisors.

A supervisor without a supervisors' room gets escalations in an encrypted direct
message. The bot opens it the first time and reuses it, and sends into it only once
the supervisor has *joined*: a supervisor on another homeserver whose server is not in
the room yet would never receive an event sent while they are merely invited through
`/sync` (only by paging back), and no notification would ring. Until they join, the
escalation waits (`bot.chaser`, `chasing.direct_room_wait`), then goes elsewhere.

Opening is idempotent across outages and crashes, one room per person:

1. the intent is recorded (`storage.direct_rooms.intend_direct_room`) before the room is
   created, without invitees (a remote server that is down would fail the creation
   after the room exists, leaving it behind);
2. the created room is recorded; then the supervisor is invited, and a failed invite is
   retried on the same room;
3. a room the bot gives up on (the supervisor left it or refused the invite, or the bot
   is no longer in it) is left and forgotten before another is opened.

Every room opened is also listed in the bot's `m.direct` account data (user id → rooms),
as the spec asks of a client that creates a direct chat, so clients of the bot's account
list it as a direct chat; a failed update is tried again the next time the room is used.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from aiohttp import ClientError
from nio import AsyncClient, RoomCreateError, RoomForgetError, RoomLeaveError, RoomPreset

from liaison.bot.clock import Clock
from liaison.bot.rawapi import ApiError, request_json
from liaison.storage import direct_rooms
from liaison.storage.db import Database
from liaison.storage.direct_rooms import DirectRoom

log = logging.getLogger(__name__)

MEGOLM = "m.megolm.v1.aes-sha2"
SYNC_WAIT_MS = 60_000
"""How long a room the bot created, or an invite it sent, may stay unseen in its sync
before it counts as gone (the room) or refused (the invite)."""
RETRY_MS = 5_000
"""After a failed creation or invite, wait this long before trying again for that user."""
ROOM_NAME = "Liaison escalations"
NETWORK_ERRORS = (ClientError, TimeoutError, OSError)
NOT_IN_ROOM = ("M_FORBIDDEN", "M_NOT_FOUND")
"""Leaving or forgetting a room the bot is no longer in: nothing left to do."""


class GiveUpFailed(Exception):
    """The homeserver refused to let the bot leave or forget a room."""


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
        """The direct room with `user_id` once they have joined it and it is encrypted;
        None while it is being opened or they have not joined yet (ask again shortly)."""
        async with self._db.read() as conn:
            known = await direct_rooms.direct_room(conn, user_id)
        now = self._clock.now_ms()
        if self._retry_at.get(user_id, 0) > now:
            return None
        if known is None or known.room_id is None:
            if known is not None:  # an earlier creation failed, or the bot stopped mid-way
                await self._leave_unrecorded()
            await self._create(user_id, now)
            return None
        room = self._client.rooms.get(known.room_id)
        if room is None:
            if now - known.created_ms >= SYNC_WAIT_MS:  # the bot is not in it any more
                await self._give_up(known, "the bot is no longer in the direct room")
            return None  # created, not (fully) synced yet: sync brings it in pieces
        member = room.users.get(user_id)
        if member is not None and not member.invited:
            if self._unlisted.get(user_id) == known.room_id:
                await self._list_direct(user_id, known.room_id)
            if known.joined_ms is None:
                async with self._db.transaction() as conn:
                    await direct_rooms.mark_direct_room(conn, user_id, joined_ms=now)
                log.info("the supervisor joined the direct room",
                         extra={"user_id": user_id, "room_id": known.room_id})
            return known.room_id if room.encrypted else None
        if member is None and known.joined_ms is not None:
            await self._give_up(known, "the supervisor left the direct room")
        elif known.invited_ms is None:
            await self._invite(known.room_id, user_id, now)
        elif member is None and now - known.invited_ms >= SYNC_WAIT_MS:
            await self._give_up(known, "the supervisor refused the invite")
        return None

    async def _leave_unrecorded(self) -> None:
        """Leave the direct rooms the bot created but never recorded (it stopped between
        the homeserver's answer and the database): named as ours, the bot alone in them."""
        async with self._db.read() as conn:
            recorded = await direct_rooms.direct_room_ids(conn)
        assert self._client.user_id
        mine = frozenset({self._client.user_id})
        for room_id, room in list(self._client.rooms.items()):
            if (room.name == ROOM_NAME and room_id not in recorded
                    and frozenset(room.users) == mine):
                await self._leave(room_id, "created but never recorded")

    async def _create(self, user_id: str, now: int) -> None:
        async with self._db.transaction() as conn:
            await direct_rooms.intend_direct_room(conn, user_id, now_ms=now)
        initial_state = [
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}},
            {"type": "m.room.history_visibility", "state_key": "",
             "content": {"history_visibility": "shared"}},
        ]
        try:
            response = await self._client.room_create(
                name=ROOM_NAME, is_direct=True, preset=RoomPreset.private_chat,
                initial_state=initial_state)
        except NETWORK_ERRORS as exc:
            response = RoomCreateError(f"{type(exc).__name__}: {exc}")
        if isinstance(response, RoomCreateError):
            self._retry_at[user_id] = now + RETRY_MS
            log.warning("could not open a direct room for escalations; will retry",
                        extra={"user_id": user_id, "error": str(response)})
            return
        async with self._db.transaction() as conn:
            await direct_rooms.save_direct_room(conn, user_id, response.room_id, now_ms=now)
        log.info("opened a direct room for escalations",
                 extra={"user_id": user_id, "room_id": response.room_id})
        await self._list_direct(user_id, response.room_id)
        await self._invite(response.room_id, user_id, now)

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

    async def _invite(self, room_id: str, user_id: str, now: int) -> None:
        """Invite `user_id` as to a direct chat (`is_direct` on the invite, as createRoom
        would set it); a failure is retried later on the same room."""
        path = (f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state/m.room.member/"
                f"{quote(user_id, safe='')}")
        try:
            result = await request_json(self._client, "PUT", path,
                                        {"membership": "invite", "is_direct": True})
            error = None if result.ok else f"HTTP {result.status} {result.body}"
        except NETWORK_ERRORS as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            self._retry_at[user_id] = now + RETRY_MS
            log.warning("could not invite the supervisor to the direct room; will retry",
                        extra={"user_id": user_id, "room_id": room_id, "error": error})
            return
        async with self._db.transaction() as conn:
            await direct_rooms.mark_direct_room(conn, user_id, invited_ms=now)
        log.info("invited the supervisor to the direct room",
                 extra={"user_id": user_id, "room_id": room_id})

    async def _give_up(self, known: DirectRoom, reason: str) -> None:
        """Leave and forget the room, then forget it in the database: the next escalation
        opens a new one. A failed leave is tried again next time."""
        assert known.room_id is not None
        if not await self._leave(known.room_id, reason):
            self._retry_at[known.user_id] = self._clock.now_ms() + RETRY_MS
            return
        async with self._db.transaction() as conn:
            await direct_rooms.forget_direct_room(conn, known.user_id)

    async def _leave(self, room_id: str, reason: str) -> bool:
        """Leave and forget `room_id`; False (logged) when the homeserver did not let us."""
        try:
            left = await self._client.room_leave(room_id)
            if isinstance(left, RoomLeaveError) and left.status_code not in NOT_IN_ROOM:
                raise GiveUpFailed(str(left))
            forgot = await self._client.room_forget(room_id)
            if isinstance(forgot, RoomForgetError) and forgot.status_code not in NOT_IN_ROOM:
                raise GiveUpFailed(str(forgot))
        except (*NETWORK_ERRORS, GiveUpFailed) as exc:
            log.warning("could not leave a direct room the bot gave up on; will retry",
                        extra={"room_id": room_id, "error": str(exc)})
            return False
        log.info("gave up on a direct room: left and forgot it",
                 extra={"room_id": room_id, "reason": reason})
        return True
