"""The one place that owns an event's transaction.

Every event the bot acts on is handled inside one database transaction that claims the
event id, runs its handler and queues whatever follows from it; the sender is woken once,
after the commit. A crash before the commit leaves
nothing behind, so sync delivers the event again and it is acted on exactly once.

The handlers (`handlers/`) receive the transaction as their `Services`; the claim itself
is `Services.claim`, the only caller of `storage.inbox.claim_event`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from nio import AsyncClient, MatrixRoom

from liaison.bot.clock import Clock
from liaison.bot.direct_rooms import room_members
from liaison.bot.directory import Directory
from liaison.bot.logs import note_case
from liaison.bot.reports import charts_installed
from liaison.bot.seen import note_receipts
from liaison.commands.notify import OutboxKind
from liaison.commands.registry import Reply
from liaison.commands.render import notice_content, render_notice
from liaison.commands.texts import text
from liaison.handlers.context import Services
from liaison.storage import inbox, outbox, state
from liaison.storage.audit import AuditAction
from liaison.storage.db import Database

Work = Callable[[Services], Awaitable[None]]


def reply_relation(event_id: str, content: dict[str, Any]) -> dict[str, Any]:
    """Answer in the sender's thread when there is one, as a reply otherwise."""
    relates = content.get("m.relates_to") or {}
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        if isinstance(root, str):
            return {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                    "m.in_reply_to": {"event_id": event_id}}
    return {"m.in_reply_to": {"event_id": event_id}}


def thread_of(event_id: str) -> dict[str, Any]:
    """Content placing an answer in the thread rooted at `event_id` (a case's opening message)."""
    return {"m.relates_to": {"rel_type": "m.thread", "event_id": event_id}}


def valid_unicode(source: Any) -> bool:
    """False when an event's JSON holds a lone surrogate (`"\\ud800"`): JSON can escape
    one, but it is not text and SQLite refuses it, so a command or a relation holding one
    would raise wherever the bot stores or looks it up — on every replay of the event.
    Only a broken or hostile client sends one, inside the ciphertext."""
    try:
        json.dumps(source, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, TypeError, ValueError):
        return False
    return True


