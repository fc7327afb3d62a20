"""Accept Megolm events without the deprecated `sender_key` and `device_id` fields.

Since Matrix 1.3 senders SHOULD still include them but receivers MUST NOT
depend on them, and clients have started to omit them. matrix-nio 0.26
requires both: without them an encrypted event fails its schema and would be
dropped without a word. Liaison fills them in before nio parses the sync: the
sender key from the room key that carries the event's session id, the device
from the sender's device whose Curve25519 key that is. When the room key has
not arrived yet the fields are left empty, the event is kept as undecryptable,
and filled again on each retry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import ClientResponse
from nio import AsyncClient

MEGOLM = "m.megolm.v1.aes-sha2"

SenderKeyLookup = Callable[[str, str], str | None]  # (room_id, session_id) -> sender key
DeviceLookup = Callable[[str, str], str | None]  # (user_id, curve25519 key) -> device id


def fill_megolm_fields(
    event: dict[str, Any],
    room_id: str,
    find_sender_key: SenderKeyLookup,
    find_device: DeviceLookup,
) -> None:
    """Fill missing `sender_key`/`device_id` of one raw encrypted room event, in place."""
    content = event.get("content")
    if event.get("type") != "m.room.encrypted" or not isinstance(content, dict):
        return
    if content.get("algorithm") != MEGOLM:
        return
    session_id = content.get("session_id")
    if not isinstance(session_id, str):
        return
    sender_key = content.get("sender_key")
    if not isinstance(sender_key, str) or not sender_key:
        sender_key = find_sender_key(room_id, session_id) or ""
        content["sender_key"] = sender_key
    device_id = content.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        sender = event.get("sender")
        found = find_device(sender, sender_key) if isinstance(sender, str) and sender_key else None
        content["device_id"] = found or ""


class LiaisonClient(AsyncClient):  # type: ignore[misc]  # nio ships no type stubs
    """matrix-nio's client, reading sync responses with the deprecated fields filled in."""

    def find_sender_key(self, room_id: str, session_id: str) -> str | None:
        if self.olm is None:
            return None
        for sender_key, sessions in self.olm.inbound_group_store[room_id].items():
            if session_id in sessions:
                return str(sender_key)
        return None

    def find_device(self, user_id: str, curve25519: str) -> str | None:
        if self.olm is None:
            return None
        for device in self.olm.device_store.active_user_devices(user_id):
            if device.curve25519 == curve25519:
                return str(device.id)
        return None

    def fill(self, event: dict[str, Any], room_id: str) -> None:
        fill_megolm_fields(event, room_id, self.find_sender_key, self.find_device)

    async def parse_body(self, transport_response: ClientResponse) -> dict[Any, Any]:
        body: dict[Any, Any] = await super().parse_body(transport_response)
        rooms = body.get("rooms") if isinstance(body, dict) else None
        joined = rooms.get("join") if isinstance(rooms, dict) else None
        if isinstance(joined, dict):
            for room_id, info in joined.items():
                timeline = info.get("timeline") if isinstance(info, dict) else None
                events = timeline.get("events") if isinstance(timeline, dict) else None
                for event in events if isinstance(events, list) else []:
                    if isinstance(event, dict):
                        self.fill(event, room_id)
        return body
