"""What the bot does with each synced event: invites, room messages, undecryptable events.

Every command event is handled inside one database transaction that claims
the event id and enqueues the answer, so an event is acted on exactly once
even when a crash makes sync deliver it again.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from nio import (
    AsyncClient,
    MatrixRoom,
    MegolmEvent,
    RoomMemberEvent,
    RoomMessageText,
    SyncResponse,
)

from bot.clock import Clock, from_ms
from bot.config import Config
from bot.invites import InvitePolicy, answer_invite
from bot.services import Services
from bot.trust import TrustPolicy
from bot.undecryptable import UndecryptableTracker
from commands.errors import CommandError
from commands.registry import CommandRegistry, Invocation, Reply, split_command
from commands.render import notice_content, render_command_error, render_notice
from storage import inbox, outbox, state
from storage.db import Database

log = logging.getLogger(__name__)

UNENCRYPTED_WARNING = (
    "This room is not end-to-end encrypted, so Liaison will not act on anything said here "
    "and will not send anything here. Turn on encryption in the room settings and ask again."
)
UNTRUSTED_DEVICE_REPLY = (
    "I did not act on this: it was sent from a device that is not cross-signed by its owner, "
    "and this Liaison accepts commands only from verified (cross-signed) devices. Verify this "
    "session from one of your other sessions, then send it again."
)


def reply_relation(event_id: str, content: dict[str, Any]) -> dict[str, Any]:
    """Answer in the sender's thread when there is one, as a reply otherwise."""
    relates = content.get("m.relates_to") or {}
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        if isinstance(root, str):
            return {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                    "m.in_reply_to": {"event_id": event_id}}
    return {"m.in_reply_to": {"event_id": event_id}}


