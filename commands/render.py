"""Safe notices: plain text and HTML built from the same parts, escaped by construction.

A notice is a list of lines; a line is a list of spans. Every piece of text, the
bot's own or an officer's, is *neutralised* (control and bidi-override characters
removed, `@room` broken with a WORD JOINER so legacy clients do not ping the room)
and HTML-escaped; nothing is ever passed through Markdown. Mentions are explicit
`Mention` spans and are the only user ids that end up in `m.mentions`.

A notice is rendered in one language. An Arabic one is right to left: its HTML is
wrapped in `<div dir="rtl">`, and in both bodies every run of Latin letters and
digits the bot writes (references, post ids, plates, user ids, times) sits in a
left-to-right isolate (U+2066 … U+2069), and each line of relayed officer text in a
first-strong isolate (U+2068 … U+2069), so `KZ-0042` and `01A123BC` never come out
jumbled. Isolates are added after neutralising, so officer text cannot open its own.

The whole notice is kept under a byte budget measured the way the event will be
sent (JSON with ASCII escapes, before Megolm encryption and base64 grow it by a
third), and cut with a visible "[truncated]" marker when it would not fit.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from liaison.commands.errors import CommandError
from liaison.commands.model import MXID_RE
from liaison.commands.texts import is_rtl
from liaison.commands.texts import text as message

MAX_NOTICE_BYTES = 40_000
"""Budget for body + formatted_body as JSON; a Matrix event may be 65,536 bytes after
encryption, and Megolm's base64 adds a third to the plaintext."""

_CONTROL_RE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_ROOM_MENTION_RE = re.compile(r"@(?=room)", re.IGNORECASE)
WORD_JOINER = "\u2060"
LRI, FSI, PDI = "\u2066", "\u2068", "\u2069"
_LATIN_TOKEN = r"[!@#+]?[A-Za-z0-9](?:[A-Za-z0-9._:/+#@=-]*[A-Za-z0-9])?"
_LATIN_RUN_RE = re.compile(rf"{_LATIN_TOKEN}(?:,? {_LATIN_TOKEN})*")
"""Latin words and numbers, with the single spaces or commas between them, as one run:
`!ack KZ-0042`, `UZ-TERMEZ, TJ-PANJ`, `2026-05-01 15:30 UTC+04:30`."""
RTL_OPEN, RTL_CLOSE = '<div dir="rtl">', "</div>"
_RESERVED_KEYS = frozenset({"msgtype", "body", "format", "formatted_body", "m.mentions"})


@dataclass(frozen=True)
class Notice:
    """A rendered `m.notice`: plain body, HTML body, and the users it mentions."""

    text: str
    html: str
    mentions: tuple[str, ...] = ()
    truncated: bool = False


@dataclass(frozen=True)
class Code:
    """Monospaced text: usage lines, post ids, case references."""

    text: str


@dataclass(frozen=True)
class Strong:
    text: str


@dataclass(frozen=True)
class Mention:
    """A pill for one user; the only way a user id gets into `m.mentions`."""

    user_id: str
    display: str | None = None

    def __post_init__(self) -> None:
        if not MXID_RE.match(self.user_id):
            raise ValueError(f"{self.user_id!r} is not a Matrix user id")


@dataclass(frozen=True)
class Relayed:
    """Text an officer wrote, carried to another room; optionally cut at `max_chars`."""

    text: str
    max_chars: int | None = None


Span = str | Code | Strong | Mention | Relayed
Line = Span | Sequence[Span]


def escape_html(text: str) -> str:
    """Escape `& < > " '` so text can sit in HTML content or an attribute."""
    return html.escape(text, quote=True)


def neutralise(text: str) -> str:
    """Make text safe to show: unify line breaks, drop control and bidi-override
    characters (and lone surrogates, which cannot be encoded), break `@room`."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n")
    text = _CONTROL_RE.sub("", text)
    return _ROOM_MENTION_RE.sub("@" + WORD_JOINER, text)


def mention_pill(user_id: str, display: str | None = None) -> str:
    """An HTML pill linking to the user on matrix.to, with escaped display text."""
    if not MXID_RE.match(user_id):
        raise ValueError(f"{user_id!r} is not a Matrix user id")
    href = "https://matrix.to/#/" + quote(user_id, safe="@:")
    label = escape_html(neutralise(display or user_id))
    return f'<a href="{escape_html(href)}">{label}</a>'


def isolate_latin(text: str) -> str:
    """Each run of Latin letters and digits in a left-to-right isolate (for RTL text)."""
    return _LATIN_RUN_RE.sub(lambda match: LRI + match.group(0) + PDI, text)


def render_notice(*lines: Line, max_bytes: int = MAX_NOTICE_BYTES,
                  language: str = "en") -> Notice:
    """Render lines of spans into a Notice whose body and HTML say the same thing, in
    `language`'s direction (see the module docstring for right-to-left)."""
    rtl = is_rtl(language)
    marker = " " + message("render.truncated", language)
    budget = max_bytes - 2 * _json_len(marker)
    if rtl:
        budget -= _json_len(RTL_OPEN + RTL_CLOSE)
    texts: list[str] = []
    htmls: list[str] = []
    mentions: list[str] = []
    truncated = False
    for index, line in enumerate(lines):
        spans: Sequence[Span] = [line] if isinstance(line, Span) else line
        if index:
            budget -= _json_len("\n") + _json_len("<br>")
            texts.append("\n")
            htmls.append("<br>")
        for span in spans:
            body, markup, cut = _render_span(span, rtl, language)
            cost = _json_len(body) + _json_len(markup)
            if cost > budget:
                body, markup = _fit(span, budget, rtl)
                texts.append(body + marker)
                htmls.append(markup + escape_html(marker))
                return Notice("".join(texts), _direction("".join(htmls), rtl),
                              tuple(mentions), True)
            budget -= cost
            texts.append(body)
            htmls.append(markup)
            truncated = truncated or cut
            if isinstance(span, Mention) and span.user_id not in mentions:
                mentions.append(span.user_id)
    return Notice("".join(texts), _direction("".join(htmls), rtl), tuple(mentions), truncated)


