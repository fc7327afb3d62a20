"""The foundation against a real Synapse: encrypted answers, one device, cross-signing, invites."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from typing import Any
from urllib.parse import quote

import canonicaljson
import vodozemac

from devkit.botprocess import BotProcess
from devkit.officer import Officer, SeenMessage
from devkit.synapse import LocalSynapse
from liaison.bot.rawapi import request_json
from tests.e2e.conftest import BotFactory, OfficerFactory, known_to_the_bot, unique


def replies_to(message: SeenMessage, event_id: str) -> bool:
    relates = message.content.get("m.relates_to") or {}
    return bool(relates.get("m.in_reply_to", {}).get("event_id") == event_id)


async def open_room(officer: Officer, bot: BotProcess, *, encrypted: bool = True) -> str:
    room_id = await officer.create_room("post", invite=[bot.user_id], encrypted=encrypted)
    await officer.wait_until_joined(room_id, bot.user_id)
    return room_id


async def ask(officer: Officer, bot: BotProcess, room_id: str, body: str) -> SeenMessage:
    event_id = await officer.send_text(room_id, body)
    return await officer.wait_for(
        lambda m: m.sender == bot.user_id and replies_to(m, event_id), room_id=room_id
    )


async def raw_event(officer: Officer, room_id: str, event_id: str) -> dict[str, Any]:
    path = f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(event_id)}"
    result = await request_json(officer.client, "GET", path)
    assert result.ok, result
    return result.body


def verify(obj: dict[str, Any], user_id: str, public_key: str, *,
           key_id: str | None = None) -> None:
    """Check a signature independently of Liaison's own code (vodozemac + canonicaljson);
    cross-signing keys sign as `ed25519:<public key>`, devices as `ed25519:<device id>`."""
    signature = obj["signatures"][user_id][key_id or f"ed25519:{public_key}"]
    message = canonicaljson.encode_canonical_json(
        {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    )
    vodozemac.Ed25519PublicKey.from_base64(public_key).verify_signature(
        bytes(message), vodozemac.Ed25519Signature.from_base64(signature)
    )


async def test_ping_in_an_encrypted_room_gets_an_encrypted_answer(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz = await officer_factory("kz")
    bot = await bot_factory(config=known_to_the_bot(kz))
    room_id = await open_room(kz, bot)

    answer = await ask(kz, bot, room_id, "!ping")

    assert answer.encrypted
    assert answer.msgtype == "m.notice"
    assert bot.device_id and bot.device_id in (answer.body or "")
    assert answer.content["m.mentions"] == {"user_ids": []} or answer.content["m.mentions"] == {}
    on_server = await raw_event(kz, room_id, answer.event_id)
    assert on_server["type"] == "m.room.encrypted"
    assert "pong" not in str(on_server["content"]).lower()


async def test_restart_keeps_the_device_and_never_answers_an_event_twice(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz = await officer_factory("kz")
    bot = await bot_factory(config=known_to_the_bot(kz))
    room_id = await open_room(kz, bot)
    first = await kz.send_text(room_id, "!ping")
    await kz.wait_for(lambda m: m.sender == bot.user_id and replies_to(m, first), room_id=room_id)
    device_before = bot.device_id

    await bot.stop()
    # One line when it was ready, one on SIGTERM saying what is still queued.
    ready = [r for r in bot.log_records() if str(r.get("msg", "")).startswith("ready: ")]
    assert len(ready) == 1 and ready[0]["device_id"] == device_before, ready
    stopping = [r for r in bot.log_records()
                if str(r.get("msg", "")).startswith("stopping on SIGTERM: ")]
    assert len(stopping) == 1, bot.log_tail()
    assert stopping[0]["outbox_pending"] == 0 and stopping[0]["chase_steps_pending"] == 0
    assert "0 messages still queued" in stopping[0]["msg"]
    await bot.start()
    assert bot.device_id == device_before
    await ask(kz, bot, room_id, "!ping")  # decrypted and answered by the restored device

    await bot.kill()  # no clean shutdown this time
    await bot.start()
    assert bot.device_id == device_before
    await ask(kz, bot, room_id, "!ping")

    answers_to_first = [m for m in kz.messages(room_id, sender=bot.user_id)
                        if replies_to(m, first)]
    assert len(answers_to_first) == 1
    keys = await request_json(kz.client, "POST", "/_matrix/client/v3/keys/query",
                              {"device_keys": {bot.user_id: []}})
    assert list(keys.body["device_keys"][bot.user_id]) == [device_before]


async def test_bot_device_is_cross_signed_and_a_second_start_uploads_nothing(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    bot = await bot_factory()
    other = await officer_factory("observer")

    keys = await request_json(other.client, "POST", "/_matrix/client/v3/keys/query",
                              {"device_keys": {bot.user_id: []}})
    master = keys.body["master_keys"][bot.user_id]
    ssk = keys.body["self_signing_keys"][bot.user_id]
    device = keys.body["device_keys"][bot.user_id][bot.device_id]
    (master_id, master_public), = master["keys"].items()
    (ssk_id, ssk_public), = ssk["keys"].items()
    for key_id in (master_id, ssk_id):
        assert "=" not in key_id
    assert master["usage"] == ["master"] and ssk["usage"] == ["self_signing"]
    verify(ssk, bot.user_id, master_public)
    verify(device, bot.user_id, ssk_public)

    await bot.stop()
    await bot.start()
    records = [r for r in bot.log_records() if r.get("msg") == "device cross-signed"]
    assert [r["uploaded"] for r in records] == [True, False]
    again = await request_json(other.client, "POST", "/_matrix/client/v3/keys/query",
                               {"device_keys": {bot.user_id: []}})
    assert again.body["master_keys"][bot.user_id]["keys"] == master["keys"]


async def membership(officer: Officer, room_id: str, user_id: str) -> str | None:
    path = (f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.member/"
            f"{quote(user_id)}")
    result = await request_json(officer.client, "GET", path)
    value = result.body.get("membership") if result.ok else None
    return value if isinstance(value, str) else None


async def test_invite_from_a_user_who_is_not_allowed_is_declined(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    allowed = await officer_factory("allowed")
    stranger = await officer_factory("stranger")
    bot = await bot_factory(config={
        "access": {"allowed_inviters": {"users": [allowed.user_id], "servers": []}}})

    strange_room = await stranger.create_room("stranger", invite=[bot.user_id])
    good_room = await allowed.create_room("allowed", invite=[bot.user_id])
    await allowed.wait_until_joined(good_room, bot.user_id)

    for _ in range(200):
        if await membership(stranger, strange_room, bot.user_id) == "leave":
            break
        await asyncio.sleep(0.1)
    assert await membership(stranger, strange_room, bot.user_id) == "leave"


async def test_a_command_in_an_unencrypted_room_is_not_executed(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz = await officer_factory("kz")
    bot = await bot_factory(config=known_to_the_bot(kz))
    plain = await open_room(kz, bot, encrypted=False)
    secure = await open_room(kz, bot)

    await kz.send_text(plain, "!ping")
    await kz.send_text(plain, "!ping")
    await ask(kz, bot, secure, "!ping")  # the bot has seen both plain pings by now
    warning = await kz.wait_for(
        lambda m: m.sender == bot.user_id and m.type == "m.room.message", room_id=plain)

    said_in_plain = [m for m in kz.messages(plain, sender=bot.user_id)
                     if m.type == "m.room.message"]
    assert len(said_in_plain) == 1, [(m.event_id, m.body, m.type) for m in said_in_plain]
    assert "not end-to-end encrypted" in (warning.body or "")
    assert "pong" not in (warning.body or "").lower()


async def test_start_is_refused_when_the_crypto_store_or_identity_keys_are_lost(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz = await officer_factory("kz")
    bot = await bot_factory(config=known_to_the_bot(kz))
    device = bot.device_id
    await bot.stop()

    seeds = bot.data_dir / "cross-signing.json"
    seeds.rename(bot.data_dir / "cross-signing.json.bak")
    await bot.start(wait_ready=False)
    assert await bot.wait_exit() == 3
    assert "will not replace an identity silently" in bot.log_tail()
    (bot.data_dir / "cross-signing.json.bak").rename(seeds)

    crypto = bot.data_dir / "crypto"
    crypto.rename(bot.data_dir / "crypto.bak")
    await bot.start(wait_ready=False)
    assert await bot.wait_exit() == 3
    assert "crypto store of device" in bot.log_tail()
    assert not crypto.exists()  # the refused start created nothing in its place
    (bot.data_dir / "crypto.bak").rename(crypto)

    await bot.start()
    assert bot.device_id == device
    room_id = await open_room(kz, bot)
    await ask(kz, bot, room_id, "!ping")


async def test_a_command_without_the_deprecated_megolm_fields_is_still_answered(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    """Newer clients may omit sender_key and device_id from encrypted events (Matrix 1.3)."""
    kz = await officer_factory("kz")
    bot = await bot_factory(config=known_to_the_bot(kz))
    room_id = await open_room(kz, bot)
    await ask(kz, bot, room_id, "!ping")  # the bot now holds this session's room key

    event_type, content = kz.client.encrypt(
        room_id, "m.room.message", {"msgtype": "m.text", "body": "!ping"})
    assert event_type == "m.room.encrypted"
    del content["sender_key"], content["device_id"]
    path = (f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.encrypted/"
            f"stripped-{bot.device_id}")
    sent = await request_json(kz.client, "PUT", path, content)
    assert sent.ok, sent
    stripped_id = sent.body["event_id"]

    answer = await kz.wait_for(
        lambda m: m.sender == bot.user_id and replies_to(m, stripped_id), room_id=room_id)
    assert bot.device_id and bot.device_id in (answer.body or "")


async def test_messages_from_before_the_bot_joined_are_not_answered(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz = await officer_factory("kz")
    bot = await bot_factory(config=known_to_the_bot(kz))
    room_id = await kz.create_room("post")  # shared history: the bot could read this later
    early = await kz.send_text(room_id, "!ping")
    await kz.invite(room_id, bot.user_id)
    await kz.wait_until_joined(room_id, bot.user_id)

    await ask(kz, bot, room_id, "!ping")
    assert not [m for m in kz.messages(room_id, sender=bot.user_id) if replies_to(m, early)]


async def test_reset_identity_replaces_the_cross_signing_keys_with_the_password(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    bot = await bot_factory()
    observer = await officer_factory("observer")
    query = {"device_keys": {bot.user_id: []}}
    before = await request_json(observer.client, "POST", "/_matrix/client/v3/keys/query", query)
    await bot.stop()
    (bot.data_dir / "cross-signing.json").unlink()  # the seeds are lost

    env = dict(os.environ, LIAISON_BOT_PASSWORD=bot.password, LIAISON_PICKLE_KEY=bot.pickle_key)
    refused = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "liaison.bot", "reset-identity", "-c", str(bot.config_path),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await refused.communicate()
    assert refused.returncode == 3 and b"identity changed" in err  # asks for --yes first

    reset = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "liaison.bot", "reset-identity", "--yes", "-c", str(bot.config_path),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await reset.communicate()
    assert reset.returncode == 0, err.decode()

    after = await request_json(observer.client, "POST", "/_matrix/client/v3/keys/query", query)
    old_master = before.body["master_keys"][bot.user_id]["keys"]
    new_master = after.body["master_keys"][bot.user_id]["keys"]
    assert new_master != old_master
    assert next(iter(new_master.values())) in out.decode()
    (_, ssk_public), = after.body["self_signing_keys"][bot.user_id]["keys"].items()
    verify(after.body["device_keys"][bot.user_id][bot.device_id], bot.user_id, ssk_public)

    await bot.start()  # and the bot runs with its new identity
    kz = await officer_factory("kz")
    room_id = await open_room(kz, bot)
    await ask(kz, bot, room_id, "!ping")


async def server_admin_token(synapse: LocalSynapse) -> str:
    """Log in as a fresh server admin, the way an operator reaches Synapse's admin API."""
    localpart, password = unique("admin"), secrets.token_urlsafe(12)
    await synapse.register(localpart, password, admin=True)
    login = await synapse.request("POST", "/_matrix/client/v3/login", {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": localpart},
        "password": password,
    })
    return str(login["access_token"])


