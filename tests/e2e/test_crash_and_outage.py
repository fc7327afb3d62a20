"""Processes die, homeservers go away, officers lose their phones: nothing is lost,
nothing is sent twice, and only trusted devices are obeyed.

Every test counts what the officers decrypted and reads the bot's database
(read-only) for what it holds.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

from devkit.botprocess import BotProcess
from devkit.officer import Officer, SeenMessage
from devkit.synapse import LocalSynapse
from liaison.bot.crosssigning import ensure_cross_signed
from liaison.commands.case_render import CASE_KEY
from tests.e2e.conftest import BotFactory, OfficerFactory, known_to_the_bot
from tests.e2e.test_case_flow import db_rows
from tests.e2e.test_cases import post, replies_to
from tests.e2e.test_foundation import raw_event
from tests.e2e.test_hostile_input import bot_rows, posts_for
from tests.e2e.test_resilience import ask, left_running, wait_for_log

DELIVERY_TIMEOUT_S = 90.0


def relayed_refs(officer: Officer, room_id: str, bot: BotProcess) -> list[str]:
    """The references of the cases relayed into a room, in the order the officer read them
    (decrypted: an undecrypted one has no content and is not counted)."""
    return [m.content[CASE_KEY]["ref"] for m in officer.messages(room_id, sender=bot.user_id)
            if isinstance(m.content.get(CASE_KEY), dict) and "about" not in m.content[CASE_KEY]]


async def until_relayed(officer: Officer, room_id: str, bot: BotProcess, count: int) -> None:
    """Until the officer has decrypted `count` distinct relayed cases in the room."""
    def enough(_: SeenMessage) -> bool:
        return len(set(relayed_refs(officer, room_id, bot))) >= count

    await officer.wait_for(enough, room_id=room_id, timeout=DELIVERY_TIMEOUT_S)


def answers(officer: Officer, room_id: str, bot: BotProcess, event_id: str) -> list[SeenMessage]:
    return [m for m in officer.messages(room_id, sender=bot.user_id) if replies_to(m, event_id)]


# --- crash ------------------------------------------------------------------------------


async def test_a_burst_of_fifty_alerts_survives_sigkill_each_delivered_once_everywhere(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz, uz, tj, af = [await officer_factory(name) for name in ("kz", "uz", "tj", "af")]
    rooms = {officer: await officer.create_room("post") for officer in (kz, uz, tj, af)}
    targets = ((uz, "UZ-TERMEZ", "Asia/Tashkent"), (tj, "TJ-PANJ", "Asia/Dushanbe"),
               (af, "AF-HAIRATAN", "Asia/Kabul"))
    bot = await bot_factory(config={
        "posts": [post("KZ-ZHIBEK", rooms[kz], "Asia/Almaty", []),
                  *(post(post_id, rooms[officer], zone, []) for officer, post_id, zone in targets)],
        "limits": {"commands_per_user": None, "commands_per_room": None},  # a burst on purpose
    })
    for officer, room_id in rooms.items():
        await officer.invite(room_id, bot.user_id)
        await officer.wait_until_joined(room_id, bot.user_id)
    kz_room = rooms[kz]

    async def burst() -> list[str]:
        return [await kz.send_text(kz_room, "!alert urgent to:UZ-TERMEZ,TJ-PANJ,AF-HAIRATAN\n"
                                   f"Burst {number:02d}") for number in range(50)]

    sending = asyncio.create_task(burst())
    await kz.wait_for(lambda m: len([a for a in kz.messages(kz_room, sender=bot.user_id)
                                     if (a.body or "").startswith("KZ-")]) >= 3,
                      room_id=kz_room, timeout=DELIVERY_TIMEOUT_S)
    await bot.kill()  # in the middle of routing: commands claimed, relays queued or in flight
    commands = await sending
    answered_before = {event_id for event_id in commands if answers(kz, kz_room, bot, event_id)}
    assert len(answered_before) < 50, "the bot finished before it was killed"
    await bot.start()

    for officer, _, _ in targets:
        await until_relayed(officer, rooms[officer], bot, 50)
    for officer, room_id in rooms.items():
        await ask(officer, bot, room_id)  # everything queued before has been delivered

    expected = [f"KZ-{number:04d}" for number in range(1, 51)]
    for officer, _, _ in targets:
        refs = relayed_refs(officer, rooms[officer], bot)
        assert sorted(refs) == expected, Counter(refs).most_common(3)  # each exactly once
        bursts = [burst for m in officer.messages(rooms[officer], sender=bot.user_id)
                  for burst in re.findall(r"Burst \d\d", m.body or "")]
        assert sorted(bursts) == [f"Burst {number:02d}" for number in range(50)]
    for event_id in commands:
        said = answers(kz, kz_room, bot, event_id)
        assert len(said) == 1 and (said[0].body or "").startswith("KZ-"), [
            m.describe() for m in said]

    assert bot_rows(bot, "SELECT count(*), count(DISTINCT text) FROM cases") == [(50, 50)]
    assert bot_rows(bot, "SELECT post, count(*) FROM deliveries GROUP BY post ORDER BY post") \
        == [("AF-HAIRATAN", 50), ("TJ-PANJ", 50), ("UZ-TERMEZ", 50)]
    assert bot_rows(bot, "SELECT state, count(*) FROM outbox WHERE kind = 'case-relay' "
                         "GROUP BY state") == [("sent", 150)]


# --- outage -----------------------------------------------------------------------------


async def test_deliveries_queued_through_a_homeserver_outage_arrive_once_and_in_order(
    synapse: LocalSynapse, officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    posts = await posts_for(officer_factory, bot_factory)
    kz, uz, tj, bot = posts.kz, posts.uz, posts.tj, posts.bot
    alerts = 6

    # The homeserver lets the bot send one message a second, so its messages queue up.
    await synapse.override_message_rate(bot.user_id, per_second=1, burst=1)
    try:
        commands = [await kz.send_text(posts.kz_room, f"!alert urgent to:UZ-TERMEZ,TJ-PANJ\n"
                                       f"Convoy {number}") for number in range(alerts)]
        async with left_running(synapse):
            await uz.wait_for(lambda m: relayed_refs(uz, posts.uz_room, bot) != [],
                              room_id=posts.uz_room, timeout=DELIVERY_TIMEOUT_S)
            await synapse.stop()
            queued = db_rows(posts, "SELECT count(*) FROM outbox WHERE state = 'pending' "
                                    "AND kind = 'case-relay'")
            assert queued[0][0] > 0, "everything left before the outage; test setup too slow"
            await wait_for_log(bot, lambda r: r.get("msg") == "send failed; will retry"
                               and "M_LIMIT_EXCEEDED" not in str(r.get("error")))
            await asyncio.sleep(1.0)  # a few more failed attempts while it is away
            assert bot.running, bot.log_tail()
            await synapse.start()
        await synapse.override_message_rate(bot.user_id, per_second=0, burst=0)

        expected = [f"KZ-{number:04d}" for number in range(1, alerts + 1)]
        for officer, room_id in ((uz, posts.uz_room), (tj, posts.tj_room)):
            await until_relayed(officer, room_id, bot, alerts)
            await posts.ask(officer, room_id, "!ping")
            assert relayed_refs(officer, room_id, bot) == expected  # once each, in order
        await posts.ask(kz, posts.kz_room, "!ping")
        said = [answers(kz, posts.kz_room, bot, event_id) for event_id in commands]
        assert [len(replies) for replies in said] == [1] * alerts
        in_room = [m.event_id for m in kz.messages(posts.kz_room, sender=bot.user_id)]
        assert sorted(said, key=lambda r: in_room.index(r[0].event_id)) == said  # in order
        assert [(r[0].body or "").split(":")[0] for r in said] == expected
    finally:
        await synapse.override_message_rate(bot.user_id, per_second=0, burst=0)

    assert db_rows(posts, "SELECT count(*) FROM cases") == [(alerts,)]
    assert db_rows(posts, "SELECT DISTINCT state FROM outbox") == [("sent",)]
    # Each room's queue really waited: its head was tried and failed, the rest behind it.
    assert db_rows(posts, "SELECT count(DISTINCT room_id) FROM outbox WHERE attempts > 0") \
        == [(3,)]


# --- key loss ---------------------------------------------------------------------------


async def test_an_officers_new_device_is_obeyed_under_tofu_and_refused_under_cross_signed(
    synapse: LocalSynapse, officer_factory: OfficerFactory, bot_factory: BotFactory,
    tmp_path: Path
) -> None:
    kz = await officer_factory("kz")
    tofu = await bot_factory(config=known_to_the_bot(kz))
    strict = await bot_factory(config={"trust": {"policy": "cross-signed"},
                                       **known_to_the_bot(kz)})
    localpart = kz.user_id[1:].split(":")[0]
    await ensure_cross_signed(kz.client, tmp_path / "kz-keys.json", f"devkit-{localpart}")
    rooms = {}
    for bot in (tofu, strict):
        rooms[bot.user_id] = await kz.create_room("post", invite=[bot.user_id])
        await kz.wait_until_joined(rooms[bot.user_id], bot.user_id)
        ping = await kz.send_text(rooms[bot.user_id], "!ping")
        await kz.wait_for(lambda m, p=ping, b=bot: m.sender == b.user_id and replies_to(m, p),
                          room_id=rooms[bot.user_id])

    # The officer's phone is lost: a new device of the same account, never cross-signed.
    phone = await Officer.create(synapse, localpart, tmp_path / "new-phone")
    await phone.start()
    try:
        assert phone.device_id != kz.device_id
        answers: dict[str, str] = {}
        for bot, expected in ((tofu, "pong"), (strict, "not cross-signed")):
            room_id = rooms[bot.user_id]
            ping = await phone.send_text(room_id, "!ping")
            answer = await kz.wait_for(lambda m, p=ping, b=bot: m.sender == b.user_id
                                       and replies_to(m, p), room_id=room_id, timeout=60)
            assert answer.encrypted and expected in (answer.body or ""), answer.describe()
            answers[bot.user_id] = answer.event_id
        refusal = answer
        assert "pong" not in (refusal.body or "")
        # Under tofu the room was told of the new device.
        notice = await kz.wait_for(lambda m: m.sender == tofu.user_id
                                   and phone.device_id in (m.body or ""),
                                   room_id=rooms[tofu.user_id], timeout=60)
        assert "new device" in (notice.body or "")
        # ... after the answer to the new device's !ping: answers go before notices.
        order = [m.event_id for m in kz.messages(rooms[tofu.user_id], sender=tofu.user_id)]
        assert order.index(answers[tofu.user_id]) < order.index(notice.event_id), order
        # Under cross-signed the new device was given no key for the refusal.
        seen = await phone.wait_for(lambda m: m.event_id == refusal.event_id,
                                    room_id=rooms[strict.user_id])
        assert seen.undecrypted
        # ... and was told why: the room key was withheld from it as unverified.
        raw = await raw_event(phone, rooms[strict.user_id], refusal.event_id)
        withheld = await phone.wait_for_withheld(raw["content"]["session_id"])
        assert (withheld["code"], withheld["room_id"], withheld["sender"]) == (
            "m.unverified", rooms[strict.user_id], strict.user_id), withheld
        assert not [w for w in phone.withheld if w.get("room_id") == rooms[tofu.user_id]]
    finally:
        await phone.stop()
