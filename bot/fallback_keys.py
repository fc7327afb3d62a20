"""The bot's fallback key, so that a client can always open an Olm session with it.

A client that wants to send the bot a room key first claims one of the bot's one-time
keys from the homeserver. The bot uploads 50 of them and replenishes them as it syncs;
while it is down, every new device that writes to one of its rooms uses one up, and
when none is left such a device cannot open a session: the bot would miss that room
key and could not read the officer's message until the officer's client shared it
again. A fallback key is what the homeserver hands out when the one-time keys have run
out (Matrix client-server API, "One-time and fallback keys"). matrix-nio 0.26 never
uploads one; vodozemac, which it runs on, keeps one, so this generates it in the
account nio pickles, publishes it, and rotates it once a day (a fallback key can be
claimed by many, so it is not kept for ever; vodozemac still accepts the previous one,
for messages that were sent just before a rotation).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from aiohttp import ClientError
from nio import AsyncClient

from bot.clock import Clock
from bot.rawapi import ApiError, request_json
from storage import state
from storage.db import Database

log = logging.getLogger(__name__)

KEYS_UPLOAD = "/_matrix/client/v3/keys/upload"
ALGORITHM = "signed_curve25519"
PUBLISHED_KEY = "fallback_key_published_ms"
"""kv: when this device last published a fallback key (epoch ms)."""
ROTATE_AFTER = timedelta(days=1)
CHECK_EVERY_S = 3600.0


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


async def publish(client: AsyncClient, db: Database, clock: Clock) -> None:
    """Generate a new fallback key, keep it in the crypto store, then publish it.

    The private half is saved before the public half leaves, so a crash in between
    costs nothing but an unused key; a failed upload leaves the old key in force on
    the homeserver and is retried. ApiError when the homeserver refuses."""
    olm = client.olm
    assert olm is not None
    _account(client).generate_fallback_key()
    olm.save_account()
    keys = signed_fallback_keys(client)
    result = await request_json(client, "POST", KEYS_UPLOAD, {"fallback_keys": keys})
    if not result.ok:
        raise ApiError("keys/upload (fallback key)", result)
    olm.mark_keys_as_published()
    olm.save_account()
    async with db.transaction() as conn:
        await state.set_value(conn, PUBLISHED_KEY, str(clock.now_ms()))
    log.info("fallback key published", extra={"key_ids": sorted(keys)})


async def ensure_fresh(client: AsyncClient, db: Database, clock: Clock) -> bool:
    """Publish a fallback key when this device has none yet or its key is a day old;
    True when it did."""
    async with db.read() as conn:
        stored = await state.get_value(conn, PUBLISHED_KEY)
    rotate_after_ms = int(ROTATE_AFTER.total_seconds() * 1000)
    if stored is not None and clock.now_ms() - int(stored) < rotate_after_ms:
        return False
    await publish(client, db, clock)
    return True


async def keep_fresh(client: AsyncClient, db: Database, clock: Clock) -> None:
    """Rotate the fallback key once a day for as long as the bot runs; a homeserver
    that is away is tried again at the next check."""
    while True:
        await asyncio.sleep(CHECK_EVERY_S)
        try:
            await ensure_fresh(client, db, clock)
        except (ApiError, ClientError, OSError, TimeoutError) as exc:
            log.warning("fallback key not rotated; will retry", extra={"error": str(exc)})
