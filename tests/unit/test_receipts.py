"""Read receipts (bot/receipts.py): the thread a receipt goes to, failures that are
only logged, and one receipt for the newest of the commands marked while one was on its
way."""

from __future__ import annotations

import asyncio

import pytest

from liaison.bot.receipts import ReadReceipts, receipt_thread


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


async def test_commands_marked_while_a_receipt_is_on_its_way_get_one_receipt_for_the_newest(
) -> None:
    client = FakeClient()
    receipts = ReadReceipts(client)
    for number in range(5):
        receipts.mark_read("!r:x", f"$cmd{number}", thread_root=None)
    receipts.mark_read("!other:x", "$elsewhere", thread_root=None)
    await asyncio.gather(*receipts.pending)
    assert [call for call in client.calls if call[0] == "!r:x"] == [
        ("!r:x", "$cmd0", "main"), ("!r:x", "$cmd4", "main")]
    assert ("!other:x", "$elsewhere", "main") in client.calls
    assert receipts.sent == 3
    receipts.mark_read("!r:x", "$later", thread_root=None)  # nothing on its way: sent at once
    await asyncio.gather(*receipts.pending)
    assert client.calls[-1] == ("!r:x", "$later", "main")
