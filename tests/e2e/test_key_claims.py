"""A room full of new devices reads the bot's first answer: before it encrypts, the bot
opens an Olm session with every device in the room (claiming their one-time keys in
batches, retried), so no device is left without the room key."""

from __future__ import annotations

import asyncio

from nio import KeysUploadResponse

from devkit.officer import Officer
from liaison.bot.rawapi import request_json
from tests.e2e.conftest import BotFactory, OfficerFactory, post_rooms
from tests.e2e.test_foundation import replies_to

SHIFT = 30
KEYS_CLAIM = "/_matrix/client/v3/keys/claim"


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


async def test_a_device_left_out_for_want_of_keys_reads_the_next_answer(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    """A phone that was off while its one-time keys ran out cannot get the room key of
    the bot's next answer. Once it is back and has published keys again, the answer after
    that reaches it: the bot claims again before it sends and shares the room key it
    already uses with exactly that device."""
    lead = await officer_factory("shift-lead")
    phone = await officer_factory("phone")
    room_id = await lead.create_room("post", invite=[phone.user_id])
    bot = await bot_factory(config=post_rooms(room_id))
    await lead.invite(room_id, bot.user_id)
    await lead.wait_until_joined(room_id, bot.user_id)
    await phone.join(room_id)
    await lead.wait_until_joined(room_id, phone.user_id)
    await phone.pause()  # switched off: it tops up nothing
    drained = 0
    while True:  # other clients claim all of its one-time keys (nio uploads no fallback key)
        result = await request_json(lead.client, "POST", KEYS_CLAIM, {
            "one_time_keys": {phone.user_id: {phone.device_id: "signed_curve25519"}}})
        assert result.ok, result
        if not result.body["one_time_keys"].get(phone.user_id):
            break
        drained += 1
    assert drained > 0

    first = await lead.send_text(room_id, "!ping")
    await lead.wait_for(lambda m: m.sender == bot.user_id and replies_to(m, first),
                        room_id=room_id)
    # The phone comes back and publishes fresh one-time keys, as clients do when the
    # homeserver reports none left (nio only notices a count above zero).
    assert phone.client.olm is not None
    phone.client.olm.uploaded_key_count = 0
    assert isinstance(await phone.client.keys_upload(), KeysUploadResponse)
    await phone.start()

    second = await lead.send_text(room_id, "!ping")
    answer = await phone.wait_for(lambda m: m.sender == bot.user_id and replies_to(m, second),
                                  room_id=room_id)
    assert answer.event_id not in phone.arrived_undecryptable
    assert bot.device_id in (answer.body or "")
