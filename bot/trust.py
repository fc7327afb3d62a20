"""Device trust policy: whom the bot encrypts to and whose commands it accepts.

`tofu` encrypts to every device of every room member (trust on first use).
`cross-signed` encrypts only to devices whose device → self-signing key →
master key chain verifies, as MSC4153 clients do, and refuses commands sent
from any other device. Each device left out is told so once per room key
(`m.room_key.withheld`, code `m.unverified`), so its client shows "not verified"
instead of a bare "unable to decrypt".

A link room (`docs/links.md`) is stricter, whatever the policy: its room keys go only to
the bot's own device and to the partner bot's devices whose chain verifies up to the
**pinned** master key (`Link.partner_master_key`); every other device in it, the
partner's or anyone's, is told `m.unverified`. A partner's device is judged by its pinned
key in every room, so no other room's policy can let it back in.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientError
from nio import AsyncClient, LocalProtocolError

from liaison.bot.crosssigning import (
    KEYS_QUERY,
    device_is_cross_signed,
    device_signed_by_pinned,
)
from liaison.bot.rawapi import request_json
from liaison.commands.links import Link

log = logging.getLogger(__name__)

TOFU = "tofu"
CROSS_SIGNED = "cross-signed"
CACHE_SECONDS = 60.0
MEGOLM = "m.megolm.v1.aes-sha2"
WITHHELD = "m.room_key.withheld"
UNVERIFIED = "m.unverified"
WITHHELD_REASON = ("This device is not cross-signed by its owner; the bot sends room keys "
                   "only to cross-signed devices.")
LINK_WITHHELD_REASON = ("This is a link room between two bots; its room keys go only to the "
                        "partner bot's devices signed by its pinned identity.")
GUARDED = "_liaison_link_guard"
"""Attribute set on nio's Olm machine once its key sharing is restricted in link rooms."""


class LinkNotReady(ConnectionError):
    """Nothing may be sent into a link room yet: the partner has no pinned device."""


@dataclass
class UserKeys:
    """One user's cross-signing keys and signed device objects, as keys/query returned them."""

    fetched_at: float
    master_key: dict[str, Any] | None
    self_signing_key: dict[str, Any] | None
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def cross_signed(self, user_id: str, device_id: str) -> bool:
        device = self.devices.get(device_id)
        return device is not None and device_is_cross_signed(
            user_id, device, self.master_key, self.self_signing_key
        )

    def pinned(self, user_id: str, device_id: str, pinned_master: str) -> bool:
        """Cross-signed, and by the master key `pinned_master`."""
        device = self.devices.get(device_id)
        return device is not None and device_signed_by_pinned(
            user_id, device, self.master_key, self.self_signing_key, pinned_master)


