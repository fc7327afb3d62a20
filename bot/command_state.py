"""Publishes the bot's commands as room state (MSC4391 and MSC4332, unstable names) in each
post room where it may send that state, so clients that support them suggest the
commands as an officer types (`commands.command_descriptions` decides the content).

What a room was given is remembered in the database (a digest and the state keys), so
each room is written to only when its commands, or its language, changed; a command no
longer declared has its description emptied (an empty state event removes it). A room
where the bot lacks the power level is skipped (looked at again every round: a moderator
may raise it later).
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import ClientError
from nio import AsyncClient, RoomPutStateError

from liaison.bot.directory import Directory
from liaison.commands.command_descriptions import (
    MSC4332_COMMANDS,
    MSC4391_DESCRIPTION,
    msc4332_commands,
    msc4391_descriptions,
    published_digest,
)
from liaison.commands.registry import CommandRegistry
from liaison.storage import state
from liaison.storage.db import Database

log = logging.getLogger(__name__)

ROUND_S = 5.0
"""How often the rooms are looked at (cheap: a digest per language, a lookup per room)."""
KEY_PREFIX = "commands.published."

Contents = list[tuple[str, str, dict[str, object]]]


class CommandDescriptions:
    def __init__(self, client: AsyncClient, db: Database, languages: Directory,
                 registry: CommandRegistry) -> None:
        self._client = client
        self._db = db
        self._languages = languages
        """The posts' rooms (an upgraded room's replacement) and languages, kept current."""
        self._registry = registry
        self._by_language: dict[str, tuple[Contents, str]] = {}
        self._published: dict[str, str] = {}
        """Room id → digest published there (this run's view of the database)."""
        self.published_rooms = 0

    def contents(self, language: str) -> tuple[Contents, str]:
        """The state events for a room reading `language`, and their digest."""
        cached = self._by_language.get(language)
        if cached is None:
            bot = str(self._client.user_id)
            events: Contents = [(MSC4391_DESCRIPTION, key, content) for key, content in
                                msc4391_descriptions(self._registry, bot, language).items()]
            events.append((MSC4332_COMMANDS, bot, msc4332_commands(self._registry, language)))
            cached = (events, published_digest(events))
            self._by_language[language] = cached
        return cached

    async def run(self, ready: asyncio.Event) -> None:
        await ready.wait()
        while True:
            try:
                await self.publish_round()
            except Exception:  # never fatal: commands still work when typed
                log.exception("publishing the command descriptions failed; will retry")
            await asyncio.sleep(ROUND_S)

    async def publish_round(self) -> int:
        """Publish where needed; how many rooms were written to."""
        written = 0
        for post in self._languages.config.posts:
            room = self._client.rooms.get(post.room)
            if room is None or not all(room.power_levels.can_user_send_state(
                    str(self._client.user_id), kind)
                    for kind in (MSC4391_DESCRIPTION, MSC4332_COMMANDS)):
                continue
            events, digest = self.contents(self._languages.language_for_room(post.room))
            if self._published.get(post.room) == digest:
                continue
            if await self._publish(post.room, events, digest):
                written += 1
        return written

    async def _publish(self, room_id: str, events: Contents, digest: str) -> bool:
        key = KEY_PREFIX + room_id
        async with self._db.read() as conn:
            stored = await state.get_value(conn, key)
        before = json.loads(stored) if stored else {"digest": None, "keys": []}
        if before["digest"] == digest:
            self._published[room_id] = digest
            return False
        now = {(kind, state_key) for kind, state_key, _ in events}
        gone = [(kind, state_key) for kind, state_key in before["keys"]
                if (kind, state_key) not in now]
        try:
            for kind, state_key, content in events:
                await self._put(room_id, kind, state_key, dict(content))
            for kind, state_key in gone:
                await self._put(room_id, kind, state_key, {})
        except (ClientError, TimeoutError, OSError, RuntimeError) as exc:
            log.warning("could not publish the command descriptions; will retry",
                        extra={"room_id": room_id, "error": str(exc)})
            return False
        async with self._db.transaction() as conn:
            await state.set_value(conn, key, json.dumps(
                {"digest": digest, "keys": sorted([kind, state_key] for kind, state_key in now)}))
        self._published[room_id] = digest
        self.published_rooms += 1
        log.info("published the command descriptions",
                 extra={"room_id": room_id, "events": len(events), "removed": len(gone)})
        return True

    async def _put(self, room_id: str, kind: str, state_key: str,
                   content: dict[str, object]) -> None:
        response = await self._client.room_put_state(room_id, kind, content, state_key)
        if isinstance(response, RoomPutStateError):
            raise RuntimeError(f"{kind}: {response.message}")
