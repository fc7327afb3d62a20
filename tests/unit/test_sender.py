"""The outbox worker's retry decisions, against a stand-in client (no network here).

End-to-end behaviour with a real homeserver is in tests/e2e/test_resilience.py;
this checks what a real Synapse relaxed for tests never does: answer 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nio import RoomSendError, RoomSendResponse

from liaison.bot.sender import RELAY_HEAD_START_S, OutboxSender, SenderSettings
from liaison.storage import outbox
from liaison.storage.db import Database
from liaison.storage.outbox import OutboxMessage

ROOM = "!room:example.org"


class FixedClock:
    def __init__(self, now_ms: int) -> None:
        self.ms = now_ms

    def now_ms(self) -> int:
        return self.ms


@dataclass
class Room:
    encrypted: bool = True


@dataclass
class ScriptedClient:
    """Answers room_send from a script and records the transaction ids it was given."""

    answers: list[Any]
    rooms: dict[str, Room] = field(default_factory=lambda: {ROOM: Room()})
    txn_ids: list[str] = field(default_factory=list)

    async def room_send(self, room_id: str, event_type: str, content: dict[str, Any], *,
                        tx_id: str, ignore_unverified_devices: bool) -> Any:
        self.txn_ids.append(tx_id)
        return self.answers.pop(0)


async def _queued(db: Database, now: int, body: str = "hello") -> outbox.OutboxMessage:
    async with db.transaction() as conn:
        return await outbox.enqueue(conn, room_id=ROOM, event_type="m.room.message",
                                    content={"body": body}, now_ms=now)


async def _one_round(sender: OutboxSender, db: Database, clock: FixedClock) -> None:
    async with db.read() as conn:
        batch = await outbox.next_batch(conn, now_ms=clock.now_ms(), limit=4)
    await asyncio.gather(*(sender._send(message) for message in batch))


async def test_rate_limited_send_waits_retry_after_and_resends_with_the_same_txn_id(
    tmp_path: Path,
) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    clock = FixedClock(1_000_000)
    client = ScriptedClient([
        RoomSendError("Too Many Requests", "M_LIMIT_EXCEEDED", retry_after_ms=1500),
        RoomSendResponse("$sent", ROOM),
    ])
    sender = OutboxSender(db, client, clock, SenderSettings())  # type: ignore[arg-type]
    message = await _queued(db, clock.ms)

    await _one_round(sender, db, clock)
    async with db.read() as conn:
        waiting = await outbox.get(conn, message.id)
        assert waiting is not None and waiting.state == "pending"
        assert waiting.next_attempt_ms == clock.ms + 1500
        assert await outbox.next_batch(conn, now_ms=clock.ms + 1499, limit=4) == []

    clock.ms += 1500
    await _one_round(sender, db, clock)
    async with db.read() as conn:
        sent = await outbox.get(conn, message.id)
    assert sent is not None and sent.state == "sent" and sent.event_id == "$sent"
    assert client.txn_ids == [message.txn_id, message.txn_id]
    await db.close()


async def test_forbidden_room_gives_up_after_a_few_attempts_and_the_queue_moves_on(
    tmp_path: Path,
) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    clock = FixedClock(1_000_000)
    forbidden = RoomSendError("You are not in this room", "M_FORBIDDEN")
    client = ScriptedClient([forbidden] * 5 + [RoomSendResponse("$next", ROOM)])
    sender = OutboxSender(db, client, clock, SenderSettings(backoff_max_ms=1000))  # type: ignore[arg-type]
    first = await _queued(db, clock.ms, "first")
    second = await _queued(db, clock.ms, "second")

    for _ in range(6):
        await _one_round(sender, db, clock)
        clock.ms += 1000
    async with db.read() as conn:
        gave_up = await outbox.get(conn, first.id)
        after = await outbox.get(conn, second.id)
    assert gave_up is not None and gave_up.state == "failed" and gave_up.attempts == 5
    assert after is not None and after.state == "sent"
    await db.close()


async def test_nothing_is_sent_into_an_unencrypted_room(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    clock = FixedClock(1_000_000)
    client = ScriptedClient([], rooms={ROOM: Room(encrypted=False)})
    sender = OutboxSender(db, client, clock, SenderSettings())  # type: ignore[arg-type]
    message = await _queued(db, clock.ms)

    await _one_round(sender, db, clock)
    async with db.read() as conn:
        refused = await outbox.get(conn, message.id)
    assert refused is not None and refused.state == "failed"
    assert client.txn_ids == []
    await db.close()


@dataclass
class TimedClient:
    """Records when each send started and ended; every send succeeds."""

    rooms: dict[str, Room] = field(default_factory=dict)
    sends: list[tuple[str, float, float]] = field(default_factory=list)

    async def room_send(self, room_id: str, event_type: str, content: dict[str, Any], *,
                        tx_id: str, ignore_unverified_devices: bool) -> Any:
        started = time.monotonic()
        await asyncio.sleep(0.01)  # the homeserver persisting it
        self.sends.append((content["body"], started, time.monotonic()))
        return RoomSendResponse(f"${tx_id}", room_id)


async def test_a_relay_goes_out_first_and_the_answer_to_the_sender_waits_a_head_start(
    tmp_path: Path,
) -> None:
    """The answer to the sender is queued first, the relay to the counterpart second, in
    one transaction: the relay is sent first, and the answer only RELAY_HEAD_START_S
    after the homeserver accepted it, so that the counterpart's sync is not kept waiting
    behind the answer on a homeserver that handles one thing at a time."""
    db = await Database.open(tmp_path / "db.sqlite")
    clock = FixedClock(1_000_000)
    counterpart = "!counterpart:example.org"
    client = TimedClient(rooms={ROOM: Room(), counterpart: Room()})
    sender = OutboxSender(db, client, clock, SenderSettings())  # type: ignore[arg-type]
    async with db.transaction() as conn:
        await outbox.enqueue(conn, room_id=ROOM, event_type="m.room.message",
                             content={"body": "answer"}, now_ms=clock.ms)
        await outbox.enqueue(conn, room_id=counterpart, event_type="m.room.message",
                             content={"body": "relay"}, now_ms=clock.ms, kind="case-relay")
    running = asyncio.create_task(sender.run())
    try:
        for _ in range(200):
            if len(client.sends) == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await db.close()
    (first, _, relay_done), (second, answer_started, _) = client.sends
    assert (first, second) == ("relay", "answer")
    assert answer_started - relay_done >= RELAY_HEAD_START_S * 0.9


def test_a_message_for_an_upgraded_room_goes_to_its_replacement_without_old_relations() -> None:
    message = OutboxMessage(
        id=1, room_id="!old:x", event_type="m.room.message",
        content={"msgtype": "m.notice", "body": "b",
                 "m.relates_to": {"rel_type": "m.thread", "event_id": "$in-old-room"}},
        txn_id="t", state="pending", attempts=0, next_attempt_ms=0, created_ms=0,
        sent_ms=None, event_id=None, last_error=None, kind="case-update", case_ref="KZ-1")
    sender = OutboxSender.__new__(OutboxSender)
    sender._route = lambda room_id: {"!old:x": "!new:x"}.get(room_id, room_id)
    routed = sender._routed(message)
    assert (routed.room_id, routed.content) == ("!new:x", {"msgtype": "m.notice", "body": "b"})
    assert routed.id == message.id and routed.txn_id == message.txn_id
    sender._route = lambda room_id: room_id
    assert sender._routed(message) is message
