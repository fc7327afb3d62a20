"""Messages the bot could not decrypt yet: kept, retried, and, if hopeless, answered.

A room key often arrives a moment after the message it unlocks. Such events
are kept in the database (so a restart does not forget them), retried after
every sync, the key is requested from the sender, and only after a grace
period the sender is told, once, that the bot could not read the message.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientError
from nio import AsyncClient, EncryptionError, LocalProtocolError, MatrixRoom, MegolmEvent

from liaison.bot.clock import Clock
from liaison.bot.megolm_compat import LiaisonClient
from liaison.commands.notify import MsgType, msgtype_for
from liaison.commands.render import notice_content, render_notice
from liaison.commands.texts import text
from liaison.storage import inbox, outbox
from liaison.storage.db import Database
from liaison.storage.inbox import UndecryptableEvent
from liaison.storage.metrics import UNDECRYPTABLE_KIND

log = logging.getLogger(__name__)

UNREADABLE_NOTICE = "bot.undecryptable"
"""Message id (`commands.texts`) of what the sender is told, in the room's language."""

# After the sender was told, a late key is still welcome for a day; then the event is
# dropped from the retry list so the list cannot grow without bound.
KEEP_AFTER_NOTICE_MS = 24 * 3600 * 1000
# In a room of bots (a link room, `bot.links`) nobody is told: the event waits for its key
# this long (a partner server's outage can hold a room key back), then it is dropped.
KEEP_UNTOLD_MS = 7 * 24 * 3600 * 1000

EventHandler = Callable[[MatrixRoom, Any], Awaitable[None]]


class UndecryptableTracker:
    def __init__(
        self,
        client: AsyncClient,
        db: Database,
        clock: Clock,
        *,
        grace_ms: int,
        wake_sender: Callable[[], None],
        language_for_room: Callable[[str], str] = lambda room_id: "en",
        msgtype_for_room: Callable[[str], MsgType] = lambda room_id: msgtype_for(
            UNDECRYPTABLE_KIND),
        untold_rooms: frozenset[str] = frozenset(),
    ) -> None:
        self._client = client
        self._untold_rooms = untold_rooms
        """Rooms whose senders are never told (link rooms: the partner is a bot); their
        events wait for a late key for `KEEP_UNTOLD_MS` instead."""
        self._msgtype_for_room = msgtype_for_room
        """The notice to the sender rings unless the room's post was made quiet."""
        self._language_for_room = language_for_room
        self._db = db
        self._clock = clock
        self._grace_ms = grace_ms
        self._wake_sender = wake_sender
        self._lock = asyncio.Lock()
        self.pending = 0
        self.notified = 0

    async def track(self, room: MatrixRoom, event: MegolmEvent) -> None:
        async with self._db.transaction() as conn:
            if await inbox.is_processed(conn, event.event_id):
                return
            added = await inbox.save_undecryptable(
                conn, event_id=event.event_id, room_id=room.room_id, sender=event.sender,
                session_id=event.session_id, source=event.source,
                received_ms=self._clock.now_ms(),
            )
        if added:
            log.info("message not decryptable yet; waiting for its key",
                     extra={"room_id": room.room_id, "event_id": event.event_id,
                            "sender": event.sender})
            await self._request_key(event)

    async def _request_key(self, event: MegolmEvent) -> None:
        try:
            await self._client.request_room_key(event)
        except LocalProtocolError:
            return  # already requested for this session
        except (ClientError, OSError, TimeoutError) as exc:  # the homeserver went away
            log.warning("room key request failed", extra={"error": str(exc)})
            return
        async with self._db.transaction() as conn:
            await inbox.note_key_requested(conn, event.event_id, now_ms=self._clock.now_ms())

    async def retry(self, handle: EventHandler) -> None:
        """Try every kept event again; hand decrypted ones on; answer the hopeless ones."""
        async with self._lock:
            async with self._db.read() as conn:
                kept = await inbox.list_undecryptable(conn)
            self.pending = len(kept)
            for item in kept:
                await self._retry_one(item, handle)

    async def _retry_one(self, item: UndecryptableEvent, handle: EventHandler) -> None:
        if (item.notified_ms is not None
                and self._clock.now_ms() - item.notified_ms >= KEEP_AFTER_NOTICE_MS):
            async with self._db.transaction() as conn:
                await inbox.forget_undecryptable(conn, item.event_id)
            return
        room = self._client.rooms.get(item.room_id)
        if room is None:
            return
        source = copy.deepcopy(item.source)
        source.setdefault("room_id", item.room_id)
        if isinstance(self._client, LiaisonClient):
            self._client.fill(source, item.room_id)  # the room key may have arrived by now
        event = MegolmEvent.from_dict(source)
        if not isinstance(event, MegolmEvent):
            async with self._db.transaction() as conn:
                await inbox.forget_undecryptable(conn, item.event_id)
            return
        event.room_id = item.room_id
        try:
            decrypted = self._client.decrypt_event(event)
        except EncryptionError:
            decrypted = None
        if decrypted is not None and not isinstance(decrypted, MegolmEvent):
            async with self._db.transaction() as conn:
                await inbox.forget_undecryptable(conn, item.event_id)
            if item.notified_ms is None:
                log.info("late room key arrived; handling message",
                         extra={"room_id": item.room_id, "event_id": item.event_id})
                await handle(room, decrypted)
            return
        waited = self._clock.now_ms() - item.received_ms
        if item.room_id in self._untold_rooms:
            if waited >= KEEP_UNTOLD_MS:
                async with self._db.transaction() as conn:
                    await inbox.forget_undecryptable(conn, item.event_id)
                log.error("gave up waiting for the key of an event in a link room",
                          extra={"room_id": item.room_id, "event_id": item.event_id})
            return
        if item.notified_ms is None and waited >= self._grace_ms:
            await self._notify(item)

    async def _notify(self, item: UndecryptableEvent) -> None:
        async with self._db.transaction() as conn:
            if not await inbox.claim_event(conn, event_id=item.event_id, room_id=item.room_id,
                                           now_ms=self._clock.now_ms()):
                await inbox.mark_notified(conn, item.event_id, now_ms=self._clock.now_ms())
                return
            await inbox.mark_notified(conn, item.event_id, now_ms=self._clock.now_ms())
            language = self._language_for_room(item.room_id)
            notice = render_notice(text(UNREADABLE_NOTICE, language), language=language)
            msgtype = self._msgtype_for_room(item.room_id)
            content = notice_content(
                notice.text, notice.html, mentions=(item.sender,), msgtype=msgtype,
                extra={"m.relates_to": {"m.in_reply_to": {"event_id": item.event_id}}},
            )
            await outbox.enqueue(conn, room_id=item.room_id, event_type="m.room.message",
                                 content=content, now_ms=self._clock.now_ms(),
                                 kind=UNDECRYPTABLE_KIND)
        self.notified += 1
        log.warning("told sender their message could not be decrypted",
                    extra={"room_id": item.room_id, "event_id": item.event_id})
        self._wake_sender()

    async def run_timer(self, handle: EventHandler) -> None:
        """Between syncs, keep checking so the grace period is honoured on time."""
        interval = max(0.5, min(5.0, self._grace_ms / 4000))
        while True:
            await asyncio.sleep(interval)
            await self.retry(handle)
