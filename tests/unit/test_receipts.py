"""Read receipts (bot/receipts.py): the thread a receipt goes to, and failures that are
only logged."""

from __future__ import annotations

import asyncio

import pytest

from bot.receipts import ReadReceipts, receipt_thread


class FakeClient:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, str | None]] = []
        self.fail = fail

    async def update_receipt_marker(self, room_id: str, event_id: str, *,
                                    thread_id: str | None = "main") -> object:
        self.calls.append((room_id, event_id, thread_id))
        if self.fail:
            raise ConnectionError("homeserver away")
        return object()


def test_a_receipt_goes_to_the_commands_thread_or_the_main_timeline() -> None:
    assert receipt_thread(None) == "main"
    assert receipt_thread("$root") == "$root"


async def test_receipts_are_sent_in_the_background_and_failures_are_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeClient()
    receipts = ReadReceipts(client)
    receipts.mark_read("!r:x", "$cmd", thread_root=None)
    receipts.mark_read("!r:x", "$in-thread", thread_root="$root")
    await asyncio.gather(*receipts.pending)
    assert client.calls == [("!r:x", "$cmd", "main"), ("!r:x", "$in-thread", "$root")]
    assert receipts.sent == 2

    failing = ReadReceipts(FakeClient(fail=True))
    failing.mark_read("!r:x", "$cmd", thread_root=None)
    await asyncio.gather(*failing.pending)
    assert failing.sent == 0
    assert "read receipt not sent" in caplog.text
