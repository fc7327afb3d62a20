"""Log lines: JSON and text, with the room, event and case of the work in hand."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nio import Event, RoomSendError

from liaison.bot.logs import current_case, log_context, log_handler, note_case
from liaison.bot.sender import OutboxSender, SenderSettings
from liaison.storage import outbox
from liaison.storage.db import Database
from tests.unit.test_sender import ROOM, FixedClock, ScriptedClient


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO, io.StringIO]]:
    """A logger for the test whose records go to a JSON and a text stream."""
    logger = logging.getLogger("liaison.test")
    json_out, text_out = io.StringIO(), io.StringIO()
    handlers = [log_handler("json", json_out), log_handler("text", text_out)]
    logger.handlers[:] = handlers
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, json_out, text_out
    logger.handlers.clear()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_in_an_event_name_its_room_event_and_then_its_case(
    lines: tuple[logging.Logger, io.StringIO, io.StringIO]
) -> None:
    logger, json_out, text_out = lines
    with log_context(room_id="!uz:example.org", event_id="$ack"):
        logger.info("before the case is known")
        note_case("KZ-0042")
        logger.info("case event handled", extra={"step": "ack.remind.1"})
    logger.info("after the event")

    before, during, after = json_lines(json_out)
    assert (before["msg"], before["room_id"], before["event_id"]) == (
        "before the case is known", "!uz:example.org", "$ack")
    assert "case_ref" not in before
    assert {k: during[k] for k in ("level", "logger", "msg", "room_id", "event_id", "case_ref",
                                   "step")} == {
        "level": "info", "logger": "liaison.test", "msg": "case event handled",
        "room_id": "!uz:example.org", "event_id": "$ack", "case_ref": "KZ-0042",
        "step": "ack.remind.1"}
    assert set(after) == {"ts", "level", "logger", "msg"}

    text = text_out.getvalue().splitlines()
    assert text[1].endswith(" INFO    liaison.test: case event handled step=ack.remind.1 "
                            "room_id=!uz:example.org event_id=$ack case_ref=KZ-0042"), text[1]
    assert text[2].endswith(" INFO    liaison.test: after the event"), text[2]


def test_a_field_given_with_extra_wins_over_the_context(
    lines: tuple[logging.Logger, io.StringIO, io.StringIO]
) -> None:
    logger, json_out, _ = lines
    with log_context(room_id="!kz:example.org", case_ref="KZ-0001"):
        logger.warning("giving up on message", extra={"room_id": "!uz:example.org"})
    [line] = json_lines(json_out)
    assert (line["level"], line["room_id"], line["case_ref"]) == (
        "warning", "!uz:example.org", "KZ-0001")


def test_a_case_noted_inside_a_block_is_forgotten_after_it() -> None:
    with log_context(room_id="!uz:example.org"):
        with log_context(event_id="$inner"):
            note_case("KZ-0042")
            assert current_case() == "KZ-0042"
        assert current_case() is None
    with pytest.raises(TypeError, match="body"):
        with log_context(body="secret"):
            pass


async def test_concurrent_sends_each_keep_their_own_room_and_case(
    lines: tuple[logging.Logger, io.StringIO, io.StringIO]
) -> None:
    logger, json_out, _ = lines

    async def send(room: str, ref: str) -> None:
        with log_context(room_id=room, case_ref=ref):
            await asyncio.sleep(0.01)
            logger.info("sent")

    await asyncio.gather(send("!a:example.org", "KZ-0001"), send("!b:example.org", "UZ-0002"))
    assert sorted((line["room_id"], line["case_ref"]) for line in json_lines(json_out)) == [
        ("!a:example.org", "KZ-0001"), ("!b:example.org", "UZ-0002")]


async def retried(db: Database, message_id: int) -> None:
    """Until the message has been tried once and put back for later."""
    while True:
        async with db.read() as conn:
            message = await outbox.get(conn, message_id)
        if message is not None and message.attempts:
            return
        await asyncio.sleep(0.01)


async def test_a_failed_send_is_logged_with_its_room_and_case(
    tmp_path: Path, lines: tuple[logging.Logger, io.StringIO, io.StringIO]
) -> None:
    _, json_out, _ = lines
    logging.getLogger("liaison.bot.sender").handlers[:] = logging.getLogger("liaison.test").handlers
    db = await Database.open(tmp_path / "db.sqlite")
    try:
        clock = FixedClock(1_000_000)
        client = ScriptedClient([RoomSendError("Too Many Requests", "M_LIMIT_EXCEEDED",
                                               retry_after_ms=60_000)])
        sender = OutboxSender(db, client, clock, SenderSettings())  # type: ignore[arg-type]
        async with db.transaction() as conn:
            queued = await outbox.enqueue(conn, room_id=ROOM, event_type="m.room.message",
                                          content={"body": "Suspected heroin"},
                                          now_ms=clock.ms, kind="case-relay",
                                          case_ref="KZ-0042")
        running = asyncio.create_task(sender.run())
        await asyncio.wait_for(retried(db, queued.id), timeout=5)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    finally:
        logging.getLogger("liaison.bot.sender").handlers.clear()
        await db.close()
    [line] = [line for line in json_lines(json_out) if line["logger"] == "liaison.bot.sender"]
    assert (line["msg"], line["room_id"], line["case_ref"]) == (
        "send failed; will retry", ROOM, "KZ-0042")
    assert "Suspected heroin" not in json_out.getvalue()


def test_nio_never_quotes_an_event_that_fails_its_schema_check() -> None:
    out = io.StringIO()
    nio_logger = logging.getLogger("nio.events.misc")
    nio_logger.addHandler(log_handler("json", out))
    try:
        Event.parse_decrypted_event({
            "type": "m.room.message", "event_id": "$bad", "sender": "@kz:example.org",
            "origin_server_ts": 1, "room_id": "!kz:example.org",
            "content": {"msgtype": "m.text", "body": 12345, "secret": "Suspected heroin"}})
    finally:
        nio_logger.handlers.clear()
    [line] = json_lines(out)
    assert line["msg"] == ("Error validating an event (details withheld: they quote the "
                           "event, which may be a message)")
    assert "Suspected heroin" not in out.getvalue()


def test_nio_never_quotes_a_decrypted_olm_payload_that_fails_its_schema_check() -> None:
    out = io.StringIO()
    nio_logger = logging.getLogger("nio.crypto.log")
    nio_logger.addHandler(log_handler("json", out))
    try:
        nio_logger.error("Error validating decrypted Olm event from @kz:example.org: "
                         "'Suspected heroin' is not of type 'object'")
    finally:
        nio_logger.handlers.clear()
    [line] = json_lines(out)
    assert line["msg"].startswith("Error validating an event (details withheld")
    assert "Suspected heroin" not in out.getvalue()
