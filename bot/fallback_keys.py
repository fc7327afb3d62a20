"""The bot's fallback key, so that a client can always open an Olm session with it.

A client that wants to send the bot a room key first claims one of the bot's one-time
keys from the homeserver. The bot uploads 50 of them and replenishes them as it syncs;
while it is down, every new device that writes to one of its rooms uses one up, and
when none is left such a device cannot open a session: the bot would miss that room
key and could not read the officer's message until the officer's client shared it
again. A fallback key is what the homeserver hands out when the one-time keys have run
out (Matrix client-server API, "One-time and fallback keys"). matrix-nio 0.26 never
uploads one; vodozemac, which it runs on, keeps one, so this generates it in the
account nio pickles, publishes it, and replaces it once a week (a fallback key can be
claimed by many, so it is not kept for ever). vodozemac keeps the current key and the
one before it, so a key is generated only when the last one has been published:
retrying a failed upload re-sends the same key (kept, signed, in the database) and
never pushes the key the homeserver is still handing out out of the account.

None of this holds up the bot: it runs beside the sync loop, and a homeserver that
refuses fallback keys leaves the bot on one-time keys, with a warning a day.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

from nio import AsyncClient

from liaison.bot.clock import Clock
from liaison.bot.rawapi import ApiError, request_json
from liaison.storage import state
from liaison.storage.db import Database

log = logging.getLogger(__name__)

KEYS_UPLOAD = "/_matrix/client/v3/keys/upload"
ALGORITHM = "signed_curve25519"
ROTATE_AFTER = timedelta(days=7)
CHECK_EVERY_S = 3600.0
RETRY_FIRST_S = 30.0
REFUSED_RETRY_S = 24 * 3600.0


def published_key(device_id: str) -> str:
    """kv: when this device last published a fallback key (epoch ms). Per device: a data
    directory whose crypto store was replaced by a new device's must publish at once."""
    return f"fallback_key_published_ms:{device_id}"


def pending_key(device_id: str) -> str:
    """kv: the signed key being published (JSON), until the homeserver has taken it."""
    return f"fallback_key_pending:{device_id}"


def _account(client: AsyncClient) -> Any:
    """The vodozemac Account behind nio's OlmAccount (nio has no fallback-key API)."""
    olm = client.olm
    if olm is None:
        raise RuntimeError("the client has no encryption loaded")
    return olm.account._account


def signed_fallback_keys(client: AsyncClient) -> dict[str, dict[str, Any]]:
    """The account's unpublished fallback key as keys/upload takes it: `fallback: true`
    is inside what the device signs, so a claimer can tell it from a one-time key."""
    olm = client.olm
    assert olm is not None
    keys: dict[str, dict[str, Any]] = {}
    for key_id, key in _account(client).fallback_key.items():
        unsigned = {"key": key.to_base64(), "fallback": True}
        signature = olm.sign_json(unsigned)
        keys[f"{ALGORITHM}:{key_id}"] = {
            **unsigned,
            "signatures": {client.user_id: {f"ed25519:{client.device_id}": signature}},
        }
    return keys


async def _key_to_publish(client: AsyncClient, db: Database) -> dict[str, dict[str, Any]]:
    """The key an earlier attempt left pending, or a new one, saved in the crypto store
    and in the database before it can leave."""
    olm = client.olm
    assert olm is not None
    async with db.read() as conn:
        pending = await state.get_value(conn, pending_key(client.device_id))
    if pending:
        keys: dict[str, dict[str, Any]] = json.loads(pending)
        return keys
    account = _account(client)
    if not account.fallback_key:  # the last one was published (or there never was one)
        account.generate_fallback_key()
        olm.save_account()
    keys = signed_fallback_keys(client)
    async with db.transaction() as conn:
        await state.set_value(conn, pending_key(client.device_id), json.dumps(keys))
    return keys


async def publish(client: AsyncClient, db: Database, clock: Clock) -> None:
    """Publish a fallback key: the pending one if an upload of it failed, else a new one.
    ApiError when the homeserver refuses; the key stays pending for the next try."""
    olm = client.olm
    assert olm is not None
    keys = await _key_to_publish(client, db)
    result = await request_json(client, "POST", KEYS_UPLOAD, {"fallback_keys": keys})
    if not result.ok:
        raise ApiError("keys/upload (fallback key)", result)
    olm.mark_keys_as_published()
    olm.save_account()
    async with db.transaction() as conn:
        await state.set_value(conn, published_key(client.device_id), str(clock.now_ms()))
        await state.set_value(conn, pending_key(client.device_id), "")
    log.info("fallback key published", extra={"key_ids": sorted(keys)})


async def ensure_fresh(client: AsyncClient, db: Database, clock: Clock) -> bool:
    """Publish a fallback key when this device has none yet, its key is a week old, or
    the last upload did not go through; True when it did."""
    async with db.read() as conn:
        stored = await state.get_value(conn, published_key(client.device_id))
        pending = await state.get_value(conn, pending_key(client.device_id))
    rotate_after_ms = int(ROTATE_AFTER.total_seconds() * 1000)
    if not pending and stored is not None and clock.now_ms() - int(stored) < rotate_after_ms:
        return False
    await publish(client, db, clock)
    return True


async def keep_fresh(client: AsyncClient, db: Database, clock: Clock) -> None:
    """Publish at start, then check every hour, for as long as the bot runs. Nothing
    here may stop the bot: a failure is logged and tried again, sooner while the
    homeserver is away, a day later when it refuses fallback keys outright."""
    delay = RETRY_FIRST_S
    while True:
        try:
            await ensure_fresh(client, db, clock)
        except Exception as exc:  # the homeserver away or refusing, a busy store: tried again
            refused = isinstance(exc, ApiError) and not exc.result.homeserver_away
            wait = REFUSED_RETRY_S if refused else delay
            delay = RETRY_FIRST_S if refused else min(delay * 2, CHECK_EVERY_S)
            log.warning("fallback key not published; will retry",
                        extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": wait})
            await asyncio.sleep(wait)
            continue
        delay = RETRY_FIRST_S
        await asyncio.sleep(CHECK_EVERY_S)