def reply_content(reply: Reply, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The event content of one of the bot's answers."""
    return notice_content(reply.text, reply.html, mentions=reply.mentions, extra=extra)


async def queue_reply(services: Services, room_id: str, event_id: str,
                      content: dict[str, Any], reply: Reply, *,
                      kind: OutboxKind = OutboxKind.REPLY,
                      case_ref: str | None = None) -> None:
    """Queue `reply` as an answer to `event_id` (in the thread `content` is in); with
    `case_ref` (the answer to the command that opened a case) a reply to the answer is a
    reply on the case."""
    message = reply_content(reply, {"m.relates_to": reply_relation(event_id, content)})
    await services.send(room_id, message, kind=kind, case_ref=case_ref)


class Rooms(Protocol):
    """What a transaction needs to know of the rooms, as the Matrix client sees them."""

    @property
    def user_id(self) -> str: ...

    def joined(self) -> frozenset[str]: ...

    def encrypted(self) -> frozenset[str]: ...

    def members(self, room_id: str) -> frozenset[str] | None: ...


class ClientRooms:
    """`Rooms` read off the nio client."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @property
    def user_id(self) -> str:
        assert self._client.user_id
        return str(self._client.user_id)

    def joined(self) -> frozenset[str]:
        return frozenset(self._client.rooms)

    def encrypted(self) -> frozenset[str]:
        return frozenset(r for r, room in self._client.rooms.items() if room.encrypted)

    def members(self, room_id: str) -> frozenset[str] | None:
        return room_members(self._client, room_id)


class EventTransactions:
    """Opens each event's transaction, hands its `Services` to the work, wakes the sender."""

    def __init__(self, *, db: Database, clock: Clock, rooms: Rooms,
                 directory: Directory, wake_sender: Callable[[], None],
                 charts: bool | None = None) -> None:
        self._db = db
        self._charts = charts_installed() if charts is None else charts
        """Whether report charts can be drawn (the `charts` extra): `Services.charts`."""
        self._clock = clock
        self._rooms = rooms
        self._directory = directory
        self._wake_sender = wake_sender

    @property
    def clock(self) -> Clock:
        return self._clock

    def services_for(self, conn: Any) -> Services:
        return Services(
            config=self._directory.config, clock=self._clock, conn=conn,
            bot_user_id=self._rooms.user_id, joined_rooms=self._rooms.joined(),
            encrypted_rooms=self._rooms.encrypted(), members_of=self._rooms.members,
            note_case=note_case, charts=self._charts, links=self._directory.links,
        )

    async def run(self, room_id: str, event_id: str | None, work: Work) -> bool:
        """Claim `event_id`, run `work`, commit, then wake the sender (and, through it,
        the chaser: a new case, an ack or a snooze is chased at once). With `event_id`
        None the work claims the event itself, once it knows the event concerns a case
        (`Services.claim`). False when the event was handled already; an exception rolls
        everything back, the claim included."""
        async with self._db.transaction() as conn:
            services = self.services_for(conn)
            if event_id is not None and not await services.claim(event_id, room_id):
                return False
            await work(services)
        self._wake_sender()
        return True

    async def answer(self, room_id: str, event_id: str, content: dict[str, Any], reply: Reply,
                     *, kind: OutboxKind, refused: str | None = None,
                     sender: str | None = None) -> None:
        """Answer the event once; `refused` (a reason) also records it on the audit log."""
        async def work(services: Services) -> None:
            if refused is not None and sender is not None:
                await services.record(AuditAction.COMMAND_REFUSED, actor=sender,
                                      room_id=room_id, detail={"reason": refused})
            await queue_reply(services, room_id, event_id, content, reply, kind=kind)
        await self.run(room_id, event_id, work)

    async def record(self, work: Work) -> None:
        """Bookkeeping that is about no event (a declined invite on the audit log)."""
        async with self._db.transaction() as conn:
            await work(self.services_for(conn))

    def notice(self, room_id: str, msg_id: str, **params: object) -> Reply:
        """One of the shell's own answers, in the room's language."""
        language = self._directory.language_for_room(room_id)
        return render_notice(text(msg_id, language, **params), language=language)

    async def refresh_directory(self) -> None:
        """Read the rooms' `!lang` choices and replacements again before an event."""
        await self._directory.refresh(self._db)

    async def note_receipts(self, room: MatrixRoom, receipts: list[Any]) -> None:
        """Read receipts of a synced batch: who has seen which relayed case (`bot.seen`)."""
        await note_receipts(self._db, self._clock, room, receipts, self._rooms.user_id,
                            self._directory.config.links)

    async def is_processed(self, event_id: str) -> bool:
        async with self._db.read() as conn:
            return await inbox.is_processed(conn, event_id)

    async def note_echo(self, txn_id: str, event_id: str) -> None:
        """The bot's own message came back through sync: its event id against its row."""
        async with self._db.transaction() as conn:
            await outbox.note_event_id(conn, txn_id=txn_id, event_id=event_id)

    async def record_joined(self, room_id: str, joined_ms: int) -> None:
        async with self._db.transaction() as conn:
            await state.record_room_joined(conn, room_id=room_id, joined_ms=joined_ms)

    async def joined_ms(self, room_id: str) -> int:
        """When the bot joined `room_id`; now, if it was never noted (and noted now)."""
        async with self._db.read() as conn:
            joined_ms = await state.room_joined_ms(conn, room_id)
        if joined_ms is None:
            async with self._db.transaction() as conn:
                joined_ms = await state.record_room_joined(
                    conn, room_id=room_id, joined_ms=self._clock.now_ms())
        return int(joined_ms)

    async def read(self, work: Callable[[Services], Awaitable[Any]]) -> Any:
        """A look at the database outside any event's transaction (finding a case)."""
        async with self._db.read() as conn:
            return await work(self.services_for(conn))
