"""`liaison recover-device`: a new device under the same identity, the old one retired.

When the crypto store is stale (restored from an older copy) or lost, but the
cross-signing seeds survive, the bot cannot go on as its old device: officers' clients
hold sessions and one-time keys that store does not know. It can become a new device
that its own self-signing key signs: clients that trust the bot's cross-signing identity
trust the new device at once (no red shield, no new verification) and encrypt to it from
their next message.

In order, with the bot stopped:

1. the old device's `credentials.json` and `crypto/` are moved into
   `retired-<device>-<time>/` in the data directory (kept, never deleted here);
2. messages still pending in the outbox are checked against what the old device
   already sent: a transaction id is the old device's (the homeserver deduplicates per
   device), and the homeserver shows a sender's own transaction id only to the device
   that sent it, so the old token reads the rooms' recent events and every pending
   message found there is marked sent. The rest are sent by the new device, once;
3. the bot logs in with the password (a new device), publishes its keys and signs the
   device with the self-signing key from `cross-signing.json`;
4. the old device is deleted with the password (user-interactive auth); where the
   homeserver does not allow that, the operator is told the exact request to make.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import ClientError
from nio import AsyncClient, AsyncClientConfig

from liaison.bot.app import retrying
from liaison.bot.backup import RESTORED_MARK
from liaison.bot.crosssigning import ensure_cross_signed, load_seeds
from liaison.bot.files import ensure_private_dir
from liaison.bot.key_health import KeyHealth
from liaison.bot.rawapi import request_json
from liaison.bot.session import (
    CREDENTIALS_FILE,
    CRYPTO_DIR,
    Credentials,
    SessionSettings,
    StartupError,
    open_session,
)
from liaison.bot.stale_store import check_and_upload
from liaison.storage import audit, outbox
from liaison.storage.audit import AuditAction
from liaison.storage.db import Database

log = logging.getLogger(__name__)

MESSAGES_PAGES = 20
"""How far back (pages of 100 events per room) the old device's sent messages are looked
for; they are never older than the oldest pending message."""


@dataclass(frozen=True)
class Recovery:
    old_device: str | None
    new_device: str
    retired_to: Path | None
    already_sent: int
    """Pending outbox messages the old device had sent: marked sent, not sent again."""
    still_pending: int
    old_device_deleted: bool
    delete_instructions: str | None


async def recover_device(settings: SessionSettings, db: Database, seeds_path: Path,
                         *, now_ms: int) -> Recovery:
    if not settings.password:
        raise StartupError("recover-device needs bot.password: it logs in as a new device "
                           "and deletes the old one")
    if load_seeds(seeds_path) is None:
        raise StartupError(
            f"{seeds_path} is missing: without the cross-signing seeds a new device cannot "
            "be signed as the same identity. Restore the file from a backup, or run "
            "`liaison reset-identity` after the new device is set up.")
    data_dir = settings.data_dir
    old = Credentials.load(data_dir / CREDENTIALS_FILE)
    already_sent = 0
    if old is not None:
        already_sent = await _settle_what_the_old_device_sent(old, db, now_ms)
    retired_to = _retire_files(data_dir, old)
    # No credentials now: this logs in, a new device.
    client = await retrying("log in as a new device", lambda: open_session(settings),
                            attempts=3)
    try:
        await check_and_upload(client, db, KeyHealth())
        await ensure_cross_signed(client, seeds_path, settings.password)
        deleted, instructions = (True, None) if old is None else await _delete_device(
            client, old, settings.password)
        (data_dir / RESTORED_MARK).unlink(missing_ok=True)  # a new device: safe to run
        async with db.transaction() as conn:
            still_pending = len(await outbox.pending(conn))
            await audit.append(conn, ts_ms=now_ms, actor=audit.OPERATOR,
                               action=AuditAction.DEVICE_RECOVERED, detail={
                                   "old_device": old.device_id if old else None,
                                   "new_device": client.device_id,
                                   "old_device_deleted": deleted,
                                   "already_sent": already_sent})
        return Recovery(old_device=old.device_id if old else None,
                        new_device=client.device_id, retired_to=retired_to,
                        already_sent=already_sent, still_pending=still_pending,
                        old_device_deleted=deleted, delete_instructions=instructions)
    finally:
        await client.close()


def _retire_files(data_dir: Path, old: Credentials | None) -> Path | None:
    """Move the old device's credentials and crypto store aside, kept for inspection."""
    credentials, crypto = data_dir / CREDENTIALS_FILE, data_dir / CRYPTO_DIR
    if not credentials.exists() and not crypto.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = data_dir / f"retired-{old.device_id if old else 'unknown'}-{stamp}"
    ensure_private_dir(target)
    for path in (credentials, crypto):
        if path.exists():
            path.rename(target / path.name)
    log.info("old device's files moved aside", extra={"retired_to": str(target)})
    return target


