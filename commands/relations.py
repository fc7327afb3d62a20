"""How a Matrix event points at another: replies, threads, edits, reactions.

Pure functions over event content. They say which events an incoming message
relates to; whether any of those is a case is for the database to decide (the
shell looks the ids up), never for keys in the content itself.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_VARIATION_SELECTORS = frozenset({"\ufe0e", "\ufe0f"})
_SKIN_TONES = frozenset(chr(code) for code in range(0x1F3FB, 0x1F400))

ACK_REACTIONS = frozenset({
    "\u2705",      # ✅ white heavy check mark
    "\U0001f44d",  # 👍 thumbs up
    "\u2714",      # ✔ heavy check mark
    "\u2611",      # ☑ ballot box with check
    "\u2713",      # ✓ check mark
    # Shortcodes, as some bridged chat apps send them.
    ":+1:", ":thumbsup:", ":white_check_mark:", ":heavy_check_mark:",
    ":ballot_box_with_check:",
})
"""Reaction keys that acknowledge a case, after `normalise_reaction_key`."""


def normalise_reaction_key(key: str) -> str:
    """The key without variation selectors or skin-tone modifiers, NFC, outer spaces
    stripped and case-folded (for shortcodes): `👍🏽` and `✔️` become `👍` and `✔`."""
    kept = "".join(ch for ch in key if ch not in _VARIATION_SELECTORS and ch not in _SKIN_TONES)
    return unicodedata.normalize("NFC", kept).strip().casefold()


def acknowledges(key: str) -> bool:
    """Whether a reaction with this key acknowledges the message it reacts to."""
    return normalise_reaction_key(key) in ACK_REACTIONS


@dataclass(frozen=True)
class Relation:
    """What a message relates to, read from its `m.relates_to`."""

    thread_root: str | None = None
    """The thread's root event (`rel_type: m.thread`)."""
    reply_to: str | None = None
    """The event replied to (`m.in_reply_to`), also inside a thread."""
    replaces: str | None = None
    """The event an edit replaces (`rel_type: m.replace`)."""

    @property
    def candidates(self) -> tuple[str, ...]:
        """The events that may place the message in a case's conversation, the thread
        root first (a thread's fallback reply points at whatever came last in it)."""
        found = [event for event in (self.thread_root, self.reply_to) if event]
        return tuple(dict.fromkeys(found))


def relation_of(content: Mapping[str, Any]) -> Relation:
    """Read a message's relation; anything malformed counts as no relation."""
    relates = content.get("m.relates_to")
    if not isinstance(relates, Mapping):
        return Relation()
    rel_type = relates.get("rel_type")
    target = _event_id(relates.get("event_id"))
    in_reply = relates.get("m.in_reply_to")
    reply_to = _event_id(in_reply.get("event_id")) if isinstance(in_reply, Mapping) else None
    if rel_type == "m.replace":
        return Relation(replaces=target)
    if rel_type == "m.thread":
        return Relation(thread_root=target, reply_to=reply_to)
    return Relation(reply_to=reply_to)


def _event_id(value: object) -> str | None:
    return value if isinstance(value, str) and value.startswith("$") else None


def edited_body(content: Mapping[str, Any]) -> str | None:
    """The new body of an edit (`m.new_content.body`), or None when there is none."""
    new_content = content.get("m.new_content")
    if not isinstance(new_content, Mapping):
        return None
    body = new_content.get("body")
    return body if isinstance(body, str) else None


def without_reply_fallback(lines: Sequence[str]) -> list[str]:
    """Drop a reply fallback: leading `>` lines followed by a blank line."""
    if not lines or not lines[0].startswith(">"):
        return list(lines)
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    if index < len(lines) and not lines[index].strip():
        return list(lines[index + 1 :])
    return list(lines)


def reply_text(body: str) -> str:
    """What an officer wrote in a reply: the body without the quoted fallback, stripped."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(without_reply_fallback(lines)).strip()
