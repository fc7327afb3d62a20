"""Seen: a relayed case is *seen* once a member of its target room has read it.

"Delivered" only ever meant that the bot's own homeserver took the message: a partner
server may not have it yet (it may be down). A read receipt from a member of the target
room on the relayed event, or on anything later in that room, is the first sign that a
person there has it on their screen; Element sends one, also across federation. The
first one per delivery is recorded (`storage.cases.mark_seen`), shown by `!status` and
kept on the case's timeline. Receipts of the bot itself, and of anyone not joined to the
room, count for nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nio import MatrixRoom, ReceiptEvent

from liaison.bot.clock import Clock
from liaison.commands.links import CaseEventKind, Link
from liaison.handlers.links import tell_from_shell
from liaison.storage import cases
from liaison.storage.db import Database

log = logging.getLogger(__name__)

READ = "m.read"


async def note_receipts(db: Database, clock: Clock, room: MatrixRoom, events: list[object],
                        bot_user_id: str, links: Sequence[Link] = ()) -> None:
    """Record what the receipts among a room's ephemeral `events` say was seen; a case
    that came over one of `links` has its origin's bot told (`handlers.links`). In a link
    room only the partner's bot reads: its receipts say nothing of a person (its
    `seen` events do)."""
    if any(link.room == room.room_id for link in links):
        return
    readers: list[tuple[str, str]] = []
    for event in events:
        if not isinstance(event, ReceiptEvent):
            continue
        for receipt in event.receipts:
            member = room.users.get(receipt.user_id)
            if (receipt.receipt_type == READ and receipt.user_id != bot_user_id
                    and member is not None and not member.invited):
                readers.append((receipt.event_id, receipt.user_id))
    if not readers:
        return
    async with db.transaction() as conn:
        for event_id, reader in readers:
            marked = await cases.mark_seen(conn, room.room_id, event_id, reader,
                                           now_ms=clock.now_ms())
            for delivery in marked:
                await tell_from_shell(conn, links, delivery.case_id, delivery.post,
                                      CaseEventKind.SEEN, by=reader, now_ms=clock.now_ms())
                log.info("relayed case seen", extra={"room_id": room.room_id,
                                                     "post": delivery.post, "reader": reader})
