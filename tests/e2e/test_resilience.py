"""The bot against late or missing room keys, crashes and homeserver outages.

Every test drives the real bot process (`python -m liaison.bot run`) with a real
officer and asserts only on what the officer decrypted, plus, where the point
is durability, on the bot's own database. The test configuration's grace
period for undecryptable messages is 3 s (see BotProcess.config_dict).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from devkit.botprocess import BotProcess
from devkit.officer import Officer, SeenMessage
from devkit.synapse import LocalSynapse
from liaison.bot.rawapi import request_json
from tests.e2e.conftest import BotFactory, OfficerFactory, known_to_the_bot, post_rooms
from tests.e2e.test_foundation import verify

GRACE_S = 3.0  # decryption.grace_period in the test configuration
TIMER_SLACK_S = 2.0  # the bot checks kept events every ~0.75 s, then sends via the outbox
ANSWER_TIMEOUT_S = 60.0
UNREADABLE = "could not decrypt"
NOT_YET_MSG = "message not decryptable yet; waiting for its key"
NOTIFIED_MSG = "told sender their message could not be decrypted"
SEND_FAILED_MSG = "send failed; will retry"
GAVE_UP_MSG = "giving up on message"
FALLBACK_PUBLISHED_MSG = "fallback key published"


def replies_to(message: SeenMessage, event_id: str) -> bool:
    return bool(message.relates_to.get("m.in_reply_to", {}).get("event_id") == event_id)


def bot_replies(
    officer: Officer, bot: BotProcess, room_id: str, event_id: str
) -> list[SeenMessage]:
    """Everything the bot said in the room as a reply to `event_id`, as the officer read it."""
    return [m for m in officer.messages(room_id, sender=bot.user_id) if replies_to(m, event_id)]


async def open_room(officer: Officer, bot: BotProcess) -> str:
    room_id = await officer.create_room("resilience", invite=[bot.user_id])
    await officer.wait_until_joined(room_id, bot.user_id)
    return room_id


async def ask(officer: Officer, bot: BotProcess, room_id: str, body: str = "!ping",
              timeout: float = ANSWER_TIMEOUT_S) -> SeenMessage:
    """Send a command and wait for the bot's decrypted answer to it.

    Also a barrier: the outbox keeps each room's order, so anything the bot
    queued for this room before this answer has been delivered before it.
    """
    event_id = await officer.send_text(room_id, body)
    answer = await officer.wait_for(
        lambda m: m.sender == bot.user_id and replies_to(m, event_id),
        room_id=room_id, timeout=timeout,
    )
    assert answer.encrypted and answer.body is not None, answer.describe()
    return answer


async def wait_for_log(
    bot: BotProcess, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 30.0
) -> dict[str, Any]:
    """The first bot log record matching `predicate`, polling the log file."""
    deadline = time.monotonic() + timeout
    while True:
        for record in bot.log_records():
            if predicate(record):
                return record
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching bot log record after {timeout}s:\n"
                                 f"{bot.log_tail()}")
        await asyncio.sleep(0.05)


def about(msg: str, event_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: r.get("msg") == msg and r.get("event_id") == event_id


async def sleep_until(moment: float) -> None:
    """Wait until time.monotonic() reaches `moment` (for asserting that nothing happens)."""
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


@asynccontextmanager
async def left_running(synapse: LocalSynapse) -> AsyncIterator[None]:
    """The homeserver is shared by the whole session: restart it whatever happens here."""
    try:
        yield
    finally:
        if not synapse.running:
            await synapse.start()


async def wait_for_delivery(
    officer: Officer, bot: BotProcess, room_id: str, event_id: str
) -> SeenMessage:
    """The bot's reply to `event_id`; fails at once, with the bot's log, if it gave up sending."""
    delivered = asyncio.create_task(officer.wait_for(
        lambda m: m.sender == bot.user_id and replies_to(m, event_id),
        room_id=room_id, timeout=ANSWER_TIMEOUT_S,
    ))
    gave_up = asyncio.create_task(wait_for_log(
        bot, lambda r: r.get("msg") == GAVE_UP_MSG and r.get("room_id") == room_id,
        timeout=ANSWER_TIMEOUT_S + 5,
    ))
    try:
        await asyncio.wait({delivered, gave_up}, return_when=asyncio.FIRST_COMPLETED)
        if delivered.done():
            return delivered.result()
        record = gave_up.result()
        raise AssertionError(f"the bot gave up sending into {room_id}: {record.get('error')}\n"
                             f"{bot.log_tail()}")
    finally:
        for task in (delivered, gave_up):
            task.cancel()
        await asyncio.gather(delivered, gave_up, return_exceptions=True)


def outbox_rows(bot: BotProcess, kind: str) -> list[dict[str, Any]]:
    """The bot's outbox rows of one kind, read-only, straight from its database."""
    uri = f"{(bot.data_dir / 'liaison.db').as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT state, attempts, content, event_id, last_error FROM outbox WHERE kind = ?",
            (kind,),
        ).fetchall()
    conn.close()
    return [dict(row) for row in rows]


