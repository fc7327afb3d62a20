"""A post's room upgraded (tombstone): the bot follows it to the replacement, serves the
post there, says which `posts[].room` to update, and cases delivered in the old room go on
in the new one."""

from __future__ import annotations

from urllib.parse import quote

from devkit.synapse import LocalSynapse
from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_chasing import ANSWER_TIMEOUT_S, post
from tests.e2e.test_notifications import ask
from tests.e2e.test_resilience import wait_for_log


async def test_an_upgraded_post_room_is_followed_and_its_cases_continue_there(
    synapse: LocalSynapse, officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz, uz = await officer_factory("kz"), await officer_factory("uz")
    kz_room, uz_room = await kz.create_room("KZ post"), await uz.create_room("UZ post")
    bot = await bot_factory(config={"posts": [
        post("KZ-ZHIBEK", kz_room, neighbours=["UZ-TERMEZ"]),
        post("UZ-TERMEZ", uz_room, neighbours=["KZ-ZHIBEK"]),
    ]})
    for officer, room_id in ((kz, kz_room), (uz, uz_room)):
        await officer.invite(room_id, bot.user_id)
        await officer.wait_until_joined(room_id, bot.user_id)
    await ask(kz, kz_room, bot.user_id, "!alert urgent to:UZ-TERMEZ\nWatch the bridge.")
    await uz.wait_for(lambda m: "KZ-0001" in (m.body or ""), room_id=uz_room,
                      sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)

    # Termez upgrades its room, as Element does: a new room, and the members invited.
    upgraded = await synapse.request(
        "POST", f"/_matrix/client/v3/rooms/{quote(uz_room)}/upgrade", {"new_version": "11"},
        token=uz.client.access_token)
    new_room = upgraded["replacement_room"]
    await uz.invite(new_room, bot.user_id)
    await uz.wait_until_joined(new_room, bot.user_id)
    warning = await wait_for_log(bot, lambda r: str(r.get("msg", "")).startswith(
        "the room of post UZ-TERMEZ was upgraded"))
    assert f'set posts[1].room to "{new_room}"' in warning["msg"], warning

    # A new case for Termez goes to the new room.
    await ask(kz, kz_room, bot.user_id, "!alert urgent to:UZ-TERMEZ\nSecond truck.")
    second = await uz.wait_for(lambda m: "KZ-0002" in (m.body or ""), room_id=new_room,
                               sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    assert second.encrypted and "Second truck." in (second.body or "")

    # The case delivered in the old room is acknowledged from the new one...
    acked = await ask(uz, new_room, bot.user_id, "!ack KZ-0001")
    assert (acked.body or "").startswith("Acknowledged KZ-0001"), acked.describe()
    await kz.wait_for(lambda m: "acknowledged KZ-0001" in (m.body or ""), room_id=kz_room,
                      sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    # ... and what the origin says about it reaches Termez in the new room.
    await ask(kz, kz_room, bot.user_id, "!update KZ-0001 The truck turned back.")
    update = await uz.wait_for(lambda m: "The truck turned back." in (m.body or ""),
                               room_id=new_room, sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    assert update.encrypted
