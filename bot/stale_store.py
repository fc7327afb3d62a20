"""Refuse to run on a crypto store older than its device.

An older copy of the crypto store (restored from a backup, or copied back by hand) is
the same device with the same identity keys, so every other start-up check passes. But
it does not know the one-time keys the device published after the copy: officers'
clients that claimed one of those cannot open a session with the bot, the homeserver
refuses the one-time keys it generates again under the same ids ("already exists"),
and the bot reads nothing new while looking healthy.

Two checks catch it before the bot answers anything:

* the database (restored separately, or never restored at all) remembers how far the
  device's one-time key counter had got after each upload; a crypto store whose
  counter is behind that is older than the device;
* the start-up upload of one-time keys (at least one fresh key, see `_probe_count`) is
  refused with "already exists": the homeserver holds a key under an id this account
  gives out again.

Either stops the start (exit 3) with what to do.
"""

from __future__ import annotations

import base64
import logging
import secrets

from nio import AsyncClient

from liaison.bot.key_health import ALREADY_EXISTS, KeyHealth, upload_keys
from liaison.bot.rawapi import ApiError, request_json
from liaison.bot.session import StartupError
from liaison.storage import state
from liaison.storage.db import Database

log = logging.getLogger(__name__)

KEYS_UPLOAD = "/_matrix/client/v3/keys/upload"


class StaleCryptoStore(StartupError):
    """The crypto store is older than the device it belongs to."""


def counter_key(device_id: str) -> str:
    """kv: the device's next one-time key id (an integer) after its last upload."""
    return f"one_time_key_counter:{device_id}"


def one_time_key_counter(client: AsyncClient) -> int:
    """The id the account would give its next one-time key, read from a throw-away copy
    of the account (the real one is not changed)."""
    olm = client.olm
    assert olm is not None
    pickle_key = secrets.token_bytes(32)
    copy = type(olm.account._account).from_pickle(olm.account._account.pickle(pickle_key),
                                                  pickle_key)
    copy.generate_one_time_keys(1)
    (key_id,) = copy.one_time_keys
    return int.from_bytes(base64.b64decode(key_id + "=" * (-len(key_id) % 4)), "big")


async def remember_counter(db: Database, client: AsyncClient) -> None:
    """After keys were published: this far the device's one-time keys have got."""
    counter = one_time_key_counter(client)
    async with db.transaction() as conn:
        stored = await state.get_value(conn, counter_key(client.device_id))
        if stored is None or int(stored) < counter:
            await state.set_value(conn, counter_key(client.device_id), str(counter))


def refusal(detail: str) -> StaleCryptoStore:
    message = (
        f"the crypto store is older than its device ({detail}). Officers' clients hold "
        "sessions and one-time keys it does not know: running on it, the bot could not "
        "read their messages. Put back the newest copy of the crypto store if you have "
        "one; otherwise run `liaison recover-device --yes`: the bot becomes a new device "
        "signed with its existing identity and deletes the old one (docs/deployment.md, "
        "'When the crypto store is stale').")
    log.error("stale crypto store: start-up refused", extra={"reason": message})
    return StaleCryptoStore(message)


async def _probe_count(client: AsyncClient) -> int:
    """How many one-time keys the homeserver holds for the device (an empty upload
    tells), lowered by one when it holds the full set: the upload that follows then
    publishes one fresh key under the next id, which the homeserver refuses ("already
    exists") when an older copy of the account is running. At most one key above the
    full set is ever added this way."""
    result = await request_json(client, "POST", KEYS_UPLOAD, {})
    if not result.ok:
        error = ApiError("keys/upload (count)", result)
        if result.homeserver_away:
            raise error  # waited out by the start-up retries
        raise StartupError(str(error))
    count = int(result.body.get("one_time_key_counts", {}).get("signed_curve25519", 0))
    olm = client.olm
    assert olm is not None
    full = int(olm.account.max_one_time_keys)
    return full - 1 if count == full else count


async def check_and_upload(client: AsyncClient, db: Database, health: KeyHealth) -> None:
    """Start-up: refuse a stale crypto store; publish the device and one-time keys the
    homeserver lacks; remember how far the one-time key counter has got."""
    olm = client.olm
    assert olm is not None
    async with db.read() as conn:
        stored = await state.get_value(conn, counter_key(client.device_id))
    counter = one_time_key_counter(client)
    if stored is not None and counter < int(stored):
        raise refusal(f"its one-time key counter is at {counter}, but the device had "
                      f"published keys up to {int(stored) - 1}")
    if olm.account.shared:
        olm.uploaded_key_count = await _probe_count(client)
    if client.should_upload_keys:
        response = await upload_keys(client, health)
        rejected = health.upload_rejected
        if response is None and rejected is not None and ALREADY_EXISTS in rejected:
            raise refusal(f"the homeserver refuses its one-time keys: {rejected}")
        if response is None and rejected is not None:
            raise StartupError(f"the homeserver refused the device keys: {rejected}")
        if response is None:
            raise ConnectionError("uploading the device keys failed")  # retried at start-up
        log.info("keys uploaded", extra={"one_time_keys_on_server": health.one_time_keys_on_server})
    await remember_counter(db, client)
