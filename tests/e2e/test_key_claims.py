"""A room full of new devices reads the bot's first answer: before it encrypts, the bot
opens an Olm session with every device in the room (claiming their one-time keys in
batches, retried), so no device is left without the room key."""

from __future__ import annotations

import asyncio

from devkit.officer import Officer
from tests.e2e.conftest import BotFactory, OfficerFactory, post_rooms
from tests.e2e.test_foundation import replies_to

SHIFT = 30


async def test_thirty_new_devices_writing_at_once_all_decrypt_the_answers_on_first_try(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    lead = await officer_factory("shift-lead")
    room_id = await lead.create_room("post")  # the post's room the whole shift joins
    bot = await bot_factory(config=post_rooms(room_id))
    await lead.invite(room_id, bot.user_id)
    await lead.wait_until_joined(room_id, bot.user_id)
    shift: list[Officer] = list(await asyncio.gather(
        *(officer_factory(f"shift{n}") for n in range(SHIFT - 1))))
    for officer in shift:
        await lead.invite(room_id, officer.user_id)
    everyone = [lead, *shift]

    async def join_and_ping(officer: Officer) -> str:
        if officer is not lead:
            await officer.join(room_id)
        return await officer.send_text(room_id, "!ping")

    # The whole shift comes in and writes at once: the bot has no Olm session with any
    # of these devices, and has not even seen most of them join when it first answers.
    pings = await asyncio.gather(*(join_and_ping(officer) for officer in everyone))

    answers = []
    for officer, ping in zip(everyone, pings, strict=True):
        answer = await officer.wait_for(
            lambda m, ping=ping: m.sender == bot.user_id and replies_to(m, ping),
            room_id=room_id, timeout=60)
        answers.append(answer.event_id)
        assert bot.device_id in (answer.body or "")
    for officer in everyone:  # every answer, the others' too, was readable when it came
        for event_id in answers:
            await officer.wait_for(lambda m, event_id=event_id: m.event_id == event_id,
                                   room_id=room_id)
        unreadable = sorted(set(answers) & officer.arrived_undecryptable)
        assert unreadable == [], f"{officer.user_id} first saw {unreadable} undecryptable"
