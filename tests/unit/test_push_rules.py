"""The push-rule evaluator the tests and the demo use (devkit/push_rules.py), checked
against the specification's default rules, written out here from the spec's text."""

from __future__ import annotations

from typing import Any

from devkit.push_rules import Reader, evaluate

ME = "@bekzod:liaison.example"
BOT = "@liaison:liaison.example"
RING = ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]


def _match(key: str, pattern: str) -> dict[str, str]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


DEFAULT_RULES: dict[str, Any] = {"global": {
    "override": [
        {"rule_id": ".m.rule.master", "enabled": False, "conditions": [], "actions": []},
        {"rule_id": ".m.rule.suppress_notices", "enabled": True,
         "conditions": [_match("content.msgtype", "m.notice")], "actions": []},
        {"rule_id": ".m.rule.invite_for_me", "enabled": True,
         "conditions": [_match("type", "m.room.member"), _match("content.membership", "invite"),
                        _match("state_key", ME)],
         "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
        {"rule_id": ".m.rule.member_event", "enabled": True,
         "conditions": [_match("type", "m.room.member")], "actions": []},
        {"rule_id": ".m.rule.is_user_mention", "enabled": True,
         "conditions": [{"kind": "event_property_contains",
                         "key": "content.m\\.mentions.user_ids", "value": ME}],
         "actions": RING},
        {"rule_id": ".m.rule.contains_display_name", "enabled": True,
         "conditions": [{"kind": "contains_display_name"}], "actions": RING},
        {"rule_id": ".m.rule.is_room_mention", "enabled": True,
         "conditions": [{"kind": "event_property_is", "key": "content.m\\.mentions.room",
                         "value": True},
                        {"kind": "sender_notification_permission", "key": "room"}],
         "actions": ["notify", {"set_tweak": "highlight"}]},
        {"rule_id": ".m.rule.roomnotif", "enabled": True,
         "conditions": [{"kind": "sender_notification_permission", "key": "room"},
                        _match("content.body", "@room")],
         "actions": ["notify", {"set_tweak": "highlight"}]},
    ],
    "content": [
        {"rule_id": ".m.rule.contains_user_name", "enabled": True, "pattern": "bekzod",
         "actions": RING},
    ],
    "room": [],
    "sender": [],
    "underride": [
        {"rule_id": ".m.rule.encrypted_room_one_to_one", "enabled": True,
         "conditions": [{"kind": "room_member_count", "is": "2"},
                        _match("type", "m.room.encrypted")],
         "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
        {"rule_id": ".m.rule.room_one_to_one", "enabled": True,
         "conditions": [{"kind": "room_member_count", "is": "2"},
                        _match("type", "m.room.message")],
         "actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
        {"rule_id": ".m.rule.message", "enabled": True,
         "conditions": [_match("type", "m.room.message")], "actions": ["notify"]},
        {"rule_id": ".m.rule.encrypted", "enabled": True,
         "conditions": [_match("type", "m.room.encrypted")], "actions": ["notify"]},
    ],
}}

ROOM = Reader(user_id=ME, display_name="Bekzod", member_count=5)
DM = Reader(user_id=ME, display_name="Bekzod", member_count=2)


def message(msgtype: str, body: str, mentions: list[str] | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"msgtype": msgtype, "body": body}
    if mentions is not None:
        content["m.mentions"] = {"user_ids": mentions}
    return {"type": "m.room.message", "sender": BOT, "room_id": "!r:x", "content": content}


def test_a_notice_never_rings_even_when_it_mentions_the_reader() -> None:
    verdict = evaluate(DEFAULT_RULES, message("m.notice", "Bekzod: reminder", [ME]), ROOM)
    assert (verdict.notify, verdict.rule_id) == (False, ".m.rule.suppress_notices")


def test_text_mentioning_the_reader_rings_with_highlight() -> None:
    verdict = evaluate(DEFAULT_RULES, message("m.text", "Reminder", [ME]), ROOM)
    assert (verdict.notify, verdict.highlight, verdict.sound, verdict.rule_id) == (
        True, True, "default", ".m.rule.is_user_mention")


def test_text_for_someone_else_notifies_without_highlight_and_a_dm_with_sound() -> None:
    other = message("m.text", "Reminder", ["@someone:liaison.example"])
    in_room = evaluate(DEFAULT_RULES, other, ROOM)
    assert (in_room.notify, in_room.highlight, in_room.sound, in_room.rule_id) == (
        True, False, None, ".m.rule.message")
    in_dm = evaluate(DEFAULT_RULES, other, DM)
    assert (in_dm.notify, in_dm.sound, in_dm.rule_id) == (True, "default",
                                                          ".m.rule.room_one_to_one")


def test_legacy_mention_rules_apply_only_without_m_mentions() -> None:
    legacy = evaluate(DEFAULT_RULES, message("m.text", "ask bekzod, please"), ROOM)
    assert (legacy.highlight, legacy.rule_id) == (True, ".m.rule.contains_display_name")
    intentional = evaluate(DEFAULT_RULES, message("m.text", "ask bekzod, please", []), ROOM)
    assert (intentional.highlight, intentional.rule_id) == (False, ".m.rule.message")
    # word boundaries: a longer word is not the name
    assert evaluate(DEFAULT_RULES, message("m.text", "bekzodov"), ROOM).rule_id == (
        ".m.rule.message")


def test_room_mention_needs_the_senders_power_and_unknown_conditions_never_match() -> None:
    room_wide = message("m.text", "@room look")
    assert evaluate(DEFAULT_RULES, room_wide, ROOM).rule_id == ".m.rule.message"
    moderator = Reader(user_id=ME, display_name=None, member_count=5, sender_power=50)
    assert evaluate(DEFAULT_RULES, room_wide, moderator).rule_id == ".m.rule.roomnotif"
    odd = {"global": {"override": [{"rule_id": "x", "enabled": True, "actions": ["notify"],
                                    "conditions": [{"kind": "future_thing"}]}]}}
    assert evaluate(odd, message("m.text", "hi"), ROOM).notify is False
