"""Read receipts: the bot marks each command it processed as read (`m.read`), so the officer
sees in their client that the bot took it in — in the thread the command was typed in
(threaded receipts: `thread_id` is the thread's root, `main` outside threads).

A receipt is a courtesy, not a record: it is sent after the command's transaction
committed and the answer is queued, in the background, and a failure is only logged (the
answer itself says the command was handled). A receipt marks everything up to its event
read, so while one is on its way for a timeline (room and thread) only the newest command
marked meanwhile gets the next one: a burst of commands in one room costs the homeserver
a few receipts, not one each (bench findings §10).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from nio import UpdateReceiptMarkerError

log = logging.getLogger(__name__)

MAIN_TIMELINE = "main"


class ReceiptClient(Protocol):
    async def update_receipt_marker(self, room_id: str, event_id: str, *,
                                    thread_id: str | None = ...) -> object: ...


def receipt_thread(thread_root: str | None) -> str:
    """The `thread_id` of a receipt for an event in `thread_root`'s thread (None: main)."""
    return thread_root or MAIN_TIMELINE


class ReadReceipts:
    """Sends `m.read` receipts in the background; `pending` holds the ones in flight."""

    def __init__(self, client: ReceiptClient) -> None:
        self._client = client
        self.pending: set[asyncio.Task[None]] = set()
        self.sent = 0
        self._next: dict[tuple[str, str], str | None] = {}
        """Per timeline with a receipt on its way: the newest event marked since (None:
        nothing yet)."""

    def mark_read(self, room_id: str, event_id: str, *, thread_root: str | None) -> None:
        """Mark `event_id` read, in its thread; returns at once. Commands are marked in
        the order they were processed, so a later one supersedes an earlier one that is
        still waiting."""
        timeline = (room_id, receipt_thread(thread_root))
        if timeline in self._next:
            self._next[timeline] = event_id
            return
        self._next[timeline] = None
        task = asyncio.create_task(self._send_newest(timeline, event_id),
                                   name=f"receipt {event_id}")
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _send_newest(self, timeline: tuple[str, str], event_id: str) -> None:
        room_id, thread_id = timeline
        try:
            while True:
                await self._send(room_id, event_id, thread_id)
                newer = self._next.get(timeline)
                if newer is None:
                    return
                self._next[timeline] = None
                event_id = newer
        finally:
            self._next.pop(timeline, None)

    async def _send(self, room_id: str, event_id: str, thread_id: str) -> None:
        try:
            response = await self._client.update_receipt_marker(room_id, event_id,
                                                                thread_id=thread_id)
        except Exception as exc:  # a receipt is not worth a crash
            log.warning("read receipt not sent", extra={"room_id": room_id,
                                                        "event_id": event_id,
                                                        "error": str(exc)})
            return
        if isinstance(response, UpdateReceiptMarkerError):
            log.warning("read receipt refused", extra={"room_id": room_id,
                                                       "event_id": event_id,
                                                       "error": response.message})
            return
        self.sent += 1