def _old_device_client(old: Credentials) -> AsyncClient:
    """A plain client with the old device's token: it only reads, never encrypts."""
    client = AsyncClient(old.homeserver, old.user_id, device_id=old.device_id,
                         config=AsyncClientConfig(encryption_enabled=False))
    client.access_token = old.access_token
    return client


async def _settle_what_the_old_device_sent(old: Credentials, db: Database,
                                           now_ms: int) -> int:
    """Mark sent the pending outbox messages the old device already sent; how many."""
    async with db.read() as conn:
        waiting = await outbox.pending(conn)
    if not waiting:
        return 0
    client = _old_device_client(old)
    settled = 0
    try:
        rooms: dict[str, list[outbox.OutboxMessage]] = {}
        for message in waiting:
            rooms.setdefault(message.room_id, []).append(message)
        for room_id, messages in rooms.items():
            since_ms = min(message.created_ms for message in messages)
            sent = await _sent_by_device(client, room_id, old.user_id, since_ms)
            if sent is None:
                log.warning("could not read what the old device sent; its pending messages "
                            "will be sent by the new device, possibly a second time",
                            extra={"room_id": room_id, "messages": len(messages)})
                continue
            async with db.transaction() as conn:
                for message in messages:
                    event_id = sent.get(message.txn_id)
                    if event_id is not None:
                        await outbox.mark_sent(conn, message.id, event_id=event_id,
                                               now_ms=now_ms)
                        settled += 1
    finally:
        await client.close()
    return settled


async def _sent_by_device(client: AsyncClient, room_id: str, user_id: str,
                          since_ms: int) -> dict[str, str] | None:
    """Transaction id → event id of the events this device sent into the room since
    `since_ms` (the homeserver shows `unsigned.transaction_id` to the sending device
    only); None when the room cannot be read with the old token."""
    found: dict[str, str] = {}
    start: str | None = None
    for _ in range(MESSAGES_PAGES):
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=100"
        if start:
            path += f"&from={quote(start)}"
        try:
            result = await request_json(client, "GET", path)
        except (ClientError, TimeoutError, OSError):
            return None
        if not result.ok:
            return None
        chunk: list[dict[str, Any]] = result.body.get("chunk") or []
        for event in chunk:
            txn_id = (event.get("unsigned") or {}).get("transaction_id")
            if event.get("sender") == user_id and isinstance(txn_id, str):
                found[txn_id] = str(event.get("event_id"))
        oldest = min((int(e.get("origin_server_ts", 0)) for e in chunk), default=0)
        start = result.body.get("end")
        if not chunk or not start or oldest < since_ms - 60_000:
            break
    return found


async def _delete_device(client: AsyncClient, old: Credentials,
                         password: str) -> tuple[bool, str | None]:
    """Delete the old device with the password (user-interactive auth); (False, what the
    operator should do) when the homeserver does not allow it."""
    path = f"/_matrix/client/v3/devices/{quote(old.device_id)}"
    first = await request_json(client, "DELETE", path, {})
    result = first
    if first.status == 401 and "flows" in first.body:
        result = await request_json(client, "DELETE", path, {"auth": {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": old.user_id},
            "password": password, "session": first.body.get("session")}})
    if result.ok or result.status == 404:
        log.info("old device deleted", extra={"device_id": old.device_id})
        return True, None
    instructions = (
        f"The homeserver did not let the bot delete its old device {old.device_id} "
        f"(HTTP {result.status} {result.body.get('error', '')}). Delete it as a homeserver "
        f"admin; on Synapse: curl -X DELETE -H 'Authorization: Bearer <admin token>' "
        f"'{old.homeserver}/_synapse/admin/v2/users/{quote(old.user_id)}/devices/"
        f"{quote(old.device_id)}'. Never log into the bot's account from Element to do it.")
    log.error("old device not deleted", extra={"device_id": old.device_id,
                                               "status": result.status})
    return False, instructions
