"""Events kept for a late room key are not retried for ever once the sender was told."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import ServerDisconnectedError
from nio import MatrixRoom, MegolmEvent

from liaison.bot.undecryptable import KEEP_AFTER_NOTICE_MS, UndecryptableTracker
from liaison.storage import inbox
from liaison.storage.db import Database


class FixedClock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms


class NoRooms:
    def __init__(self) -> None:
        self.rooms: dict[str, Any] = {}


async def _kept(db: Database) -> list[str]:
    async with db.read() as conn:
        return [item.event_id for item in await inbox.list_undecryptable(conn)]


async def test_a_notified_event_is_dropped_a_day_after_the_notice_and_not_before(
    tmp_path: Path,
) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    clock = FixedClock(1_000_000)
    async with db.transaction() as conn:
        for event_id in ("$notified", "$waiting"):
            await inbox.save_undecryptable(conn, event_id=event_id, room_id="!r:x", sender="@a:x",
                                           session_id="S", source={}, received_ms=clock.ms)
        await inbox.mark_notified(conn, "$notified", now_ms=clock.ms)
    tracker = UndecryptableTracker(NoRooms(), db, clock, grace_ms=30_000,  # type: ignore[arg-type]
                                   wake_sender=lambda: None)

    async def handle(room: Any, event: Any) -> None:
        raise AssertionError("nothing here can be decrypted")

    clock.ms += KEEP_AFTER_NOTICE_MS - 1
    await tracker.retry(handle)
    assert await _kept(db) == ["$notified", "$waiting"]
    clock.ms += 1
    await tracker.retry(handle)
    assert await _kept(db) == ["$waiting"]
    await db.close()


class DisconnectingClient(NoRooms):
    """The homeserver drops the connection while the room key is being requested."""

    async def request_room_key(self, event: Any) -> Any:
        raise ServerDisconnectedError()


async def test_a_key_request_cut_off_by_the_homeserver_keeps_the_message_and_the_bot_running(
    tmp_path: Path,
) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    tracker = UndecryptableTracker(DisconnectingClient(), db, FixedClock(1_000_000),  # type: ignore[arg-type]
                                   grace_ms=30_000, wake_sender=lambda: None)
    event = MegolmEvent.from_dict({
        "type": "m.room.encrypted", "event_id": "$lost", "sender": "@kz:x",
        "origin_server_ts": 1, "room_id": "!r:x",
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "k",
                    "ciphertext": "c", "session_id": "S", "device_id": "D"}})
    assert isinstance(event, MegolmEvent)

    try:
        await tracker.track(MatrixRoom("!r:x", "@liaison:x"), event)  # does not raise
        assert await _kept(db) == ["$lost"]
    finally:
        await db.close()
