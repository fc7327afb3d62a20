"""Claiming officers' one-time keys before the bot encrypts into a room: a real nio client
with its own Olm account and real officer accounts (vodozemac); only the homeserver's
answers to keys/claim are scripted, to fail the way a busy or restarting one does.
The same path against a real Synapse: tests/e2e/test_key_claims.py."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import canonicaljson
import pytest
import vodozemac
from nio import AsyncClient, AsyncClientConfig, KeysClaimError, KeysClaimResponse, MatrixRoom
from nio.crypto import OlmDevice

from liaison.bot.key_claims import KeyClaims
from liaison.bot.key_health import KeyHealth
from liaison.bot.sync import SyncLoop

BOT = "@liaison:example.org"
ROOM = "!post:example.org"


class OfficerDevice:
    """An officer's device as the homeserver knows it: identity keys and one-time keys."""

    def __init__(self, user_id: str, device_id: str) -> None:
        self.user_id, self.device_id = user_id, device_id
        self.account = vodozemac.Account()

    @property
    def olm_device(self) -> OlmDevice:
        return OlmDevice(self.user_id, self.device_id, {
            "ed25519": self.account.ed25519_key.to_base64(),
            "curve25519": self.account.curve25519_key.to_base64()})

    def claim(self) -> dict[str, Any]:
        self.account.generate_one_time_keys(1)
        ((key_id, key),) = self.account.one_time_keys.items()
        self.account.mark_keys_as_published()
        unsigned = {"key": key.to_base64()}
        signature = self.account.sign(canonicaljson.encode_canonical_json(unsigned))
        signed = {**unsigned, "signatures": {
            self.user_id: {f"ed25519:{self.device_id}": signature.to_base64()}}}
        return {f"signed_curve25519:{key_id}": signed}


class ScriptedHomeserver(AsyncClient):
    """The bot's nio client; keys/claim is answered from `script` ("ok", "error",
    "timeout"), one entry per request, then "ok"."""

    def __init__(self, store: Path, officers: list[OfficerDevice], script: list[str]) -> None:
        super().__init__("https://example.org", BOT, device_id="BOTDEVICE",
                         store_path=str(store),
                         config=AsyncClientConfig(encryption_enabled=True,
                                                  store_sync_tokens=False))
        self.restore_login(BOT, "BOTDEVICE", "token")
        self.officers = {(o.user_id, o.device_id): o for o in officers}
        self.script = script
        self.claims: list[dict[str, list[str]]] = []
        room = MatrixRoom(ROOM, BOT, encrypted=True)
        for officer in officers:
            room.add_member(officer.user_id, None, None)
            self.device_store.add(officer.olm_device)
        self.rooms[ROOM] = room

    async def keys_claim(self, user_set: Any) -> Any:
        wanted = {user: list(devices) for user, devices in user_set.items()}
        self.claims.append(wanted)
        step = self.script.pop(0) if self.script else "ok"
        if step == "timeout":
            raise TimeoutError("keys/claim timed out")
        if step == "error":
            return KeysClaimError("502 Bad Gateway")
        response = KeysClaimResponse({user: {device: self.officers[(user, device)].claim()
                                             for device in devices}
                                      for user, devices in wanted.items()}, {})
        assert self.olm is not None
        self.olm.handle_response(response)
        return response


async def no_sleep(seconds: float) -> None:
    return None


def shift(count: int) -> list[OfficerDevice]:
    return [OfficerDevice(f"@officer{n}:example.org", f"DEVICE{n}") for n in range(count)]


async def test_a_room_of_thirty_new_devices_gets_a_session_with_each_in_batches(
    tmp_path: Path,
) -> None:
    officers = shift(30)
    client = ScriptedHomeserver(tmp_path, officers, script=[])
    claims = KeyClaims(client, KeyHealth(), batch=12, sleep=no_sleep)
    try:
        assert len(claims.devices_without_session(client.rooms[ROOM])) == 30

        await claims.prepare_room(ROOM)

        assert claims.devices_without_session(client.rooms[ROOM]) == []
        assert [sum(len(d) for d in claim.values()) for claim in client.claims] == [12, 12, 6]
        await claims.prepare_room(ROOM)  # nothing left to claim
        assert len(client.claims) == 3
    finally:
        await client.close()


async def test_a_failed_claim_is_retried_and_logged_in_words(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    officers = shift(5)
    client = ScriptedHomeserver(tmp_path, officers, script=["error", "timeout"])
    health = KeyHealth()
    claims = KeyClaims(client, health, sleep=no_sleep)
    try:
        with caplog.at_level(logging.WARNING, logger="liaison.bot.key_claims"):
            await claims.prepare_room(ROOM)

        assert claims.devices_without_session(client.rooms[ROOM]) == []
        assert len(client.claims) == 3
        assert health.claim_failures == 2
        retries = [r for r in caplog.records if r.getMessage().startswith(
            "claiming one-time keys failed; will retry")]
        assert [r.error for r in retries] == [  # type: ignore[attr-defined]
            "KeysClaimError: 502 Bad Gateway", "TimeoutError: keys/claim timed out"]
    finally:
        await client.close()


async def test_devices_left_out_get_the_room_key_before_the_next_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    officers = shift(3)
    client = ScriptedHomeserver(tmp_path, officers, script=["error"] * 4)
    claims = KeyClaims(client, KeyHealth(), sleep=no_sleep)
    olm = client.olm
    assert olm is not None
    try:
        with caplog.at_level(logging.ERROR, logger="liaison.bot.key_claims"):
            await claims.prepare_room(ROOM)  # every try fails: the message goes to nobody
        named = sorted(r.device_id for r in caplog.records  # type: ignore[attr-defined]
                       if r.getMessage().startswith("no Olm session with a device"))
        assert named == ["DEVICE0", "DEVICE1", "DEVICE2"]
        olm.create_outbound_group_session(ROOM)  # what nio does when it sends the message
        session = olm.outbound_group_sessions[ROOM]
        session.shared = True

        await claims.prepare_room(ROOM)  # the homeserver answers again

        assert claims.devices_without_session(client.rooms[ROOM]) == []
        assert olm.outbound_group_sessions[ROOM] is session
        assert not session.shared  # nio shares it with the three before the next message
    finally:
        await client.close()


async def test_a_sync_reporting_no_one_time_keys_left_makes_the_bot_publish_more(
    tmp_path: Path,
) -> None:
    """nio skips a count of zero: a bot whose 50 keys were all claimed between two syncs
    would otherwise think it still has 50 and leave new devices only its fallback key."""
    client = ScriptedHomeserver(tmp_path, [], script=[])
    olm = client.olm
    assert olm is not None
    olm.account.shared = True
    olm.uploaded_key_count = 50  # what the last sync said
    loop = SyncLoop(client, None, None)  # type: ignore[arg-type]
    try:
        assert not client.should_upload_keys
        loop._note_key_count(SimpleNamespace(  # type: ignore[arg-type]
            device_key_count=SimpleNamespace(signed_curve25519=0)))
        assert olm.uploaded_key_count == 0
        assert client.should_upload_keys
    finally:
        await client.close()