def _direction(markup: str, rtl: bool) -> str:
    return RTL_OPEN + markup + RTL_CLOSE if rtl else markup


def notice_content(
    text: str,
    html: str,
    *,
    mentions: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
    msgtype: str = "m.notice",
) -> dict[str, Any]:
    """The content of an `m.notice` (or, for a message that must ring, an `m.text`: see
    `commands.notify`) with HTML and an explicit `m.mentions`.

    `m.mentions` lists exactly `mentions` and never sets `room`; `@room` in either
    body is broken as a last line of defence. `extra` adds keys such as
    `m.relates_to` or `org.liaison.case`, and may not replace the ones set here.
    """
    users = list(dict.fromkeys(mentions))
    for user in users:
        if not MXID_RE.match(user):
            raise ValueError(f"{user!r} is not a Matrix user id")
    if msgtype not in ("m.notice", "m.text"):
        raise ValueError(f"a bot message is m.notice or m.text, not {msgtype!r}")
    content: dict[str, Any] = {
        "msgtype": msgtype,
        "body": _ROOM_MENTION_RE.sub("@" + WORD_JOINER, text),
        "format": "org.matrix.custom.html",
        "formatted_body": _ROOM_MENTION_RE.sub("@" + WORD_JOINER, html),
        "m.mentions": {"user_ids": users},
    }
    if extra:
        clash = sorted(_RESERVED_KEYS & set(extra))
        if clash:
            raise ValueError(f"extra may not set {', '.join(clash)}")
        content.update(extra)
    return content


def render_command_error(error: CommandError, language: str = "en") -> Notice:
    """What the officer reads when a command is refused: the problem, near matches, usage."""
    lines: list[Line] = [error.message_in(language)]
    if error.suggestions:
        lines.append(message("error.suggestions", language, suggestions=", ".join(
            error.suggestions)))
    usage = error.usage_in(language)
    if usage:
        lines.append([message("error.usage", language) + " ", Code(usage)])
    return render_notice(*lines, language=language)


def _render_span(span: Span, rtl: bool = False, language: str = "en") -> tuple[str, str, bool]:
    """(body, html, cut) for one span; `cut` when a Relayed span hit its own limit."""
    if isinstance(span, Mention):
        display = neutralise(span.display or span.user_id)
        if not rtl:
            return display, mention_pill(span.user_id, span.display), False
        pill = mention_pill(span.user_id, span.display)
        opening = pill.index(">") + 1
        return (LRI + display + PDI,
                pill[:opening] + LRI + pill[opening:-len("</a>")] + PDI + "</a>", False)
    if isinstance(span, Relayed):
        clean = neutralise(span.text)
        if span.max_chars is not None and len(clean) > span.max_chars:
            clean = (clean[: span.max_chars].rstrip() + " "
                     + message("render.truncated", language))
            body, markup = _textual(span, _directed(span, clean, rtl))
            return body, markup, True
        body, markup = _textual(span, _directed(span, clean, rtl))
        return body, markup, False
    body, markup = _textual(span, _directed(span, neutralise(_raw(span)), rtl))
    return body, markup, False


def _directed(span: Span, clean: str, rtl: bool) -> str:
    """For a right-to-left notice: Latin runs isolated; each line of relayed text in a
    first-strong isolate, so a Russian or English line keeps its own direction."""
    if not rtl or not clean:
        return clean
    if isinstance(span, Relayed):
        return "\n".join(FSI + isolate_latin(line) + PDI if line else line
                         for line in clean.split("\n"))
    return isolate_latin(clean)


def _textual(span: Span, clean: str) -> tuple[str, str]:
    escaped = escape_html(clean).replace("\n", "<br>")
    if isinstance(span, Code):
        return clean, f"<code>{escaped}</code>"
    if isinstance(span, Strong):
        return clean, f"<strong>{escaped}</strong>"
    return clean, escaped


def _raw(span: str | Code | Strong) -> str:
    return span if isinstance(span, str) else span.text


def _fit(span: Span, budget: int, rtl: bool = False) -> tuple[str, str]:
    """The longest prefix of a textual span that fits the budget; a pill is dropped whole."""
    if isinstance(span, Mention) or budget <= 0:
        return "", ""
    clean = neutralise(span if isinstance(span, str) else span.text)
    low, high = 0, len(clean)
    while low < high:
        middle = (low + high + 1) // 2
        body, markup = _textual(span, _directed(span, clean[:middle], rtl))
        if _json_len(body) + _json_len(markup) <= budget:
            low = middle
        else:
            high = middle - 1
    return _textual(span, _directed(span, clean[:low], rtl))


def _json_len(value: str) -> int:
    return len(json.dumps(value)) - 2
