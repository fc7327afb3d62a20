"""Restoring a bot's data: a crypto store older than its device is refused at start-up
instead of running deaf."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import quote

from nio import AsyncClient

from devkit.botprocess import BotProcess
from devkit.element import ElementOfficer, node_available
from devkit.officer import Officer
from devkit.synapse import LocalSynapse, free_port
from liaison.bot.rawapi import request_json
from liaison.bot.session import Credentials
from liaison.storage import outbox
from liaison.storage.db import Database
from tests.e2e.conftest import BotFactory, OfficerFactory, known_to_the_bot, post_rooms, unique
from tests.e2e.test_element import answers
from tests.e2e.test_foundation import ask, open_room, replies_to, verify
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
    kz = await officer_factory("kz")
    bot = await bot_factory(config=known_to_the_bot(kz))
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
    assert "run `liaison recover-device --yes`" in output
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
    kz = await officer_factory("kz")
    bot = await bot_factory(config={"metrics": {"enabled": True, "port": port},
                                    **known_to_the_bot(kz)})
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


async def liaison(bot: BotProcess, *args: str) -> tuple[int, str, str]:
    """Run a `liaison` command the way an operator would, with the bot's secrets."""
    env = dict(os.environ, LIAISON_BOT_PASSWORD=bot.password, LIAISON_PICKLE_KEY=bot.pickle_key)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "liaison.bot", *args, "-c", str(bot.config_path), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def queue(bot: BotProcess, room_id: str, body: str) -> str:
    """A message the bot had queued before it stopped (written as the bot writes it)."""
    db = await Database.open(bot.data_dir / "liaison.db")
    try:
        async with db.transaction() as conn:
            message = await outbox.enqueue(
                conn, room_id=room_id, event_type="m.room.message",
                content={"msgtype": "m.notice", "body": body, "m.mentions": {}},
                now_ms=int(time.time() * 1000))
    finally:
        await db.close()
    return message.txn_id


async def knows_device(officer: Officer, user_id: str, device_id: str) -> None:
    """Until the officer's client has fetched the device (it learns of it by syncing)."""
    deadline = time.monotonic() + 30
    while device_id not in officer.client.device_store[user_id]:
        assert time.monotonic() < deadline, f"{officer.user_id} never saw {device_id}"
        await asyncio.sleep(0.1)