class TrustPolicy:
    def __init__(self, client: AsyncClient, policy: str, links: Sequence[Link] = ()) -> None:
        self._client = client
        self.policy = policy
        self._links = {link.room: link for link in links}
        """Link room → its link: keys only to the partner's pinned devices there."""
        self._pinned: dict[str, frozenset[str]] = {}
        for link in links:
            self._pinned[link.partner] = self._pinned.get(link.partner, frozenset()) | {
                link.partner_master_key}
        """Partner bot → the master keys pinned for it (one, unless two links name it)."""
        self._cache: dict[str, UserKeys] = {}
        self._lock = asyncio.Lock()
        self._withheld: set[tuple[str, str, str]] = set()
        """(session id, user, device) already told that a room key was withheld."""
        self.withheld_sent = 0

    def invalidate(self, user_ids: set[str]) -> None:
        """Fetch these users' keys again before they are next relied on. What was fetched
        stays until the new answer replaces it: a link room's key shared meanwhile (nio
        shares at the moment it sends, `_narrow`) must not find the partner unknown and
        leave its pinned device out of the room's session."""
        for user_id in user_ids:
            self._mark_stale(user_id)

    def _mark_stale(self, user_id: str) -> None:
        keys = self._cache.get(user_id)
        if keys is not None:
            keys.fetched_at = float("-inf")

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
            self._cache[user_id] = UserKeys(
                fetched_at=now,
                master_key=body.get("master_keys", {}).get(user_id),
                self_signing_key=body.get("self_signing_keys", {}).get(user_id),
                devices=body.get("device_keys", {}).get(user_id, {}) or {},
            )

    async def user_keys(self, user_id: str, *, fresh: bool = False) -> UserKeys:
        """`user_id`'s keys from keys/query (cached for a minute unless `fresh`); raises
        ConnectionError (or aiohttp's errors) when they cannot be fetched."""
        async with self._lock:
            if fresh:
                self._mark_stale(user_id)  # replaced only once the new answer is in
            await self._keys([user_id], {})
            return self._cache[user_id]

    def _trusted(self, user_id: str, device_id: str) -> bool:
        """Whether a device may have room keys outside link rooms by the policy; a link
        partner's device only when it is signed by a pinned master key."""
        keys = self._cache[user_id]
        pinned = self._pinned.get(user_id)
        if pinned is not None:
            return any(keys.pinned(user_id, device_id, master) for master in pinned)
        return keys.cross_signed(user_id, device_id)

    def link_recipient(self, room_id: str, user_id: str, device_id: str) -> bool:
        """May this device have the room keys of `room_id`? In a link room only the bot's
        own device and the partner's pinned devices (as last fetched) may; True in any
        other room (the policy decides there)."""
        link = self._links.get(room_id)
        if link is None:
            return True
        if user_id == self._client.user_id:
            return bool(device_id == self._client.device_id)
        keys = self._cache.get(user_id)
        return (user_id == link.partner and keys is not None
                and keys.pinned(user_id, device_id, link.partner_master_key))

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
            return self._trusted(user_id, device_id)

    async def tell_withheld(self, room_id: str) -> None:
        """After sending into `room_id`: tell each device the policy left out that the
        room key of the room's current session was withheld (once per session and device;
        spec `m.room_key.withheld`, unencrypted to-device)."""
        link_room = room_id in self._links
        if (self.policy == TOFU and not link_room) or self._client.olm is None:
            return
        session = self._client.olm.outbound_group_sessions.get(room_id)
        room = self._client.rooms.get(room_id)
        if session is None or room is None:
            return
        messages: dict[str, dict[str, Any]] = {}
        told = []
        content = {"algorithm": MEGOLM, "room_id": room_id, "session_id": session.id,
                   "sender_key": self._client.olm.account.identity_keys["curve25519"],
                   "code": UNVERIFIED,
                   "reason": LINK_WITHHELD_REASON if link_room else WITHHELD_REASON}
        for user_id in room.users:
            for device in self._client.device_store.active_user_devices(user_id):
                key = (session.id, user_id, device.id)
                left_out = device.blacklisted or not self.link_recipient(room_id, user_id,
                                                                         device.id)
                if left_out and key not in self._withheld:
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
        """Before encrypting into a room: withhold keys from devices the policy excludes
        (in a link room: from every device but the partner's pinned ones)."""
        self.guard_link_rooms()
        link_room = room_id in self._links
        if self.policy == TOFU and not link_room:
            return
        room = self._client.rooms.get(room_id)
        if room is None:
            return
        users = list(room.users)
        if link_room and self.policy == TOFU:
            users = [user for user in users if user in self._pinned]
        if link_room and self._links[room_id].partner not in users:
            users.append(self._links[room_id].partner)
        store = self._client.device_store
        need = {u: {d.id for d in store.active_user_devices(u)} for u in users}
        async with self._lock:
            await self._keys(users, need)
            for user_id in users:
                for device in store.active_user_devices(user_id):
                    if user_id == self._client.user_id and device.id == self._client.device_id:
                        continue
                    trusted = self._trusted(user_id, device.id)
                    if trusted and device.blacklisted:
                        self._client.unblacklist_device(device)
                        self._client.invalidate_outbound_session(room_id)
                    elif not trusted and not device.blacklisted:
                        log.info("withholding room keys from a device that is not cross-signed",
                                 extra={"user_id": user_id, "device_id": device.id})
                        self._client.blacklist_device(device)
                        self._client.invalidate_outbound_session(room_id)
            if link_room:
                await self._require_partner(room_id)

    async def _require_partner(self, room_id: str) -> None:
        """Hold what is queued for a link room (the sender retries, `/healthz` sees the
        link's queue age) while the partner has not joined it or no device of the partner
        is signed by the pinned key: a protocol event it cannot receive or read would be
        lost, not delivered. A partner nio has not fetched the devices of yet (it just
        joined) is fetched first."""
        link = self._links[room_id]
        if not self._partner_ready(room_id, link) and self._client.olm is not None:
            self._client.olm.users_for_key_query.add(link.partner)
            try:
                await self._client.keys_query()
            except (ClientError, TimeoutError, OSError, LocalProtocolError) as exc:
                log.warning("could not fetch the partner's devices",
                            extra={"link": link.name, "error": str(exc)})
        if not self._partner_ready(room_id, link):
            raise LinkNotReady(
                f"link {link.name}: {link.partner} has not joined the link room, or no "
                "device of it is signed by the pinned master key (its identity is not the "
                "pinned one); protocol events wait")

    def _partner_ready(self, room_id: str, link: Link) -> bool:
        """The partner has joined (an event sent while it is only invited never reaches
        its server's sync) and has a device signed by the pinned key."""
        room = self._client.rooms.get(room_id)
        if room is None or link.partner not in room.users or link.partner in room.invited_users:
            return False
        devices = self._client.device_store.active_user_devices(link.partner)
        return any(self.link_recipient(room_id, link.partner, device.id) for device in devices)

    def guard_link_rooms(self) -> None:
        """Restrict nio's sharing of a link room's key to the recipients `link_recipient`
        allows, decided at the moment nio shares it: a device that appeared meanwhile (a
        device list fetched inside the send, a member who just joined) is left out until
        its owner's keys are fetched and pass. nio shares with every device of every
        member it is given, so the link room's members are narrowed down here."""
        olm = self._client.olm
        if not self._links or olm is None or getattr(olm, GUARDED, False):
            return
        share = olm.share_group_session_parallel

        def guarded(room_id: str, users: list[str],
                    ignore_unverified_devices: bool = False) -> Iterator[Any]:
            if room_id in self._links:
                users = self._narrow(room_id, users)
            shared: Iterator[Any] = share(room_id, users,
                                          ignore_unverified_devices=ignore_unverified_devices)
            return shared

        olm.share_group_session_parallel = guarded
        setattr(olm, GUARDED, True)

    def _narrow(self, room_id: str, users: list[str]) -> list[str]:
        """The link room's members who may have its key (the bot and the partner), with
        each of the partner's devices that may not blacklisted, and every excluded device
        marked as left out of the room's current session (so it is never counted as having
        missed the key: `bot.key_claims`)."""
        link = self._links[room_id]
        olm = self._client.olm
        assert olm is not None
        if link.partner in users and link.partner not in self._cache:
            # The partner's keys are not known at this moment: sharing now would leave
            # its pinned device out of this session for good. Held; the sender retries.
            raise LinkNotReady(f"link {link.name}: the partner's keys are not fetched yet")
        excluded = [(user_id, device)
                    for user_id in users
                    for device in self._client.device_store.active_user_devices(user_id)
                    if not self.link_recipient(room_id, user_id, device.id)]
        session = olm.outbound_group_sessions.get(room_id)
        if session is None or session.shared or any(
                (user_id, device.id) in session.users_shared_with
                for user_id, device in excluded):
            # nio would start a new one, or a device that had the key may no longer have
            # it: start a new one here
            olm.create_outbound_group_session(room_id)
            session = olm.outbound_group_sessions[room_id]
        allowed = {link.partner, self._client.user_id}
        for user_id, device in excluded:
            if user_id in allowed and not device.blacklisted:
                self._client.blacklist_device(device)
            session.users_ignored.add((user_id, device.id))
        return [user_id for user_id in users if user_id in allowed]
