"""Rendering: officer text can neither inject HTML nor ping a room, and stays under size."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison.commands.errors import CommandError
from liaison.commands.render import (
    Code,
    Mention,
    Relayed,
    Strong,
    escape_html,
    mention_pill,
    neutralise,
    notice_content,
    render_command_error,
    render_notice,
)

WJ = "\u2060"


@pytest.mark.parametrize(
    ("officer_text", "html"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ('<a href="javascript:alert(1)">click</a>',
         "&lt;a href=&quot;javascript:alert(1)&quot;&gt;click&lt;/a&gt;"),
        ('<a href="https://matrix.to/#/@x:y">Boss</a>',
         "&lt;a href=&quot;https://matrix.to/#/@x:y&quot;&gt;Boss&lt;/a&gt;"),
        ("[x](http://evil)", "[x](http://evil)"),
        ("**bold** _it_ `code`", "**bold** _it_ `code`"),
        ("Tom & Jerry's", "Tom &amp; Jerry&#x27;s"),
        ("line one\nline two", "line one<br>line two"),
        ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;"),
    ],
)
def test_relayed_text_is_escaped_and_never_markdown(officer_text: str, html: str) -> None:
    notice = render_notice(Relayed(officer_text))
    assert notice.html == html
    assert notice.text == officer_text
    assert notice.mentions == ()


@pytest.mark.parametrize(
    ("officer_text", "shown"),
    [
        ("@room the truck is here", f"@{WJ}room the truck is here"),
        ("cc @ROOM and @Room", f"cc @{WJ}ROOM and @{WJ}Room"),
        ("mail ops@roomservice.example", f"mail ops@{WJ}roomservice.example"),
        (f"@{WJ}room", f"@{WJ}room"),
    ],
)
def test_at_room_is_broken_in_body_and_html(officer_text: str, shown: str) -> None:
    notice = render_notice(Relayed(officer_text))
    assert (notice.text, notice.html) == (shown, shown)
    content = notice_content(notice.text, notice.html)
    assert "@room" not in content["body"].lower()
    assert content["m.mentions"] == {"user_ids": []}


def test_bot_text_with_echoed_input_is_neutralised_too() -> None:
    notice = render_notice("@room is not a post id", Code("<b>"), Strong("@room"))
    assert notice.text == f"@{WJ}room is not a post id\n<b>\n@{WJ}room"
    assert notice.html == (f"@{WJ}room is not a post id<br><code>&lt;b&gt;</code><br>"
                           f"<strong>@{WJ}room</strong>")


def test_neutralise_drops_controls_overrides_and_surrogates_but_keeps_arabic_marks() -> None:
    assert neutralise("a\x00b\x1bc\r\nd\u202eevil\u202c\u2066x\u2069\ud800") == "abc\ndevilx"
    assert neutralise("\u200fعربي\u200e ok\tz") == "\u200fعربي\u200e ok\tz"


def test_mentions_are_explicit_pills_with_escaped_display_text() -> None:
    notice = render_notice(["Reminder for ", Mention("@duty.officer:example.org",
                                                     '<b>Duty</b> "@room"')])
    assert notice.mentions == ("@duty.officer:example.org",)
    assert notice.text == f'Reminder for <b>Duty</b> "@{WJ}room"'
    assert notice.html == (
        'Reminder for <a href="https://matrix.to/#/@duty.officer:example.org">'
        f"&lt;b&gt;Duty&lt;/b&gt; &quot;@{WJ}room&quot;</a>"
    )


def test_mention_pill_percent_encodes_odd_localparts() -> None:
    assert mention_pill("@a/b+c:example.org") == (
        '<a href="https://matrix.to/#/@a%2Fb%2Bc:example.org">@a/b+c:example.org</a>')
    with pytest.raises(ValueError):
        Mention('@x:y"><script>')
    with pytest.raises(ValueError):
        mention_pill("not-a-user")


def test_notice_content_shape() -> None:
    content = notice_content(
        "hi", "<b>hi</b>", mentions=["@a:example.org", "@a:example.org", "@b:example.org"],
        extra={"m.relates_to": {"m.in_reply_to": {"event_id": "$e"}},
               "org.liaison.case": {"ref": "KZ-0042"}},
    )
    assert content == {
        "msgtype": "m.notice",
        "body": "hi",
        "format": "org.matrix.custom.html",
        "formatted_body": "<b>hi</b>",
        "m.mentions": {"user_ids": ["@a:example.org", "@b:example.org"]},
        "m.relates_to": {"m.in_reply_to": {"event_id": "$e"}},
        "org.liaison.case": {"ref": "KZ-0042"},
    }


@pytest.mark.parametrize("key", ["m.mentions", "body", "msgtype", "formatted_body", "format"])
def test_notice_content_extra_cannot_replace_the_safe_keys(key: str) -> None:
    with pytest.raises(ValueError, match=f"extra may not set {key}"):
        notice_content("x", "x", extra={key: {"room": True}})


def test_notice_content_refuses_bad_user_ids() -> None:
    with pytest.raises(ValueError):
        notice_content("x", "x", mentions=["@room"])


def test_relayed_text_can_be_cut_at_its_own_limit() -> None:
    notice = render_notice(["Text: ", Relayed("abcdefghij", max_chars=4)], "end")
    assert notice.text == "Text: abcd [truncated]\nend"
    assert notice.html == "Text: abcd [truncated]<br>end"
    assert notice.truncated


def test_whole_notice_is_cut_to_the_byte_budget_with_a_marker() -> None:
    notice = render_notice("head", Relayed("<" * 1000), "tail", max_bytes=200)
    assert notice.truncated
    assert notice.text.startswith("head\n<<<")
    assert notice.text.endswith("< [truncated]")
    assert notice.html.endswith("&lt; [truncated]")
    assert "tail" not in notice.text
    assert len(json.dumps(notice.text)) - 2 + len(json.dumps(notice.html)) - 2 <= 200
    assert notice.text.count("<") == notice.html.count("&lt;")  # the same prefix in both


def test_untruncated_notice_is_not_marked() -> None:
    notice = render_notice("a", ["b ", Code("c")])
    assert (notice.text, notice.html, notice.truncated) == ("a\nb c", "a<br>b <code>c</code>",
                                                            False)


@given(st.text(max_size=3000), st.integers(min_value=60, max_value=5000))
def test_any_text_fits_the_budget_and_stays_escaped(value: str, budget: int) -> None:
    notice = render_notice("Case KZ-0042:", Relayed(value), max_bytes=budget)
    size = len(json.dumps(notice.text)) - 2 + len(json.dumps(notice.html)) - 2
    assert size <= budget
    assert "<" not in notice.html.replace("<br>", "")
    assert "@room" not in notice.text.lower()
    notice.text.encode("utf-8")  # no lone surrogates


def test_command_error_renders_message_suggestions_and_usage() -> None:
    error = CommandError("<x> is not a post id.", usage="!alert PRIORITY [to:TARGETS]",
                         suggestions=("UZ-TERMEZ", "TJ-PANJ"))
    notice = render_command_error(error)
    assert notice.text == ("<x> is not a post id.\nDid you mean: UZ-TERMEZ, TJ-PANJ?\n"
                           "Usage: !alert PRIORITY [to:TARGETS]")
    assert notice.html == ("&lt;x&gt; is not a post id.<br>Did you mean: UZ-TERMEZ, TJ-PANJ?<br>"
                           "Usage: <code>!alert PRIORITY [to:TARGETS]</code>")


def test_escape_html_escapes_quotes_for_attributes() -> None:
    assert escape_html("\"'<>&") == "&quot;&#x27;&lt;&gt;&amp;"
