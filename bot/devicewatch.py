"""Trust on first use, with a notice: tell a room when one of its members adds a device.

Under the `tofu` policy the bot encrypts to every device of every member, so
a device an attacker adds to an officer's account would silently receive
case traffic. The bot remembers each member's devices and, when a new one
appears, says so in the encrypted rooms it shares with that member.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from nio import AsyncClient

from liaison.bot.clock import Clock
from liaison.commands.notify import OutboxKind
from liaison.commands.render import Code, notice_content, render_notice
from liaison.commands.texts import text
from liaison.storage import outbox, state
from liaison.storage.db import Database

log = logging.getLogger(__name__)

NOTICE_DELAY_MS = 3_000
"""A new device's notice waits this long: a new device usually speaks at once (`!ping`),
and the answer goes first (informational notices yield to it in the room's queue,
`storage.outbox`); the notice is not urgent."""

KEY_PREFIX = "devices:"


def new_device_notice(user_id: str, devices: list[tuple[str, str]],
                      language: str = "en") -> tuple[str, str]:
    unnamed = text("device.unnamed", language)
    notice = render_notice(
        [text("device.new", language, user=user_id) + " "]
        + [part for device_id, name in devices
           for part in (Code(device_id), f" ({name or unnamed}) ")],
        text("device.warning", language),
        language=language,
    )
    return notice.text, notice.html


class DeviceWatch:
    def __init__(self, client: AsyncClient, db: Database, clock: Clock,
                 wake_sender: Callable[[], None], *, enabled: bool,
                 language_for_room: Callable[[str], str] = lambda room_id: "en",
                 quiet_rooms: frozenset[str] = frozenset()) -> None:
        self._client = client
        self._quiet_rooms = quiet_rooms
        """Rooms told nothing (link rooms: the partner's devices are judged by its pinned
        key, and its bot reads no notice)."""
        self._db = db
        self._clock = clock
        self._wake_sender = wake_sender
        self._enabled = enabled
        self._language_for_room = language_for_room

    def _members(self) -> dict[str, list[str]]:
        """user id → encrypted rooms the bot shares with that user."""
        shared: dict[str, list[str]] = {}
        for room_id, room in self._client.rooms.items():
            if not room.encrypted or room_id in self._quiet_rooms:
                continue
            for user_id in room.users:
                if user_id != self._client.user_id:
                    shared.setdefault(user_id, []).append(room_id)
        return shared

    async def check(self) -> None:
        """Compare every member's devices with what was seen before; announce new ones."""
        if not self._enabled:
            return
        store = self._client.device_store
        announced = False
        for user_id, rooms in self._members().items():
            devices = {d.id: d.display_name or "" for d in store.active_user_devices(user_id)}
            if not devices:
                continue  # keys not queried yet
            async with self._db.transaction() as conn:
                key = KEY_PREFIX + user_id
                stored = await state.get_value(conn, key)
                await state.set_value(conn, key, json.dumps(sorted(devices)))
                if stored is None:
                    continue  # first sight: trust on first use
                added = sorted(set(devices) - set(json.loads(stored)))
                if not added:
                    continue
                for room_id in rooms:
                    body, html = new_device_notice(user_id, [(d, devices[d]) for d in added],
                                                   self._language_for_room(room_id))
                    await outbox.enqueue(conn, room_id=room_id, event_type="m.room.message",
                                         content=notice_content(body, html),
                                         now_ms=self._clock.now_ms(),
                                         kind=OutboxKind.DEVICE_NOTICE,
                                         delay_ms=NOTICE_DELAY_MS)
                announced = True
                log.warning("member added a device", extra={"user_id": user_id,
                                                             "devices": added})
        if announced:
            self._wake_sender()
