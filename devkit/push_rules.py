"""Would this message ring? Push rules evaluated the way an officer's client evaluates them.

In an encrypted room the homeserver cannot read a message, so the officer's client
decides whether it notifies: it decrypts the event and runs the user's push rules over
it (client-server API, "Push Rules": override, content, room, sender, underride rules
in that order; the first enabled rule whose conditions all hold decides). This module
is that evaluation, written from the specification's text, for the tests and the demo:
`evaluate` takes the ruleset the homeserver serves the officer (`GET /pushrules/`: the
spec's default rules unless the officer changed them) and the decrypted event.

Conditions implemented: `event_match` (glob, case-insensitive, whole value; on
`content.body` any word-bounded substring), `event_property_is`,
`event_property_contains`, `contains_display_name`, `room_member_count`,
`sender_notification_permission`. Unknown conditions never match, as the spec requires.
An event carrying `m.mentions` skips the legacy mention rules
(`.m.rule.contains_display_name`, `.m.rule.contains_user_name`, `.m.rule.roomnotif`),
as intentional mentions (spec v1.7) require.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

KINDS = ("override", "content", "room", "sender", "underride")
"""Rule kinds in the order a client checks them."""
LEGACY_MENTION_RULES = frozenset({".m.rule.contains_display_name",
                                  ".m.rule.contains_user_name", ".m.rule.roomnotif"})
_WORD = "A-Za-z0-9_"


@dataclass(frozen=True)
class Verdict:
    """What the officer's client does with the event."""

    notify: bool
    highlight: bool
    sound: str | None
    rule_id: str | None
    """The rule that decided, None when none matched (no notification)."""

    def describe(self) -> str:
        """`rings (sound default, highlight) by .m.rule.is_user_mention`, or `silent by …`."""
        if not self.notify:
            return f"silent ({self.rule_id or 'no rule matched'})"
        extras = [f"sound {self.sound}"] if self.sound else []
        if self.highlight:
            extras.append("highlight")
        detail = f" ({', '.join(extras)})" if extras else ""
        return f"{'rings' if self.sound else 'notifies'}{detail} by {self.rule_id}"


@dataclass(frozen=True)
class Reader:
    """What the rules need to know about the reading user and the room."""

    user_id: str
    display_name: str | None
    member_count: int
    sender_power: int = 0
    notification_levels: Mapping[str, int] | None = None
    """The room's `notifications` power levels (`room` defaults to 50)."""


def evaluate(ruleset: Mapping[str, Any], event: Mapping[str, Any], reader: Reader) -> Verdict:
    """The verdict of the `global` ruleset (`GET /pushrules/`'s answer or its `global`)."""
    rules = ruleset.get("global", ruleset)
    content = event.get("content")
    has_mentions = isinstance(content, dict) and "m.mentions" in content
    for kind in KINDS:
        for rule in rules.get(kind) or ():
            if not rule.get("enabled", True):
                continue
            rule_id = str(rule.get("rule_id", ""))
            if has_mentions and rule_id in LEGACY_MENTION_RULES:
                continue
            if _matches(kind, rule, event, reader):
                return _verdict(rule.get("actions") or (), rule_id)
    return Verdict(notify=False, highlight=False, sound=None, rule_id=None)


def _matches(kind: str, rule: Mapping[str, Any], event: Mapping[str, Any],
             reader: Reader) -> bool:
    if kind == "content":
        pattern = rule.get("pattern")
        return isinstance(pattern, str) and _body_match(_property(event, "content.body"),
                                                         pattern)
    if kind == "room":
        return event.get("room_id") == rule.get("rule_id")
    if kind == "sender":
        return event.get("sender") == rule.get("rule_id")
    return all(_condition(condition, event, reader)
               for condition in rule.get("conditions") or ())


def _condition(condition: Mapping[str, Any], event: Mapping[str, Any], reader: Reader) -> bool:
    kind = condition.get("kind")
    if kind == "event_match":
        key, pattern = condition.get("key"), condition.get("pattern")
        if not isinstance(key, str) or not isinstance(pattern, str):
            return False
        value = _property(event, key)
        if key == "content.body":
            return _body_match(value, pattern)
        return isinstance(value, str) and re.fullmatch(_glob(pattern), value,
                                                       re.IGNORECASE | re.DOTALL) is not None
    if kind == "event_property_is":
        value = _property(event, str(condition.get("key", "")))
        return _scalar(value) and _same(value, condition.get("value"))
    if kind == "event_property_contains":
        values = _property(event, str(condition.get("key", "")))
        wanted = condition.get("value")
        return isinstance(values, list) and any(_scalar(value) and _same(value, wanted)
                                                for value in values)
    if kind == "contains_display_name":
        name = reader.display_name
        return bool(name) and _body_match(_property(event, "content.body"), re.escape(
            name or ""), literal=True)
    if kind == "room_member_count":
        return _member_count(str(condition.get("is", "")), reader.member_count)
    if kind == "sender_notification_permission":
        levels = reader.notification_levels or {}
        needed = levels.get(str(condition.get("key", "")), 50)
        return reader.sender_power >= needed
    return False  # unrecognised conditions never match


def _property(event: Mapping[str, Any], key: str) -> Any:
    """The value at a dot-separated property path (`\\.` is a literal dot, `\\\\` a
    backslash); None when any step is missing."""
    parts, current, escaped = [], "", False
    for char in key:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ".":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    value: Any = event
    for part in parts:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _glob(pattern: str) -> str:
    return "".join(".*" if char == "*" else "." if char == "?" else re.escape(char)
                   for char in pattern)


def _body_match(body: Any, pattern: str, *, literal: bool = False) -> bool:
    """A case-insensitive match of any substring of the body that starts and ends at a
    word boundary (the value's ends, or any character outside [A-Za-z0-9_])."""
    if not isinstance(body, str):
        return False
    inner = pattern if literal else _glob(pattern)
    regex = rf"(?:^|(?<=[^{_WORD}])){inner}(?:$|(?=[^{_WORD}]))"
    return re.search(regex, body, re.IGNORECASE | re.DOTALL) is not None


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | bool)


def _same(value: Any, wanted: Any) -> bool:
    """Exact equality that keeps `true` and `1` apart, as JSON does."""
    return type(value) is type(wanted) and value == wanted


def _member_count(spec: str, count: int) -> bool:
    match = re.fullmatch(r"(==|<=|>=|<|>)?([0-9]+)", spec)
    if match is None:
        return False
    operator, number = match.group(1) or "==", int(match.group(2))
    return {"==": count == number, "<": count < number, ">": count > number,
            "<=": count <= number, ">=": count >= number}[operator]


def _verdict(actions: Sequence[Any], rule_id: str) -> Verdict:
    notify = any(action in ("notify", "coalesce") for action in actions)
    highlight, sound = False, None
    for action in actions:
        if isinstance(action, Mapping) and action.get("set_tweak") == "highlight":
            highlight = action.get("value", True) is True
        elif isinstance(action, Mapping) and action.get("set_tweak") == "sound":
            sound = str(action.get("value"))
    return Verdict(notify=notify, highlight=notify and highlight,
                   sound=sound if notify else None, rule_id=rule_id)


async def fetch_ruleset(homeserver: str, access_token: str) -> dict[str, Any]:
    """The user's push rules as the homeserver serves them to their clients."""
    async with aiohttp.ClientSession() as session, session.get(
        f"{homeserver}/_matrix/client/v3/pushrules/",
        headers={"Authorization": f"Bearer {access_token}"},
    ) as response:
        response.raise_for_status()
        rules: dict[str, Any] = await response.json()
        return rules
