"""Events the router refuses to act on before anything is stored or looked up."""

from __future__ import annotations

import json
import sqlite3

import pytest

from liaison.bot.event_transaction import valid_unicode


def test_ordinary_events_in_any_script_are_valid() -> None:
    source = {"type": "m.room.message", "content": {
        "body": "!alert urgent\nМашина КамАЗ \u202e01A\u202c تنبيه 👍🏽 \u200b", "m.mentions": {}}}
    assert valid_unicode(source)


@pytest.mark.parametrize("where", ["body", "relation", "key"])
def test_a_lone_surrogate_anywhere_makes_the_event_invalid(where: str) -> None:
    # What the bot's JSON parser makes of the escape a hostile client put in its ciphertext.
    lone = json.loads('"$\\ud800:localhost"')
    content: dict[str, object] = {"body": "Answered"}
    if where == "body":
        content["body"] = "!ack " + lone
    elif where == "relation":
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": lone}}
    else:
        content[lone] = 1
    assert not valid_unicode({"content": content})
    # ...which is why: SQLite cannot take it, so any lookup with it would raise.
    with pytest.raises(UnicodeEncodeError):
        sqlite3.connect(":memory:").execute("SELECT ?", (lone,))
