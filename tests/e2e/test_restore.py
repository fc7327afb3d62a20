"""Restoring a bot's data: a crypto store older than its device is refused at start-up
instead of running deaf."""

from __future__ import annotations

import shutil
from pathlib import Path

from bot.rawapi import request_json
from devkit.botprocess import BotProcess
from devkit.officer import Officer
from devkit.synapse import free_port
from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_foundation import ask, open_room
from tests.e2e.test_metrics import health_becomes, scrape

KEYS_CLAIM = "/_matrix/client/v3/keys/claim"


async def claim_bot_keys(officer: Officer, bot: BotProcess, count: int) -> None:
    """What new officers' clients do when they first write to the bot: each claims one of
    its one-time keys."""
    for _ in range(count):
        result = await request_json(officer.client, "POST", KEYS_CLAIM, {
            "one_time_keys": {bot.user_id: {bot.device_id: "signed_curve25519"}}})
        assert result.ok and result.body["one_time_keys"][bot.user_id], result


async def test_an_old_copy_of_the_crypto_store_is_refused_at_start_up(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    bot = await bot_factory()
    kz = await officer_factory("kz")
    room_id = await open_room(kz, bot)
    await ask(kz, bot, room_id, "!ping")
    await bot.stop()
    old_copy = bot.workdir / "crypto-copy"
    shutil.copytree(bot.data_dir / "crypto", old_copy)  # the operator's copy (T1)
    await bot.start()
    await claim_bot_keys(kz, bot, 5)  # key churn: new devices claim keys, the bot tops up
    await ask(kz, bot, room_id, "!ping")  # the sync that carries it reports the claims
    await bot.stop()

    shutil.rmtree(bot.data_dir / "crypto")  # only the old crypto store is put back
    shutil.copytree(old_copy, bot.data_dir / "crypto")
    await bot.start(wait_ready=False)

    assert await bot.wait_exit() == 3
    assert not bot.ready_file.exists()
    output = bot.log_tail(30)
    assert "liaison: start-up refused: the crypto store is older than its device" in output
    assert "move credentials.json and crypto/ aside" in output
    refused = [record for record in bot.log_records()
               if record.get("msg") == "stale crypto store: start-up refused"]
    assert refused and refused[0]["level"] == "error"


def copy_data(bot: BotProcess, target: Path) -> None:
    shutil.copytree(bot.data_dir, target)


def put_back(bot: BotProcess, copy: Path) -> None:
    shutil.rmtree(bot.data_dir)
    shutil.copytree(copy, bot.data_dir)


async def test_health_turns_unhealthy_when_the_homeserver_refuses_the_bots_keys(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    port = free_port()
    bot = await bot_factory(config={"metrics": {"enabled": True, "port": port}})
    kz = await officer_factory("kz")
    room_id = await open_room(kz, bot)
    await ask(kz, bot, room_id, "!ping")
    await bot.stop()
    copy_data(bot, bot.workdir / "data-copy")  # the whole data directory, consistent (T1)
    await bot.start()  # the device publishes keys this copy will never know
    await bot.stop()
    put_back(bot, bot.workdir / "data-copy")
    await bot.start()  # nothing at start-up tells this copy from the current one
    healthy = await health_becomes(port, 200)
    assert healthy["checks"]["keys"]["ok"]

    await claim_bot_keys(kz, bot, 2)  # new devices write to the bot: it tops its keys up
    await kz.send_text(room_id, "!ping")

    unhealthy = await health_becomes(port, 503)
    assert "the homeserver refused the bot's one-time keys" in \
        unhealthy["checks"]["keys"]["reason"]
    assert "already exists" in unhealthy["checks"]["keys"]["reason"]
    samples = await scrape(port)
    assert samples["liaison_key_upload_refused"] == 1
    assert samples["liaison_key_upload_failures_total"] >= 1
    said = [record for record in bot.log_records() if record.get("level") == "error"
            and "the homeserver refuses the bot's one-time keys" in str(record.get("msg"))]
    assert said, bot.log_tail()
