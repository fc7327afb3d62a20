"""Olm sessions with every device in a room, before the bot encrypts into it.

The room key of a message reaches a device only through an Olm session with it, and a
session with a device the bot has never talked to needs one of that device's one-time
keys, claimed from the homeserver. matrix-nio claims them once, inside the send, and
ignores a failed claim: the devices it missed are skipped and the room key is marked as
shared, so they cannot read that message nor any later one under the same key. When a
post's whole shift logs in at once (thirty new devices), that was most of the room.

So before each send the bot claims keys itself: for every device of every member that
it has no session with, in batches, each batch retried with a back-off, every failure
logged in words. A device that got a session after the room key went out (its claim
failed earlier, or it appeared since) is given the current room key before the next
message: nio shares an unshared key only with the devices that lack it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import ClientError
from nio import (
    AsyncClient,
    KeysClaimResponse,
    KeysQueryResponse,
    LocalProtocolError,
    MatrixRoom,
)
from nio.crypto import OlmDevice

from liaison.bot.key_health import KeyHealth

log = logging.getLogger(__name__)

CLAIM_BATCH = 50
"""Devices per keys/claim request."""
CLAIM_ATTEMPTS = 4
"""Tries per batch before its devices are given up on for this message."""
RETRY_FIRST_S = 0.5
"""The wait before the second try; doubled for each further one."""

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, order=True)
class DeviceRef:
    user_id: str
    device_id: str


class KeyClaims:
    """Opens the Olm sessions a room needs before the bot encrypts into it."""

    def __init__(self, client: AsyncClient, health: KeyHealth, *, batch: int = CLAIM_BATCH,
                 attempts: int = CLAIM_ATTEMPTS, retry_first_s: float = RETRY_FIRST_S,
                 sleep: Sleep = asyncio.sleep) -> None:
        self._client = client
        self._health = health
        self._batch = batch
        self._attempts = attempts
        self._retry_first_s = retry_first_s
        self._sleep = sleep
        self._lock = asyncio.Lock()
        """One claim at a time: two rooms sending at once must not claim the same device's
        key twice (each claim uses up a one-time key of the officer's device)."""
        self._reported: set[DeviceRef] = set()
        """Devices already named in an error: logged once until they have a session."""

    async def prepare_room(self, room_id: str) -> None:
        """Claim one-time keys for every device in the room the bot has no session with,
        and make sure devices that have a session now get the current room key. Never
        raises for a failed claim: the message still goes to every device that can read
        it, and the devices left out are logged and tried again before the next one."""
        client = self._client
        room = client.rooms.get(room_id)
        if room is None or not room.encrypted or client.olm is None:
            return
        async with self._lock:
            await self._query_device_lists()
            missing = self.devices_without_session(room)
            if missing:
                await self._claim(missing)
                self._report(missing, self.devices_without_session(room))
            self._share_with_late_devices(room_id, room)

    def devices_without_session(self, room: MatrixRoom) -> list[DeviceRef]:
        """Devices of the room's members the bot would encrypt to but has no Olm session
        with (its own device and devices the trust policy withholds keys from excepted)."""
        olm = self._client.olm
        assert olm is not None
        missing = []
        for device in self._devices(room):
            if not olm.session_store.get(device.curve25519):
                missing.append(DeviceRef(device.user_id, device.device_id))
        return sorted(missing)

    def _devices(self, room: MatrixRoom) -> list[OlmDevice]:
        client = self._client
        olm = client.olm
        assert olm is not None
        found = []
        for user_id in room.users:
            for device in client.device_store.active_user_devices(user_id):
                if user_id == client.user_id and device.id == client.device_id:
                    continue
                if olm.is_device_blacklisted(device):
                    continue
                found.append(device)
        return found

    async def _query_device_lists(self) -> None:
        """Members whose device lists changed are queried first: a device the bot does not
        know yet would get neither a session nor the room key."""
        client = self._client
        if not client.should_query_keys:
            return
        try:
            response = await client.keys_query()
        except (ClientError, TimeoutError, OSError, LocalProtocolError) as exc:
            log.warning("could not fetch members' device lists before sending; "
                        "new devices may miss this message", extra={"error": str(exc)})
            return
        if not isinstance(response, KeysQueryResponse):
            log.warning("could not fetch members' device lists before sending; "
                        "new devices may miss this message", extra={"error": str(response)})

    async def _claim(self, missing: list[DeviceRef]) -> None:
        for start in range(0, len(missing), self._batch):
            await self._claim_batch(missing[start:start + self._batch])

    async def _claim_batch(self, batch: list[DeviceRef]) -> None:
        wanted: dict[str, list[str]] = {}
        for device in batch:
            wanted.setdefault(device.user_id, []).append(device.device_id)
        for attempt in range(1, self._attempts + 1):
            error = await self._claim_once(wanted)
            if error is None:
                return
            self._health.claim_failed(error)
            if attempt == self._attempts:
                log.error("claiming one-time keys failed; these devices cannot read the "
                          "message being sent, and are tried again before the next one",
                          extra={"error": error, "attempts": attempt, "devices": len(batch),
                                 "users": sorted(wanted)})
                return
            delay = self._retry_first_s * 2 ** (attempt - 1)
            log.warning("claiming one-time keys failed; will retry",
                        extra={"error": error, "attempt": attempt, "devices": len(batch),
                               "retry_in_s": delay})
            await self._sleep(delay)

    async def _claim_once(self, wanted: dict[str, list[str]]) -> str | None:
        """One keys/claim request; None when it went through, else what went wrong."""
        try:
            response = await self._client.keys_claim(wanted)
        except (ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
        if not isinstance(response, KeysClaimResponse):
            return str(response)
        if response.failures:  # other homeservers that did not answer: logged, not retried
            log.warning("some homeservers did not hand out one-time keys",
                        extra={"failures": sorted(response.failures)})
        return None

    def _report(self, claimed: list[DeviceRef], still_missing: list[DeviceRef]) -> None:
        """Name once each device that is still without a session after its claim."""
        left = set(still_missing)
        for device in claimed:
            if device not in left:
                self._reported.discard(device)
                continue
            if device in self._reported:
                continue
            self._reported.add(device)
            log.error("no Olm session with a device: the homeserver gave no one-time key "
                      "for it (or the claim failed), so it cannot read the bot's messages "
                      "until a later claim succeeds",
                      extra={"user_id": device.user_id, "device_id": device.device_id})

    def _share_with_late_devices(self, room_id: str, room: MatrixRoom) -> None:
        """When the room key already went out and a device with a session did not get it,
        mark it unshared: nio then sends it to the devices that lack it (only those)
        before encrypting the next message under it."""
        olm = self._client.olm
        assert olm is not None
        session = olm.outbound_group_sessions.get(room_id)
        if session is None or not session.shared or session.expired:
            return
        done = session.users_shared_with | session.users_ignored
        late = [device for device in self._devices(room)
                if (device.user_id, device.device_id) not in done
                and olm.session_store.get(device.curve25519)]
        if late:
            session.shared = False
            log.info("sharing the room key with devices that missed it",
                     extra={"room_id": room_id, "devices": len(late)})