def _content(notice: Reply, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return notice_content(notice.text, notice.html, mentions=notice.mentions, extra=extra)


def is_edit(content: dict[str, Any]) -> bool:
    relates = content.get("m.relates_to")
    return isinstance(relates, dict) and relates.get("rel_type") == "m.replace"


class EventRouter:
    def __init__(
        self,
        *,
        client: AsyncClient,
        db: Database,
        clock: Clock,
        registry: CommandRegistry,
        invite_policy: InvitePolicy,
        trust: TrustPolicy,
        undecryptable: UndecryptableTracker,
        wake_sender: Callable[[], None],
        config: Config,
        language_for_room: Callable[[str], str],
        post_for_room: Callable[[str], Any],
    ) -> None:
        self._client = client
        self._db = db
        self._clock = clock
        self._registry = registry
        self._invite_policy = invite_policy
        self._trust = trust
        self._undecryptable = undecryptable
        self._wake_sender = wake_sender
        self._config = config
        self._language_for_room = language_for_room
        self._post_for_room = post_for_room
        self.commands_handled = 0

    @property
    def user_id(self) -> str:
        assert self._client.user_id
        return str(self._client.user_id)

    async def handle_batch(self, response: SyncResponse) -> None:
        for room_id, invite in response.rooms.invite.items():
            await answer_invite(self._client, self._invite_policy, room_id, invite)
        for room_id, joined in response.rooms.join.items():
            room = self._client.rooms.get(room_id)
            if room is None:
                continue
            # Learn when the bot joined before judging any event of the batch by it.
            for event in joined.timeline.events:
                if isinstance(event, RoomMemberEvent):
                    await self._on_member(room, event)
            for event in joined.timeline.events:
                if not isinstance(event, RoomMemberEvent):
                    await self.handle_event(room, event)
        await self._undecryptable.retry(self.handle_event)

    async def handle_event(self, room: MatrixRoom, event: Any) -> None:
        log.debug("event", extra={"room_id": room.room_id, "type": type(event).__name__,
                                  "event_id": getattr(event, "event_id", None)})
        if not isinstance(event, MegolmEvent | RoomMessageText):
            return
        if event.sender == self.user_id or not await self._after_join(room, event):
            return
        if isinstance(event, MegolmEvent):
            await self._undecryptable.track(room, event)
            return
        if isinstance(event, RoomMessageText):
            await self._on_text(room, event)

    async def _on_member(self, room: MatrixRoom, event: RoomMemberEvent) -> None:
        if event.state_key == self.user_id and event.membership == "join":
            async with self._db.transaction() as conn:
                await state.record_room_joined(
                    conn, room_id=room.room_id, joined_ms=event.server_timestamp
                )
        elif event.membership != (event.prev_membership or ""):
            self._trust.invalidate({event.state_key})

    async def _after_join(self, room: MatrixRoom, event: Any) -> bool:
        """Ignore history from before the bot joined (shared history is not a request to it)."""
        ts = getattr(event, "server_timestamp", 0)
        async with self._db.read() as conn:
            joined_ms = await state.room_joined_ms(conn, room.room_id)
        if joined_ms is None:
            async with self._db.transaction() as conn:
                joined_ms = await state.record_room_joined(
                    conn, room_id=room.room_id, joined_ms=self._clock.now_ms()
                )
        return bool(ts >= joined_ms)

    async def _on_text(self, room: MatrixRoom, event: RoomMessageText) -> None:
        content = event.source.get("content", {})
        if is_edit(content):
            return
        parsed = split_command(event.body)
        if parsed is None:
            return
        if not room.encrypted or not getattr(event, "decrypted", False):
            await self._refuse_unencrypted(room, event)
            return
        device_id = self._sender_device(event)
        if not await self._trust.sender_allowed(event.sender, device_id):
            await self._answer(room, event, render_notice(UNTRUSTED_DEVICE_REPLY),
                               kind="refusal")
            return
        await self._run_command(room, event, parsed, content)

    def _sender_device(self, event: RoomMessageText) -> str | None:
        """The device that sent a decrypted event, from the session's curve25519 key."""
        sender_key = getattr(event, "sender_key", None)
        for device in self._client.device_store.active_user_devices(event.sender):
            if device.curve25519 == sender_key:
                return str(device.id)
        return None

    async def _refuse_unencrypted(self, room: MatrixRoom, event: RoomMessageText) -> None:
        log.warning("command in an unencrypted room ignored",
                    extra={"room_id": room.room_id, "event_id": event.event_id})
        if room.encrypted:
            return  # a plaintext message in an encrypted room: never answer in plaintext
        async with self._db.transaction() as conn:
            if not await inbox.claim_event(conn, event_id=event.event_id,
                                           room_id=room.room_id, now_ms=self._clock.now_ms()):
                return
            if not await state.mark_unencrypted_warned(conn, room.room_id,
                                                       now_ms=self._clock.now_ms()):
                return
            await outbox.enqueue(
                conn, room_id=room.room_id, event_type="m.room.message",
                content=_content(render_notice(UNENCRYPTED_WARNING)),
                now_ms=self._clock.now_ms(), kind="plaintext-warning",
            )
        self._wake_sender()

    async def _run_command(
        self,
        room: MatrixRoom,
        event: RoomMessageText,
        parsed: tuple[str, str, tuple[str, ...]],
        content: dict[str, Any],
    ) -> None:
        word, args, lines = parsed
        now = self._clock.now()
        async with self._db.transaction() as conn:
            if not await inbox.claim_event(conn, event_id=event.event_id, room_id=room.room_id,
                                           now_ms=self._clock.now_ms()):
                log.info("event already processed", extra={"event_id": event.event_id})
                return
            try:
                spec = self._registry.resolve(word)
                invocation = Invocation(
                    command=spec, args=args, lines=lines, room_id=room.room_id,
                    sender=event.sender, event_id=event.event_id,
                    sent_at=from_ms(event.server_timestamp), now=now,
                    post=self._post_for_room(room.room_id),
                    language=self._language_for_room(room.room_id),
                    bot_device_id=self._client.device_id or "",
                    services=self._services_for(conn),
                )
                reply = await spec.handler(invocation)
            except CommandError as error:
                reply = render_command_error(error, self._language_for_room(room.room_id))
            except Exception:
                incident = secrets.token_hex(4)
                log.exception("command failed", extra={"incident": incident,
                                                       "room_id": room.room_id,
                                                       "event_id": event.event_id})
                text = (f"Sorry, something went wrong on my side and I could not do this. "
                        f"Incident {incident} is logged; the operator can look it up.")
                reply = render_notice(text)
            await self._enqueue_reply(conn, room.room_id, event.event_id, content, reply)
        self.commands_handled += 1
        self._wake_sender()

    def _services_for(self, conn: Any) -> Services:
        rooms = self._client.rooms
        return Services(
            config=self._config, clock=self._clock, conn=conn, bot_user_id=self.user_id,
            joined_rooms=frozenset(rooms),
            encrypted_rooms=frozenset(r for r, room in rooms.items() if room.encrypted),
        )

    async def _answer(self, room: MatrixRoom, event: RoomMessageText, reply: Reply,
                      *, kind: str) -> None:
        content = event.source.get("content", {})
        async with self._db.transaction() as conn:
            if not await inbox.claim_event(conn, event_id=event.event_id, room_id=room.room_id,
                                           now_ms=self._clock.now_ms()):
                return
            await self._enqueue_reply(conn, room.room_id, event.event_id, content, reply,
                                      kind=kind)
        self._wake_sender()

    async def _enqueue_reply(self, conn: Any, room_id: str, event_id: str,
                             content: dict[str, Any], reply: Reply, *,
                             kind: str = "reply") -> None:
        message = _content(reply, {"m.relates_to": reply_relation(event_id, content)})
        await outbox.enqueue(conn, room_id=room_id, event_type="m.room.message",
                             content=message, now_ms=self._clock.now_ms(), kind=kind)
