"""Trust policy `cross-signed`: only cross-signed devices get room keys or have commands obeyed."""

from __future__ import annotations

from pathlib import Path

from devkit.officer import Officer
from devkit.synapse import LocalSynapse
from liaison.bot.crosssigning import ensure_cross_signed
from tests.e2e.conftest import BotFactory, OfficerFactory, known_to_the_bot, post_rooms
from tests.e2e.test_foundation import replies_to


async def test_cross_signed_policy_serves_cross_signed_devices_and_refuses_others(
    officer_factory: OfficerFactory, bot_factory: BotFactory, tmp_path: Path
) -> None:
    verified = await officer_factory("verified")
    unverified = await officer_factory("unverified")
    localpart = verified.user_id[1:].split(":")[0]
    await ensure_cross_signed(verified.client, tmp_path / "officer-keys.json",
                              f"devkit-{localpart}")
    room_id = await verified.create_room("post", invite=[unverified.user_id])
    bot = await bot_factory(config={"trust": {"policy": "cross-signed"},
                                    **post_rooms(room_id)})
    await verified.invite(room_id, bot.user_id)
    await unverified.join(room_id)
    await verified.wait_until_joined(room_id, bot.user_id)
    await verified.wait_until_joined(room_id, unverified.user_id)

    trusted_ping = await verified.send_text(room_id, "!ping")
    answer = await verified.wait_for(
        lambda m: m.sender == bot.user_id and replies_to(m, trusted_ping), room_id=room_id)
    assert "pong" in (answer.body or "")

    untrusted_ping = await unverified.send_text(room_id, "!ping")
    refusal = await verified.wait_for(
        lambda m: m.sender == bot.user_id and replies_to(m, untrusted_ping), room_id=room_id)
    assert "not cross-signed" in (refusal.body or "")
    assert "pong" not in (refusal.body or "")

    # The unverified device was given no room key for anything the bot wrote.
    seen_by_unverified = await unverified.wait_for(
        lambda m: m.event_id == refusal.event_id, room_id=room_id)
    assert seen_by_unverified.undecrypted
    assert all(m.undecrypted for m in unverified.messages(room_id, sender=bot.user_id)
               if m.type in ("m.room.message", "m.room.encrypted"))


async def test_tofu_tells_the_room_when_a_member_adds_a_device(
    synapse: LocalSynapse, officer_factory: OfficerFactory, bot_factory: BotFactory,
    tmp_path: Path
) -> None:
    kz = await officer_factory("kz")
    bot = await bot_factory(config=known_to_the_bot(kz))
    room_id = await kz.create_room("post", invite=[bot.user_id])
    await kz.wait_until_joined(room_id, bot.user_id)
    await kz.send_text(room_id, "!ping")
    await kz.wait_for(lambda m: m.sender == bot.user_id and "pong" in (m.body or ""),
                      room_id=room_id)

    localpart = kz.user_id[1:].split(":")[0]
    second = await Officer.create(synapse, localpart, tmp_path / "second-phone")
    try:
        assert second.device_id != kz.device_id
        notice = await kz.wait_for(
            lambda m: m.sender == bot.user_id and second.device_id in (m.body or ""),
            room_id=room_id, timeout=60)
        assert "new device" in (notice.body or "")
        assert notice.content["m.mentions"] == {"user_ids": []}
    finally:
        await second.stop()