async def test_message_sent_before_the_bot_had_its_key_is_answered_when_the_key_arrives(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz = await officer_factory("kz")
    bot = await bot_factory(config=known_to_the_bot(kz))
    room_id = await open_room(kz, bot)

    sent_at = time.monotonic()
    ping = await kz.send_text_withholding_key(room_id, "!ping", withhold_from=bot.user_id)
    await wait_for_log(bot, about(NOT_YET_MSG, ping.event_id))  # seen, and unreadable
    assert not bot_replies(kz, bot, room_id, ping.event_id)
    await ping.release()

    answer = await kz.wait_for(
        lambda m: m.sender == bot.user_id and replies_to(m, ping.event_id),
        room_id=room_id, timeout=ANSWER_TIMEOUT_S,
    )
    assert answer.encrypted and answer.msgtype == "m.notice"
    assert "pong" in (answer.body or "").lower(), answer.describe()
    assert UNREADABLE not in (answer.body or "")

    await sleep_until(sent_at + GRACE_S + TIMER_SLACK_S)  # long past the grace period
    await ask(kz, bot, room_id)
    replies = bot_replies(kz, bot, room_id, ping.event_id)
    assert [m.event_id for m in replies] == [answer.event_id], [m.describe() for m in replies]
    assert not [m for m in kz.messages(room_id, sender=bot.user_id)
                if UNREADABLE in (m.body or "")]


async def test_message_whose_key_never_arrives_gets_one_notice_after_the_grace_period(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz = await officer_factory("kz")
    bot = await bot_factory(config=known_to_the_bot(kz))
    room_id = await open_room(kz, bot)

    sent_at = time.monotonic()
    lost = await kz.send_text_withholding_key(room_id, "!ping", withhold_from=bot.user_id)
    notice = await kz.wait_for(
        lambda m: m.sender == bot.user_id and replies_to(m, lost.event_id),
        room_id=room_id, timeout=ANSWER_TIMEOUT_S,
    )
    assert notice.received_at - sent_at >= GRACE_S - 0.1, "notice came before the grace period"
    assert notice.encrypted and notice.msgtype == "m.text"  # it rings the sender
    assert (await kz.push_verdict(notice)).highlight
    assert UNREADABLE in (notice.body or ""), notice.describe()
    assert notice.content["m.mentions"] == {"user_ids": [kz.user_id]}

    await sleep_until(notice.received_at + GRACE_S + TIMER_SLACK_S)
    await ask(kz, bot, room_id)
    assert [m.event_id for m in bot_replies(kz, bot, room_id, lost.event_id)] == [
        notice.event_id]

    await bot.stop()
    await bot.start()  # ready only after its first sync batch and retry of kept events
    await ask(kz, bot, room_id)
    assert [m.event_id for m in bot_replies(kz, bot, room_id, lost.event_id)] == [
        notice.event_id]


async def test_queued_notice_survives_a_bot_crash_and_homeserver_outage_and_is_delivered_once(
    synapse: LocalSynapse, officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    # A longer grace than usual so stopping Synapse surely comes before it ends.
    grace_s = 8.0
    kz = await officer_factory("kz")
    bot = await bot_factory(config={"decryption": {"grace_period": f"{grace_s:g}s"},
                                    **known_to_the_bot(kz)})
    room_id = await open_room(kz, bot)

    async with left_running(synapse):
        lost = await kz.send_text_withholding_key(room_id, "!ping", withhold_from=bot.user_id)
        await wait_for_log(bot, about(NOT_YET_MSG, lost.event_id))
        await synapse.stop()
        assert not [r for r in bot.log_records() if r.get("msg") == NOTIFIED_MSG], (
            "the grace period ended before the homeserver was down; test setup too slow")

        # The notice is queued in the outbox and fails to leave while Synapse is down.
        queued = await wait_for_log(bot, about(NOTIFIED_MSG, lost.event_id),
                                    timeout=grace_s + 30)
        await wait_for_log(bot, lambda r: r.get("msg") == SEND_FAILED_MSG
                           and r.get("room_id") == room_id and r["ts"] >= queued["ts"])
        await bot.kill()
        await bot.start(wait_ready=False)  # waits for the homeserver
        await synapse.start()
        await bot.wait_ready()

    notice = await wait_for_delivery(kz, bot, room_id, lost.event_id)
    assert UNREADABLE in (notice.body or ""), notice.describe()
    assert notice.content["m.mentions"] == {"user_ids": [kz.user_id]}
    await ask(kz, bot, room_id)
    assert [m.event_id for m in bot_replies(kz, bot, room_id, lost.event_id)] == [
        notice.event_id]

    rows = outbox_rows(bot, "undecryptable")
    assert len(rows) == 1, rows
    (row,) = rows
    content = json.loads(row["content"])
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": lost.event_id}}
    assert row["state"] == "sent" and row["event_id"] == notice.event_id, row
    assert row["attempts"] >= 1, row  # it really waited in the outbox during the outage


async def test_bot_rides_out_a_homeserver_restart(
    synapse: LocalSynapse, officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz = await officer_factory("kz")
    bot = await bot_factory(config=known_to_the_bot(kz))
    room_id = await open_room(kz, bot)
    await ask(kz, bot, room_id)

    async with left_running(synapse):
        await synapse.restart()

    answer = await ask(kz, bot, room_id, timeout=ANSWER_TIMEOUT_S)
    assert "pong" in (answer.body or "").lower(), answer.describe()
    assert bot.running, bot.log_tail()


async def claim_bot_key(officer: Officer, bot: BotProcess) -> dict[str, Any]:
    """Claim one of the bot device's keys as a client about to open a session does
    (a one-time key while there are any, then the fallback key)."""
    assert bot.device_id
    result = await request_json(officer.client, "POST", "/_matrix/client/v3/keys/claim", {
        "one_time_keys": {bot.user_id: {bot.device_id: "signed_curve25519"}}})
    assert result.ok, result
    keys = result.body.get("one_time_keys", {}).get(bot.user_id, {}).get(bot.device_id, {})
    assert len(keys) <= 1, keys
    key = next(iter(keys.values()), None)
    assert key is not None, "the bot has no key left to claim: no fallback key"
    return dict(key)


async def test_a_new_device_reaches_the_bot_after_its_one_time_keys_ran_out_while_it_was_down(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    """While the bot is down nothing replenishes its one-time keys; once they are gone a
    new device can only open an Olm session with the bot's fallback key, whose private
    half must have survived the restart."""
    kz = await officer_factory("kz")
    room_id = await kz.create_room("post")  # a post's room: the newcomer joins it too
    bot = await bot_factory(config=post_rooms(room_id))
    await kz.invite(room_id, bot.user_id)
    await kz.wait_until_joined(room_id, bot.user_id)
    await ask(kz, bot, room_id)
    await wait_for_log(bot, lambda r: r.get("msg") == FALLBACK_PUBLISHED_MSG)
    newcomer = await officer_factory("kz-newcomer")
    await kz.invite(room_id, newcomer.user_id)
    await newcomer.join(room_id)
    await newcomer.wait_until_joined(room_id, bot.user_id)

    await bot.stop()
    one_time, fallback = 0, None
    for _ in range(200):
        key = await claim_bot_key(kz, bot)
        if key.get("fallback"):
            fallback = key
            break
        one_time += 1
    assert fallback is not None and one_time >= 1, (one_time, fallback)
    device_keys = await request_json(kz.client, "POST", "/_matrix/client/v3/keys/query",
                                     {"device_keys": {bot.user_id: [bot.device_id]}})
    device = device_keys.body["device_keys"][bot.user_id][bot.device_id]
    verify(fallback, bot.user_id, device["keys"][f"ed25519:{bot.device_id}"],
           key_id=f"ed25519:{bot.device_id}")
    assert (await claim_bot_key(kz, bot)) == fallback  # handed out again, not used up
    # The newcomer has no session with the bot: its message needs a key claimed now.
    assert newcomer.client.olm is not None
    bot_curve = device["keys"][f"curve25519:{bot.device_id}"]
    assert not newcomer.client.olm.session_store.get(bot_curve)

    # The newcomer's client opens its session with the fallback key and sends the room
    # key while the bot is away; the restarted bot reads it and answers.
    ping = await newcomer.send_text(room_id, "!ping")
    await bot.start()
    answer = await newcomer.wait_for(
        lambda m: m.sender == bot.user_id and replies_to(m, ping), room_id=room_id,
        timeout=ANSWER_TIMEOUT_S)
    assert answer.encrypted and (answer.body or "").startswith("pong"), answer.describe()
    published = [r for r in bot.log_records() if r.get("msg") == FALLBACK_PUBLISHED_MSG]
    assert len(published) == 1, published  # the restart found it fresh and kept it
