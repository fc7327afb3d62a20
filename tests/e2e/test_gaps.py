"""A burst larger than one sync's timeline: every command is still answered, once."""

from __future__ import annotations

from tests.e2e.conftest import BotFactory, OfficerFactory, known_to_the_bot
from tests.e2e.test_foundation import open_room, replies_to


async def test_commands_beyond_the_sync_timeline_limit_are_all_answered_once(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz = await officer_factory("kz")
    bot = await bot_factory(config={
        "limits": {"commands_per_user": None, "commands_per_room": None},
        **known_to_the_bot(kz)})
    room_id = await open_room(kz, bot)
    await bot.stop()

    sent = [await kz.send_text(room_id, "!ping") for _ in range(130)]  # > 100 per timeline
    await bot.start()
    await kz.wait_for(lambda m: m.sender == bot.user_id and replies_to(m, sent[-1]),
                      room_id=room_id, timeout=120)
    await kz.wait_for(lambda m: m.sender == bot.user_id and replies_to(m, sent[0]),
                      room_id=room_id, timeout=120)
    answered = [m for m in kz.messages(room_id, sender=bot.user_id)
                if any(replies_to(m, event_id) for event_id in sent)]
    assert sorted(m.content["m.relates_to"]["m.in_reply_to"]["event_id"] for m in answered) == (
        sorted(sent))
    assert any(r.get("msg") == "filled a timeline gap" for r in bot.log_records())