async def test_a_restored_bot_becomes_a_new_device_and_reads_its_officers_again(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz = await officer_factory("kz")
    uz = await officer_factory("uz")
    room_id = await kz.create_room("post")  # a post's room, both officers in it
    bot = await bot_factory(config=post_rooms(room_id))
    await kz.invite(room_id, bot.user_id)
    await kz.wait_until_joined(room_id, bot.user_id)
    await kz.invite(room_id, uz.user_id)
    await uz.join(room_id)
    await uz.wait_until_joined(room_id, bot.user_id)
    for officer in (kz, uz):
        await ask(officer, bot, room_id, "!ping")
    await bot.stop()
    shutil.copytree(bot.data_dir / "crypto", bot.workdir / "crypto-copy")  # T1
    await bot.start()
    await claim_bot_keys(kz, bot, 5)  # key churn
    for officer in (kz, uz):
        await ask(officer, bot, room_id, "!ping")
    await bot.stop()
    old_device = bot.device_id
    assert old_device is not None

    # What the database (T2) holds as unsent: one the old device did send after all
    # (its transaction id is on the homeserver), and one it never sent.
    sent_txn = await queue(bot, room_id, "relay queued, sent by the old device")
    await queue(bot, room_id, "relay queued, never sent")
    old = Credentials.load(bot.data_dir / "credentials.json")
    assert old is not None
    await send_as_old_device(old, room_id, sent_txn, "relay queued, sent by the old device")

    shutil.rmtree(bot.data_dir / "crypto")  # the restore: the old crypto store comes back
    shutil.copytree(bot.workdir / "crypto-copy", bot.data_dir / "crypto")
    await bot.start(wait_ready=False)
    assert await bot.wait_exit() == 3  # refused, not running deaf

    code, out, err = await liaison(bot, "recover-device")
    assert code == 3 and "--yes" in err  # explains first
    code, out, err = await liaison(bot, "recover-device", "--yes")
    assert code == 0, out + err
    new_device = bot.device_id
    assert new_device is not None and new_device != old_device
    assert f"new device: {new_device}" in out
    assert f"old device: {old_device} (deleted)" in out
    assert "1 pending messages had been sent by the old device" in out

    await bot.start()
    keys = await request_json(kz.client, "POST", "/_matrix/client/v3/keys/query",
                              {"device_keys": {bot.user_id: []}})
    assert list(keys.body["device_keys"][bot.user_id]) == [new_device]  # the old one is gone
    (_, ssk_public), = keys.body["self_signing_keys"][bot.user_id]["keys"].items()
    verify(keys.body["device_keys"][bot.user_id][new_device], bot.user_id, ssk_public)
    for officer in (kz, uz):
        await knows_device(officer, bot.user_id, new_device)
        answer = await ask(officer, bot, room_id, "!ping")  # the first try, no resend
        assert answer.encrypted and new_device in (answer.body or "")
        assert answer.event_id not in officer.arrived_undecryptable

    for body in ("relay queued, sent by the old device", "relay queued, never sent"):
        await kz.wait_for(lambda m, body=body: m.body == body, room_id=room_id)
    await ask(kz, bot, room_id, "!ping")  # one more round trip: no second copy follows
    bodies = [m.body for m in kz.messages(room_id, sender=bot.user_id)]
    assert bodies.count("relay queued, sent by the old device") == 1
    assert bodies.count("relay queued, never sent") == 1


async def test_backup_and_restore_bring_the_bot_back_as_a_new_device_that_reads_everyone(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz = await officer_factory("kz")
    uz = await officer_factory("uz")
    tj = await officer_factory("tj")
    room_id = await kz.create_room("post")  # a post's room, both officers in it
    tj_room = await tj.create_room("post")  # a neighbouring post, for a new alert after it
    bot = await bot_factory(config=post_rooms(room_id, tj_room))
    await kz.invite(room_id, bot.user_id)
    await tj.invite(tj_room, bot.user_id)
    await kz.wait_until_joined(room_id, bot.user_id)
    await tj.wait_until_joined(tj_room, bot.user_id)
    await kz.invite(room_id, uz.user_id)
    await uz.join(room_id)
    await uz.wait_until_joined(room_id, bot.user_id)
    for officer in (kz, uz):
        await ask(officer, bot, room_id, "!ping")
    await ask(tj, bot, tj_room, "!ping")
    await claim_bot_keys(kz, bot, 5)  # key churn
    for officer in (kz, uz):
        await ask(officer, bot, room_id, "!ping")
    await bot.stop()
    sent_txn = await queue(bot, room_id, "queued before the backup, sent after it")
    await queue(bot, room_id, "queued before the backup, never sent")
    archive = bot.workdir / "liaison-backup.tar"
    code, out, err = await liaison(bot, "backup", str(archive))  # T2
    assert code == 0, err
    # While the bot is down, an officer writes to the device that is about to be lost.
    unread = await uz.send_text(room_id, "!ping")
    assert "2 pending" not in out and "device " + str(bot.device_id) in out
    old_device = bot.device_id
    assert old_device is not None
    old = Credentials.load(bot.data_dir / "credentials.json")
    assert old is not None
    # The old device goes on after the backup and sends one of the two (under its
    # transaction id, as its outbox worker does), then its host is lost.
    await send_as_old_device(old, room_id, sent_txn, "queued before the backup, sent after it")
    shutil.move(bot.data_dir, bot.workdir / "lost")  # the host is gone

    damaged = bot.workdir / "damaged.tar"
    whole = archive.read_bytes()
    damaged.write_bytes(whole[: len(whole) // 2])  # a copy cut short
    code, out, err = await liaison_restore(bot, damaged)
    assert code == 3 and "nothing was changed" in err and not bot.data_dir.exists()
    code, out, err = await liaison_restore(bot, archive)
    assert code == 0, err
    await bot.start(wait_ready=False)
    assert await bot.wait_exit() == 3  # never on the backup's crypto store
    assert "Run `liaison recover-device --yes` first" in bot.log_tail(5)
    code, out, err = await liaison(bot, "recover-device", "--yes")
    assert code == 0, out + err
    assert f"old device: {old_device} (deleted)" in out
    new_device = bot.device_id
    assert new_device is not None and new_device != old_device

    await bot.start()
    keys = await request_json(kz.client, "POST", "/_matrix/client/v3/keys/query",
                              {"device_keys": {bot.user_id: []}})
    assert list(keys.body["device_keys"][bot.user_id]) == [new_device]
    for officer in (kz, uz):
        await knows_device(officer, bot.user_id, new_device)
        answer = await ask(officer, bot, room_id, "!ping")
        assert answer.encrypted and new_device in (answer.body or "")
        assert answer.event_id not in officer.arrived_undecryptable
    await kz.wait_for(lambda m: m.body == "queued before the backup, never sent",
                      room_id=room_id)
    # The message only the old device could read is answered once, in uz's thread: with
    # the answer if uz's client shares the key again, else saying it could not be read.
    told = await uz.wait_for(lambda m: m.sender == bot.user_id and replies_to(m, unread),
                             room_id=room_id)
    assert (told.body or "").startswith(("pong", "I could not decrypt your message")), \
        told.body
    await ask(kz, bot, room_id, "!ping")
    await ask(uz, bot, room_id, "!ping")
    assert len([m for m in uz.messages(room_id, sender=bot.user_id)
                if replies_to(m, unread)]) == 1
    bodies = [m.body for m in kz.messages(room_id, sender=bot.user_id)]
    assert bodies.count("queued before the backup, sent after it") == 1
    assert bodies.count("queued before the backup, never sent") == 1
    # A new alert is routed by the new device and read at the other post at once.
    routed = await ask(kz, bot, room_id, "!alert urgent to:XX-POST2\nWhite Kamaz, 01A123BC")
    assert (routed.body or "").startswith("XX-0001: Urgent alert sent to:"), routed.body
    relayed = await tj.wait_for(lambda m: "White Kamaz, 01A123BC" in (m.body or ""),
                                room_id=tj_room, sender=bot.user_id)
    assert relayed.encrypted and relayed.event_id not in tj.arrived_undecryptable


async def send_as_old_device(old: Credentials, room_id: str, txn_id: str, body: str) -> None:
    client = AsyncClient(old.homeserver, old.user_id, device_id=old.device_id)
    client.access_token = old.access_token
    try:
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{txn_id}"
        result = await request_json(client, "PUT", path, {"msgtype": "m.notice", "body": body})
        assert result.ok, result
    finally:
        await client.close()


async def liaison_restore(bot: BotProcess, archive: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "liaison.bot", "restore", str(archive), str(bot.data_dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_an_element_officer_in_signed_mode_reads_the_recovered_device_without_a_shield(
    synapse: LocalSynapse, bot_factory: BotFactory, tmp_path: Path,
) -> None:
    """Element's Rust crypto, sharing keys only with cross-signed devices, trusts the new
    device at once because the bot's own identity signed it."""
    reason = node_available()
    assert reason is None, reason
    kz = await ElementOfficer.create(synapse, unique("kz-element"), tmp_path / "element",
                                     isolation="signed")
    try:
        room_id = await kz.create_room("KZ post")
        bot = await bot_factory(config=post_rooms(room_id))
        await kz.invite(room_id, bot.user_id)
        await kz.wait_until_joined(room_id, bot.user_id)
        ping = await kz.send_text(room_id, "!ping")
        await kz.wait_for(lambda m: answers(m, ping), room_id=room_id, sender=bot.user_id)
        old_device = bot.device_id
        await bot.stop()

        code, out, err = await liaison(bot, "recover-device", "--yes")
        assert code == 0, out + err
        await bot.start()
        new_device = bot.device_id
        assert new_device is not None and new_device != old_device

        ping = await kz.send_text(room_id, "!ping")  # the first message after the change
        pong = await kz.wait_for(lambda m: answers(m, ping), room_id=room_id,
                                 sender=bot.user_id, timeout=60)
        assert pong.encrypted and new_device in (pong.body or ""), pong.describe()
        assert (pong.shield_colour, pong.shield_reason) == ("NONE", None), pong.describe()
        status = await kz.device_status(bot.user_id, new_device)
        assert status["known"] and status["signed_by_owner"], status
        assert not (await kz.device_status(bot.user_id, str(old_device)))["known"]
    finally:
        await kz.stop()
        print(f"--- log of the Element officer ---\n{kz.log_path.read_text()[-4000:]}")