async def test_a_deleted_device_is_replaced_by_a_new_one_signed_by_the_same_identity(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    """docs/deployment.md, "Starting a new device without a backup"."""
    kz = await officer_factory("kz")
    bot = await bot_factory(config=known_to_the_bot(kz))  # with bot.password: a new device
    query = {"device_keys": {bot.user_id: []}}
    before = await request_json(kz.client, "POST", "/_matrix/client/v3/keys/query", query)
    old_device = bot.device_id
    assert old_device
    await bot.stop()
    await bot.synapse.request(
        "DELETE", f"/_synapse/admin/v2/users/{quote(bot.user_id)}/devices/{quote(old_device)}",
        token=await server_admin_token(bot.synapse))

    await bot.start(wait_ready=False)
    assert await bot.wait_exit() == 3
    assert "Move credentials.json and crypto/ aside" in bot.log_tail()
    for name in ("credentials.json", "crypto"):
        (bot.data_dir / name).rename(bot.data_dir / f"{name}.old")
    assert (bot.data_dir / "cross-signing.json").exists()
    assert (bot.data_dir / "liaison.db").exists()

    await bot.start()
    new_device = bot.device_id
    assert new_device and new_device != old_device
    after = await request_json(kz.client, "POST", "/_matrix/client/v3/keys/query", query)
    assert after.body["master_keys"][bot.user_id] == before.body["master_keys"][bot.user_id]
    ssk = after.body["self_signing_keys"][bot.user_id]
    assert ssk == before.body["self_signing_keys"][bot.user_id]
    (_, master_public), = after.body["master_keys"][bot.user_id]["keys"].items()
    (_, ssk_public), = ssk["keys"].items()
    verify(ssk, bot.user_id, master_public)
    assert list(after.body["device_keys"][bot.user_id]) == [new_device]
    verify(after.body["device_keys"][bot.user_id][new_device], bot.user_id, ssk_public)

    room_id = await open_room(kz, bot)
    answer = await ask(kz, bot, room_id, "!ping")
    assert answer.encrypted
    assert new_device in (answer.body or "")
