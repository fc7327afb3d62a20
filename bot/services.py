"""What a command handler may use while it runs: all of it bound to one transaction.

The router opens one database transaction per command event, claims the
event id in it, and hands the handler this object. Whatever the handler
stores or sends (through `send`, which writes to the outbox) and records (through
`record`, on the audit log) commits together with the claim, or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from bot.clock import Clock
from bot.config import Config
from bot.logs import note_case
from commands.notify import OutboxKind
from storage import audit, inbox, outbox


@dataclass(frozen=True)
class FollowUp:
    content: dict[str, Any]
    kind: OutboxKind


@dataclass(frozen=True)
class Services:
    config: Config
    clock: Clock
    conn: aiosqlite.Connection
    bot_user_id: str
    joined_rooms: frozenset[str]
    encrypted_rooms: frozenset[str]
    follow_ups: list[FollowUp] = field(default_factory=list)
    """Messages that go out after the handler's reply (see `follow_reply`)."""

    def follow_reply(self, content: dict[str, Any], *, kind: OutboxKind) -> None:
        """Queue a message right after the reply to the command, as a reply to the same
        event and in the same transaction (`!report`'s chart after its table); dropped if
        the handler fails. Commands only: the router's command path sends these."""
        self.follow_ups.append(FollowUp(content, kind))

    async def send(
        self,
        room_id: str,
        content: dict[str, Any],
        *,
        kind: OutboxKind,
        case_ref: str | None = None,
        event_type: str = "m.room.message",
    ) -> None:
        """Queue a message; it leaves once the transaction commits."""
        if case_ref is not None:
            note_case(case_ref)  # the event in hand is about this case: its log lines say so
        await outbox.enqueue(self.conn, room_id=room_id, event_type=event_type,
                             content=content, now_ms=self.clock.now_ms(), kind=kind,
                             case_ref=case_ref)

    async def claim(self, event_id: str, room_id: str) -> bool:
        """Mark an incoming event processed in this transaction; True only the first time,
        so a handler that acts on a reaction, reply or edit acts only then."""
        return await inbox.claim_event(self.conn, event_id=event_id, room_id=room_id,
                                       now_ms=self.clock.now_ms())

    async def record(
        self,
        action: str,
        *,
        actor: str,
        case_ref: str | None = None,
        room_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an action to the audit log in this transaction (ids and reasons in
        `detail`, never message content). Case timeline entries are recorded by
        `storage.cases` itself."""
        if case_ref is not None:
            note_case(case_ref)
        await audit.append(self.conn, ts_ms=self.clock.now_ms(), actor=actor, action=action,
                           case_ref=case_ref, room_id=room_id, detail=detail)
