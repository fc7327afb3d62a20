"""Post rooms that were upgraded: the bot follows the tombstone to the room that replaced
it and serves the post there until the operator updates the configuration.

After each sync batch `check` looks at every post's current room: when nio has seen an
`m.room.tombstone` in it (`replacement_room`), the replacement is recorded in the
database (`room.replaced.<old>` → new, read by `bot.directory.Directory`, so routing,
chasing and every answer use the new room from then on), the audit log and the log say
which `posts[].room` to update, and the bot joins the new room (an invite to it is
accepted whoever sends it: the tombstone came from a room the bot serves). Messages still
queued for the old room, and later ones about cases delivered there, go to the new room
(`route`, used by the outbox worker); an officer's `!ack` or `!status` in the new room
finds a case delivered in the old one, since cases are found by post, not by room.
"""

from __future__ import annotations

import logging

from aiohttp import ClientError
from nio import AsyncClient, JoinError

from liaison.bot.clock import Clock
from liaison.bot.directory import REPLACED_PREFIX, Directory
from liaison.config import Config
from liaison.storage import audit, state
from liaison.storage.audit import AuditAction
from liaison.storage.db import Database

log = logging.getLogger(__name__)

JOIN_RETRY_MS = 30_000
"""After a failed join (no invite yet to an invite-only replacement), try again this late."""


class RoomUpgrades:
    def __init__(self, client: AsyncClient, db: Database, clock: Clock, config: Config,
                 languages: Directory) -> None:
        self._client = client
        self._db = db
        self._clock = clock
        self._config = config
        self._languages = languages
        self._join_after: dict[str, int] = {}
        self.followed = 0

    def route(self, room_id: str) -> str:
        """Where a message for `room_id` goes now: the room that replaced it, if any."""
        return self._languages.replacement(room_id)

    def is_replacement(self, room_id: str) -> bool:
        """Whether `room_id` replaced a post's room (an invite to it is accepted)."""
        return any(self._languages.replacement(post.room) == room_id
                   and post.room != room_id for post in self._config.posts)

    async def check(self) -> None:
        """Follow the tombstones nio has seen in post rooms; join replacements not joined."""
        await self._languages.refresh(self._db)
        for index, post in enumerate(self._config.posts):
            current = self._languages.replacement(post.room)
            room = self._client.rooms.get(current)
            new = room.replacement_room if room is not None else None
            if new and new != current:
                await self._record(index, post.id, current, new)
                current = new
            if current != post.room and current not in self._client.rooms:
                await self._join(post.id, current)

    async def _record(self, index: int, post_id: str, old: str, new: str) -> None:
        async with self._db.transaction() as conn:
            if await state.get_value(conn, REPLACED_PREFIX + old) == new:
                return
            await state.set_value(conn, REPLACED_PREFIX + old, new)
            await audit.append(conn, ts_ms=self._clock.now_ms(), actor=audit.LIAISON,
                               action=AuditAction.ROOM_UPGRADED, room_id=old,
                               detail={"post": post_id, "replacement": new})
        await self._languages.refresh(self._db)
        self.followed += 1
        where = self._config.config_path or "the configuration"
        log.warning(f"the room of post {post_id} was upgraded: set posts[{index}].room to "
                    f"\"{new}\" in {where}; until then Liaison serves {post_id} in the new "
                    "room", extra={"post": post_id, "old_room": old, "room_id": new})

    async def _join(self, post_id: str, room_id: str) -> None:
        now = self._clock.now_ms()
        if self._join_after.get(room_id, 0) > now:
            return
        try:
            response = await self._client.join(room_id)
        except (ClientError, TimeoutError, OSError) as exc:
            response = JoinError(str(exc))
        if isinstance(response, JoinError):
            self._join_after[room_id] = now + JOIN_RETRY_MS
            log.info("cannot join the replacement room yet; an invite to it will be accepted",
                     extra={"post": post_id, "room_id": room_id, "error": str(response)})
            return
        log.info("joined the room that replaced a post's room",
                 extra={"post": post_id, "room_id": room_id})
