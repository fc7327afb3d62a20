"""Device trust policy: whom the bot encrypts to and whose commands it accepts.

`tofu` encrypts to every device of every room member (trust on first use).
`cross-signed` encrypts only to devices whose device → self-signing key →
master key chain verifies, as MSC4153 clients do, and refuses commands sent
from any other device. Each device left out is told so once per room key
(`m.room_key.withheld`, code `m.unverified`), so its client shows "not verified"
instead of a bare "unable to decrypt".
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientError
from nio import AsyncClient

from liaison.bot.crosssigning import KEYS_QUERY, device_is_cross_signed
from liaison.bot.rawapi import request_json

log = logging.getLogger(__name__)

TOFU = "tofu"
CROSS_SIGNED = "cross-signed"
CACHE_SECONDS = 60.0
MEGOLM = "m.megolm.v1.aes-sha2"
WITHHELD = "m.room_key.withheld"
UNVERIFIED = "m.unverified"
WITHHELD_REASON = ("This device is not cross-signed by its owner; the bot sends room keys "
                   "only to cross-signed devices.")


@dataclass
class _UserKeys:
    fetched_at: float
    master_key: dict[str, Any] | None
    self_signing_key: dict[str, Any] | None
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def cross_signed(self, user_id: str, device_id: str) -> bool:
        device = self.devices.get(device_id)
        return device is not None and device_is_cross_signed(
            user_id, device, self.master_key, self.self_signing_key
        )


class TrustPolicy:
    def __init__(self, client: AsyncClient, policy: str) -> None:
        self._client = client
        self.policy = policy
        self._cache: dict[str, _UserKeys] = {}
        self._lock = asyncio.Lock()
        self._withheld: set[tuple[str, str, str]] = set()
        """(session id, user, device) already told that a room key was withheld."""
        self.withheld_sent = 0

    def invalidate(self, user_ids: set[str]) -> None:
        for user_id in user_ids:
            self._cache.pop(user_id, None)

    async def _keys(self, user_ids: list[str], need_devices: dict[str, set[str]]) -> None:
        now = time.monotonic()
        stale = [
            u for u in user_ids
            if u not in self._cache
            or now - self._cache[u].fetched_at > CACHE_SECONDS
            or not need_devices.get(u, set()) <= set(self._cache[u].devices)
        ]
        if not stale:
            return
        result = await request_json(
            self._client, "POST", KEYS_QUERY, {"device_keys": {u: [] for u in stale}}
        )
        if not result.ok:
            raise ConnectionError(f"keys/query failed: HTTP {result.status}")
        body = result.body
        for user_id in stale:
            self._cache[user_id] = _UserKeys(
                fetched_at=now,
                master_key=body.get("master_keys", {}).get(user_id),
                self_signing_key=body.get("self_signing_keys", {}).get(user_id),
                devices=body.get("device_keys", {}).get(user_id, {}) or {},
            )

    async def sender_allowed(self, user_id: str, device_id: str | None) -> bool:
        """May a command sent from this device be acted on?"""
        if self.policy == TOFU:
            return True
        if not device_id:
            return False
        async with self._lock:
            try:
                await self._keys([user_id], {user_id: {device_id}})
            except (ClientError, TimeoutError, OSError, ConnectionError) as exc:
                log.warning("could not check sender's device", extra={"error": str(exc)})
                return False
            return self._cache[user_id].cross_signed(user_id, device_id)

    async def tell_withheld(self, room_id: str) -> None:
        """After sending into `room_id`: tell each device the policy left out that the
        room key of the room's current session was withheld (once per session and device;
        spec `m.room_key.withheld`, unencrypted to-device)."""
        if self.policy == TOFU or self._client.olm is None:
            return
        session = self._client.olm.outbound_group_sessions.get(room_id)
        room = self._client.rooms.get(room_id)
        if session is None or room is None:
            return
        messages: dict[str, dict[str, Any]] = {}
        told = []
        content = {"algorithm": MEGOLM, "room_id": room_id, "session_id": session.id,
                   "sender_key": self._client.olm.account.identity_keys["curve25519"],
                   "code": UNVERIFIED, "reason": WITHHELD_REASON}
        for user_id in room.users:
            for device in self._client.device_store.active_user_devices(user_id):
                key = (session.id, user_id, device.id)
                if device.blacklisted and key not in self._withheld:
                    messages.setdefault(user_id, {})[device.id] = content
                    told.append(key)
        if not messages:
            return
        result = await request_json(
            self._client, "PUT",
            f"/_matrix/client/v3/sendToDevice/{WITHHELD}/liaison-{uuid.uuid4().hex}",
            {"messages": messages})
        if not result.ok:
            log.warning("could not tell devices their room key was withheld",
                        extra={"room_id": room_id, "status": result.status})
            return
        self._withheld.update(told)
        self.withheld_sent += len(told)
        log.info("told devices that are not cross-signed their room key was withheld",
                 extra={"room_id": room_id, "devices": len(told)})

    async def prepare_room(self, room_id: str) -> None:
        """Before encrypting into a room: withhold keys from devices the policy excludes."""
        if self.policy == TOFU:
            return
        room = self._client.rooms.get(room_id)
        if room is None:
            return
        users = list(room.users)
        store = self._client.device_store
        need = {u: {d.id for d in store.active_user_devices(u)} for u in users}
        async with self._lock:
            await self._keys(users, need)
            for user_id in users:
                for device in store.active_user_devices(user_id):
                    if user_id == self._client.user_id and device.id == self._client.device_id:
                        continue
                    trusted = self._cache[user_id].cross_signed(user_id, device.id)
                    if trusted and device.blacklisted:
                        self._client.unblacklist_device(device)
                        self._client.invalidate_outbound_session(room_id)
                    elif not trusted and not device.blacklisted:
                        log.info("withholding room keys from a device that is not cross-signed",
                                 extra={"user_id": user_id, "device_id": device.id})
                        self._client.blacklist_device(device)
                        self._client.invalidate_outbound_session(room_id)
