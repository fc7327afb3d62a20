"""Encrypted events without the deprecated sender_key/device_id still parse as Megolm events."""

from __future__ import annotations

from typing import Any

from nio import MegolmEvent
from nio.events import Event

from liaison.bot.megolm_compat import fill_megolm_fields

ROOM = "!room:example.org"


def _event(**content: Any) -> dict[str, Any]:
    return {
        "type": "m.room.encrypted",
        "event_id": "$e1",
        "sender": "@kz:example.org",
        "origin_server_ts": 1,
        "room_id": ROOM,
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA", "session_id": "S1",
                    **content},
    }


def test_nio_alone_drops_an_event_without_the_deprecated_fields() -> None:
    assert not isinstance(Event.parse_encrypted_event(_event()), MegolmEvent)


def test_missing_fields_are_filled_from_the_known_room_key_and_device() -> None:
    event = _event()
    fill_megolm_fields(
        event, ROOM,
        lambda room, session: "CURVE" if (room, session) == (ROOM, "S1") else None,
        lambda user, key: "DEVICE" if (user, key) == ("@kz:example.org", "CURVE") else None,
    )
    parsed = Event.parse_encrypted_event(event)
    assert isinstance(parsed, MegolmEvent)
    assert (parsed.sender_key, parsed.device_id) == ("CURVE", "DEVICE")


def test_unknown_room_key_still_parses_so_the_event_can_wait_for_its_key() -> None:
    event = _event()
    fill_megolm_fields(event, ROOM, lambda r, s: None, lambda u, k: None)
    parsed = Event.parse_encrypted_event(event)
    assert isinstance(parsed, MegolmEvent)
    assert parsed.sender_key == "" and parsed.session_id == "S1"


def test_present_fields_and_other_events_are_left_alone() -> None:
    event = _event(sender_key="ORIGINAL", device_id="DEV")
    fill_megolm_fields(event, ROOM, lambda r, s: "OTHER", lambda u, k: "OTHER")
    assert event["content"]["sender_key"] == "ORIGINAL"
    assert event["content"]["device_id"] == "DEV"
    message = {"type": "m.room.message", "content": {"body": "hi"}}
    fill_megolm_fields(message, ROOM, lambda r, s: "X", lambda u, k: "X")
    assert message == {"type": "m.room.message", "content": {"body": "hi"}}
