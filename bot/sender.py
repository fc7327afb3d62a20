"""The outbox worker: every message the bot writes leaves through here.

Messages are written to the outbox (in the same transaction as whatever
caused them) before any network I/O. This worker sends each one with its
stable transaction id, so a retry after a crash or an outage is recognised by
the homeserver as the same message and is never shown twice. Order is kept
per room; a rate-limited or unreachable homeserver only delays messages. A relayed
case that the homeserver accepted is audited as delivered (given up on: undelivered)
in the transaction that records it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiosqlite
from aiohttp import ClientError
from nio import AsyncClient, LocalProtocolError, RoomSendError, RoomSendResponse, SendRetryError

from liaison.bot.clock import Clock
from liaison.bot.logs import log_context
from liaison.commands.notify import AHEAD_OF_BATCH, PLAINTEXT_ALLOWED, OutboxKind
from liaison.commands.report_chart import RENDER_KEY
from liaison.commands.retry import retry_delay_ms
from liaison.storage import audit, outbox
from liaison.storage.audit import AuditAction
from liaison.storage.db import Database
from liaison.storage.outbox import OutboxMessage

log = logging.getLogger(__name__)

# Errors that no retry can fix: the room is gone or the bot may not write there.
PERMANENT_ERRORS = frozenset({"M_FORBIDDEN", "M_NOT_FOUND", "M_UNKNOWN", "M_BAD_JSON",
                              "M_NOT_JSON", "M_TOO_LARGE"})
# The outbox kind of a case relayed to a target post (see handlers.cases).
RELAY_KIND = OutboxKind.CASE_RELAY


@dataclass(frozen=True)
class SenderSettings:
    concurrency: int = 16
    backoff_initial_ms: int = 500
    backoff_max_ms: int = 60_000
    max_attempts: int | None = None


RENDER_POLL_S = 1.0
"""While only charts are being drawn, look at the outbox again at least this often."""
RELAY_HEAD_START_S = 0.05
"""How long the rest of a batch waits after its relays were accepted: the homeserver
handles one thing at a time, and the counterpart's sync should get the relay before the
homeserver turns to the answer to the sender."""

BeforeSend = Callable[[str], Awaitable[None]]
Renderer = Callable[[OutboxMessage], Awaitable[dict[str, Any]]]
"""Turns a render request into the event content to send (`bot.reports`); raises when it
should be tried again later (the media repository is away)."""


class OutboxSender:
    """Drains the outbox; `wake()` after enqueueing to send at once."""

    def __init__(
        self,
        db: Database,
        client: AsyncClient,
        clock: Clock,
        settings: SenderSettings,
        before_send: BeforeSend | None = None,
        ready: asyncio.Event | None = None,
        renderer: Renderer | None = None,
        after_send: BeforeSend | None = None,
        route: Callable[[str], str] | None = None,
    ) -> None:
        self._db = db
        self._route = route
        """The room a message for a room goes to now (`RoomUpgrades.route`: an upgraded
        post room's replacement)."""
        self._after_send = after_send
        """Called with the room id once a message was accepted (`TrustPolicy.tell_withheld`)."""
        self._renderer = renderer
        self._client = client
        self._clock = clock
        self._settings = settings
        self._before_send = before_send
        self._wakeup = asyncio.Event()
        self._ready = ready
        self.sent_count = 0
        self.failure_count = 0
        self.retries = 0
        """Failed attempts that will be tried again (`/metrics`, see `bot.metrics`)."""
        self.permanent_failures = 0
        """Messages given up on, never to be sent (`/metrics`)."""
        self.last_error: str | None = None
        self._rendering: dict[int, asyncio.Task[None]] = {}
        """Render requests being drawn and uploaded in the background, by outbox id."""

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        if self._ready is not None:
            await self._ready.wait()  # rooms are known only after the first sync of this run
        try:
            while True:
                self._wakeup.clear()
                async with self._db.read() as conn:
                    batch = await outbox.next_batch(
                        conn, now_ms=self._clock.now_ms(),
                        limit=self._settings.concurrency + len(self._rendering))
                # A chart is drawn and uploaded beside the sending, never inside a batch: a
                # slow media repository holds up only its own room (its queue head), not
                # relays and escalations to every other room.
                for message in batch:
                    if RENDER_KEY in message.content and message.id not in self._rendering:
                        self._rendering[message.id] = asyncio.create_task(
                            self._render_beside(message), name=f"render-{message.id}")
                ready = [message for message in batch if RENDER_KEY not in message.content]
                if ready:
                    # Relayed cases first, on their own: the homeserver persists events one
                    # after another, and an answer to the sender racing the relay would delay
                    # what the counterpart is waiting for.
                    relays = [message for message in ready if message.kind in AHEAD_OF_BATCH]
                    rest = [message for message in ready if message.kind not in AHEAD_OF_BATCH]
                    await asyncio.gather(*(self._send_logged(message) for message in relays))
                    if relays and rest:
                        await asyncio.sleep(RELAY_HEAD_START_S)
                    await asyncio.gather(*(self._send_logged(message) for message in rest))
                    continue
                if self._rendering:  # only charts in hand: wait until one is done or news
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), timeout=RENDER_POLL_S)
                    continue
                await self._sleep_until_due()
        finally:
            for task in self._rendering.values():  # stopping: a new run renders again
                task.cancel()

    async def _render_beside(self, message: OutboxMessage) -> None:
        """Render one request in the background; the next round sends what it became."""
        try:
            with log_context(room_id=message.room_id, case_ref=message.case_ref):
                async with self._db.read() as conn:
                    fresh = await outbox.get(conn, message.id)  # not rendered meanwhile
                if fresh is not None and fresh.state == "pending" \
                        and RENDER_KEY in fresh.content:
                    await self._rendered(fresh)
        except Exception:
            log.exception("rendering failed; will retry", extra={"room_id": message.room_id})
            await asyncio.sleep(RENDER_POLL_S)  # not again at once
        finally:
            self._rendering.pop(message.id, None)
            self.wake()

    async def _sleep_until_due(self) -> None:
        async with self._db.read() as conn:
            wakeup_ms = await outbox.next_wakeup_ms(conn)
        timeout = None
        if wakeup_ms is not None:
            timeout = max(0.0, (wakeup_ms - self._clock.now_ms()) / 1000)
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout=timeout)
        except TimeoutError:
            pass

    async def _send_logged(self, message: OutboxMessage) -> None:
        """Send one message; every log line meanwhile names its room and case."""
        with log_context(room_id=message.room_id, case_ref=message.case_ref):
            await self._send(message)

    async def _send(self, message: OutboxMessage) -> None:
        message = self._routed(message)
        room = self._client.rooms.get(message.room_id)
        if room is not None and not room.encrypted and message.kind not in PLAINTEXT_ALLOWED:
            async with self._db.transaction() as conn:
                await outbox.mark_failed(conn, message.id, now_ms=self._clock.now_ms(),
                                         error="room is not end-to-end encrypted; not sent")
                await self._audit_relay(conn, message, AuditAction.UNDELIVERED,
                                        {"error": "room is not end-to-end encrypted"})
            self.permanent_failures += 1
            log.error("refused to send into an unencrypted room",
                      extra={"room_id": message.room_id, "case_ref": message.case_ref})
            return
        if RENDER_KEY in message.content:
            rendered = await self._rendered(message)
            if rendered is None:
                return
            message = rendered
        try:
            if self._before_send is not None:
                await self._before_send(message.room_id)
            response = await self._client.room_send(
                message.room_id,
                message.event_type,
                message.content,
                tx_id=message.txn_id,
                ignore_unverified_devices=True,
            )
        except (ClientError, TimeoutError, OSError, SendRetryError) as exc:
            await self._retry(message, f"{type(exc).__name__}: {exc}", None)
            return
        except LocalProtocolError as exc:
            # nio does not know the room (not joined yet, or left): not fixable by waiting long.
            await self._retry(message, f"LocalProtocolError: {exc}", None, permanent_after=True)
            return
        if isinstance(response, RoomSendResponse):
            async with self._db.transaction() as conn:
                await outbox.mark_sent(
                    conn, message.id, event_id=response.event_id, now_ms=self._clock.now_ms()
                )
                await self._audit_relay(conn, message, AuditAction.DELIVERED,
                                        {"event_id": response.event_id})
            self.sent_count += 1
            log.debug("sent", extra={"room_id": message.room_id, "event_id": response.event_id,
                                     "case_ref": message.case_ref})
            if self._after_send is not None:
                try:
                    await self._after_send(message.room_id)
                except Exception:  # the message is sent; what follows it must not undo that
                    log.exception("after sending: failed", extra={"room_id": message.room_id})
            return
        assert isinstance(response, RoomSendError)
        code = response.status_code or ""
        retry_after = response.retry_after_ms if code == "M_LIMIT_EXCEEDED" else None
        await self._retry(message, str(response), retry_after,
                          permanent_after=code in PERMANENT_ERRORS)

    def _routed(self, message: OutboxMessage) -> OutboxMessage:
        """The message as it goes out now: into the room that replaced its room, without
        a relation to an event of the old room (a thread or reply cannot cross rooms)."""
        room_id = self._route(message.room_id) if self._route is not None else message.room_id
        if room_id == message.room_id:
            return message
        content = {key: value for key, value in message.content.items()
                   if key != "m.relates_to"}
        return replace(message, room_id=room_id, content=content)

    async def _rendered(self, message: OutboxMessage) -> OutboxMessage | None:
        """Render a request (a report's chart: drawn, encrypted, uploaded) and put the
        result in the message's place in the outbox before it is sent under its txn id: a
        crash before that renders again (leaving at most an orphan upload), a crash after
        it sends the same event again, which the homeserver takes as the same. A request
        itself is never sent. None when it waits for a retry or cannot be rendered."""
        if self._renderer is None:
            async with self._db.transaction() as conn:
                await outbox.mark_failed(conn, message.id, now_ms=self._clock.now_ms(),
                                         error="nothing here renders this request")
            self.permanent_failures += 1
            log.error("render request without a renderer; not sent")
            return None
        try:
            content = await self._renderer(message)
            if RENDER_KEY in content:
                raise ValueError("the renderer gave back a render request")
        except Exception as error:
            await self._retry(message, f"render: {type(error).__name__}: {error}", None)
            return None
        async with self._db.transaction() as conn:
            return await outbox.replace_content(conn, message, content)

    async def _retry(
        self,
        message: OutboxMessage,
        error: str,
        retry_after_ms: int | None,
        *,
        permanent_after: bool = False,
    ) -> None:
        attempts = message.attempts + 1
        self.failure_count += 1
        self.last_error = error
        now = self._clock.now_ms()
        settings = self._settings
        delay = retry_delay_ms(attempts, permanent=permanent_after, retry_after_ms=retry_after_ms,
                               backoff_initial_ms=settings.backoff_initial_ms,
                               backoff_max_ms=settings.backoff_max_ms,
                               max_attempts=settings.max_attempts)
        async with self._db.transaction() as conn:
            if delay is None:
                await outbox.mark_failed(conn, message.id, error=error, now_ms=now)
                await self._audit_relay(conn, message, AuditAction.UNDELIVERED,
                                        {"error": error})
                log.error("giving up on message", extra={"room_id": message.room_id,
                                                          "error": error,
                                                          "case_ref": message.case_ref})
                self.permanent_failures += 1
                return
            await outbox.mark_retry(conn, message.id, error=error, next_attempt_ms=now + delay)
        self.retries += 1
        log.warning("send failed; will retry", extra={"room_id": message.room_id,
                                                      "error": error, "retry_in_ms": delay})

    async def _audit_relay(self, conn: aiosqlite.Connection, message: OutboxMessage,
                           action: AuditAction, detail: dict[str, Any]) -> None:
        """Record on the audit log that a relayed case reached its target room, or never
        will; other messages are the consequences of actions already recorded."""
        if message.kind != RELAY_KIND:
            return
        await audit.append(conn, ts_ms=self._clock.now_ms(), actor=audit.LIAISON,
                           action=action, case_ref=message.case_ref, room_id=message.room_id,
                           detail={"txn_id": message.txn_id, **detail})
