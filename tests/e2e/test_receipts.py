"""Presence of mind: the bot marks each command it processed as read, in the command's
thread, so an officer's client shows that the bot took it in; and it keeps its display
name without rewriting it (a membership event in every room) at each start."""

from __future__ import annotations

from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_chasing import ANSWER_TIMEOUT_S, post


async def test_each_command_is_marked_read_in_its_own_thread(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz, uz = await officer_factory("kz"), await officer_factory("uz")
    kz_room, uz_room = await kz.create_room("post"), await uz.create_room("post")
    bot = await bot_factory(config={"posts": [
        post("KZ-ZHIBEK", kz_room, neighbours=["UZ-TERMEZ"]),
        post("UZ-TERMEZ", uz_room, neighbours=["KZ-ZHIBEK"]),
    ]})
    for officer, room_id in ((kz, kz_room), (uz, uz_room)):
        await officer.invite(room_id, bot.user_id)
        await officer.wait_until_joined(room_id, bot.user_id)

    alert = await kz.send_text(kz_room, "!alert urgent to:UZ-TERMEZ\nWatch the bridge.")
    await kz.wait_for(lambda m: (m.body or "").startswith("KZ-0001: Urgent alert sent"),
                      room_id=kz_room, sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    await kz.wait_for_receipt(kz_room, bot.user_id, alert, thread_id="main",
                              timeout=ANSWER_TIMEOUT_S)

    # A command typed in the case's thread is marked read in that thread.
    status = await kz.send_text(kz_room, "!status", thread_root=alert)
    answer = await kz.wait_for(
        lambda m: m.relates_to.get("m.in_reply_to", {}).get("event_id") == status,
        room_id=kz_room, sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    assert answer.relates_to.get("event_id") == alert and "KZ-0001" in (answer.body or "")
    await kz.wait_for_receipt(kz_room, bot.user_id, status, thread_id=alert,
                              timeout=ANSWER_TIMEOUT_S)
    assert kz.read_receipt(kz_room, bot.user_id, "main") == alert  # main timeline unmoved
    # Messages that are not commands are not marked.
    chatter = await kz.send_text(kz_room, "thanks all")
    ping = await kz.send_text(kz_room, "!ping")
    await kz.wait_for_receipt(kz_room, bot.user_id, ping, timeout=ANSWER_TIMEOUT_S)
    assert kz.read_receipt(kz_room, bot.user_id) != chatter


async def test_the_display_name_is_set_once_and_a_restart_adds_no_noise(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz = await officer_factory("kz")
    room_id = await kz.create_room("post")
    bot = await bot_factory(config={"bot": {"display_name": "Liaison (Almaty)"},
                                    "posts": [post("KZ-ZHIBEK", room_id)]})
    await kz.invite(room_id, bot.user_id)
    await kz.wait_until_joined(room_id, bot.user_id)
    ping = await kz.send_text(room_id, "!ping")
    await kz.wait_for(lambda m: m.relates_to.get("m.in_reply_to", {}).get("event_id") == ping,
                      room_id=room_id, sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    assert kz.client.rooms[room_id].user_name(bot.user_id) == "Liaison (Almaty)"

    def member_events() -> list[str]:
        return [m.event_id for m in kz.messages(room_id, sender=bot.user_id)
                if m.type == "m.room.member"]

    before = member_events()
    await bot.stop()
    await bot.start()
    again = await kz.send_text(room_id, "!ping")
    await kz.wait_for(lambda m: m.relates_to.get("m.in_reply_to", {}).get("event_id") == again,
                      room_id=room_id, sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    assert member_events() == before  # the name was right: nothing rewritten, no noise
