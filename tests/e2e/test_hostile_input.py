"""Officers paste anything: markup, look-alike letters, huge texts, forged metadata, floods.

Each test attacks a running bot through real officers' encrypted clients and asserts
what the officers read (decrypted) and what the bot's database holds.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote
from uuid import uuid4

import pytest

from devkit.botprocess import BotProcess
from devkit.officer import Officer, OfficerError, SeenMessage
from liaison.bot.rawapi import request_json
from liaison.commands.case_render import CASE_KEY
from liaison.commands.flood import FloodGate, Rate
from tests.e2e.conftest import BotFactory, OfficerFactory, post_rooms
from tests.e2e.test_case_flow import db_rows, edit, relayed, told
from tests.e2e.test_cases import Posts, post, posts_for, replies_to

BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
ROOM_MENTION = re.compile("@room", re.IGNORECASE)


class Markup(HTMLParser):
    """The tags and attributes a client would render from a formatted_body."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def live_markup(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every tag other than the plain ones the bot itself writes, and any attribute."""
    parser = Markup()
    parser.feed(html)
    return [(tag, attrs) for tag, attrs in parser.tags
            if tag not in ("strong", "code", "br") or attrs]


def assert_inert(message: SeenMessage) -> None:
    """Nothing in the message can run, link, ping the room or mention anyone."""
    html = str(message.content.get("formatted_body", ""))
    body = message.body or ""
    assert live_markup(html) == [], html
    assert not ROOM_MENTION.search(body) and not ROOM_MENTION.search(html), body
    assert not BIDI_CONTROLS.search(body) and not BIDI_CONTROLS.search(html), repr(body)
    assert message.content["m.mentions"] == {"user_ids": []}, message.content


def case_notices(posts: Posts, officer: Officer, room_id: str) -> list[dict[str, Any]]:
    """The `org.liaison.case` keys of everything the bot said in a room."""
    return [m.content[CASE_KEY] for m in officer.messages(room_id, sender=posts.bot.user_id)
            if isinstance(m.content.get(CASE_KEY), dict)]


# --- markup and mentions ----------------------------------------------------------------

HOSTILE = (
    "<script>alert('x')</script> <a href=\"javascript:alert(1)\">open the file</a> "
    "<img src=x onerror=alert(2)>\n"
    "Call {victim}: <a href=\"https://matrix.to/#/{victim}\">{victim}</a> @room @ROOM\n"
    "Details: [the file](http://evil.example/x) and **bold** <b>bold</b>"
)


async def test_relayed_markup_arrives_as_visible_text_and_mentions_nobody(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    posts = await posts_for(officer_factory, bot_factory)
    kz, uz = posts.kz, posts.uz
    hostile = HOSTILE.format(victim=uz.user_id)

    answer = await posts.ask(kz, posts.kz_room,
                             "!alert urgent to:UZ-TERMEZ\n"
                             "route: <a href=\"javascript:go()\">Termez</a> @room\n" + hostile)
    assert (answer.body or "").startswith("KZ-0001: Urgent alert sent to:"), answer.body
    assert_inert(answer)

    case = await relayed(posts, uz, posts.uz_room, "KZ-0001")
    assert_inert(case)
    body, html = case.body or "", str(case.content["formatted_body"])
    for visible in ("<script>alert('x')</script>", "<a href=\"javascript:alert(1)\">",
                    "<img src=x onerror=alert(2)>", "[the file](http://evil.example/x)",
                    f"<a href=\"https://matrix.to/#/{uz.user_id}\">", "**bold** <b>bold</b>",
                    "route: <a href=\"javascript:go()\">Termez</a>"):
        assert visible in body, (visible, body)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html, html
    assert "@\u2060room @\u2060ROOM" in body  # shown, but broken so no client pings the room

    # What the officer typed is kept as typed: the record is the officer's text.
    (stored,) = db_rows(posts, "SELECT text, fields FROM cases")
    assert stored[0] == hostile and "javascript:go()" in stored[1]

    # A reply carries only the plain body: the formatted_body an officer's client sent
    # (here with a script and a pill to the origin's officer) never travels.
    await uz.send_raw(posts.uz_room, "m.room.message", {
        "msgtype": "m.text", "body": "Seen <img src=x onerror=alert(3)> @room",
        "format": "org.matrix.custom.html",
        "formatted_body": f"<script>steal()</script><a href=\"https://matrix.to/#/{kz.user_id}\">"
                          f"{kz.user_id}</a>",
        "m.relates_to": {"rel_type": "m.thread", "event_id": case.event_id,
                         "is_falling_back": True, "m.in_reply_to": {"event_id": case.event_id}},
    })
    reply = await told(posts, kz, posts.kz_room, "KZ-0001", "reply")
    assert_inert(reply)
    assert "Seen <img src=x onerror=alert(3)> @\u2060room" in (reply.body or ""), reply.body
    assert "steal" not in str(reply.content)


# --- Unicode tricks ----------------------------------------------------------------------


async def test_lookalike_and_invisible_characters_never_reach_a_post_not_meant(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    posts = await posts_for(officer_factory, bot_factory)
    kz, uz, tj = posts.kz, posts.uz, posts.tj

    # Cyrillic Т and Е in UZ-TERMEZ, Cyrillic А in TJ-PANJ: named, refused, nothing sent.
    for target, named in (("UZ-\u0422\u0415RMEZ", "U+0422 CYRILLIC CAPITAL LETTER TE"),
                          ("TJ-P\u0410NJ", "U+0410 CYRILLIC CAPITAL LETTER A")):
        refused = await posts.ask(kz, posts.kz_room, f"!alert urgent to:{target}\nLook out")
        assert named in (refused.body or ""), refused.body
        assert "write it in Latin letters and digits only" in (refused.body or "")
        assert "Did you mean: " + target.translate(str.maketrans("\u0422\u0415\u0410", "TEA")) \
            in (refused.body or "")
    # A right-to-left override makes "ZEMRET-ZU" look like UZ-TERMEZ: read as typed, refused.
    reversed_id = await posts.ask(kz, posts.kz_room, "!alert urgent to:\u202eZEMRET-ZU\nLook out")
    assert (reversed_id.body or "").startswith("Nothing was sent."), reversed_id.body
    assert "zemret-zu: not a post id" in (reversed_id.body or ""), reversed_id.body
    assert_inert(reversed_id)

    # Zero-width characters are invisible, so the post the officer saw is the one meant;
    # bidi overrides in the text are dropped, the zero-width space stays (inert).
    await posts.ask(kz, posts.kz_room,
                    "!alert urgent to:UZ-TER\u200bMEZ\nPlate \u202e01A123BC\u202c, "
                    "driver \u2067Rustam\u2069 zero\u200bwidth")
    case = await relayed(posts, uz, posts.uz_room, "KZ-0001")
    assert_inert(case)
    assert "Plate 01A123BC, driver Rustam zero\u200bwidth" in (case.body or ""), case.body

    # A look-alike reference acknowledges nothing; a reversed one is not a reference.
    for typed, expected in (("\u041aZ-0001", "U+041A CYRILLIC CAPITAL LETTER KA"),
                            ("\u202e1000-ZK", "1000-ZK is not a case reference")):
        refused = await posts.ask(uz, posts.uz_room, f"!ack {typed}")
        assert expected in (refused.body or ""), refused.body
        assert_inert(refused)
    assert db_rows(posts, "SELECT state FROM deliveries") == [("routed",)]
    # Arabic-Indic digits are digits: this is the reference the officer meant.
    acked = await posts.ask(uz, posts.uz_room, "!ack KZ-\u0660\u0660\u0660\u0661")
    assert (acked.body or "").startswith("Acknowledged KZ-0001"), acked.body

    await posts.ask(tj, posts.tj_room, "!ping")  # TJ's room is up to date
    assert case_notices(posts, tj, posts.tj_room) == []
    assert [key["ref"] for key in case_notices(posts, uz, posts.uz_room)] == ["KZ-0001"]
    assert db_rows(posts, "SELECT ref FROM cases") == [("KZ-0001",)]
    assert db_rows(posts, "SELECT post, state FROM deliveries") == [("UZ-TERMEZ", "acknowledged")]


# --- size -------------------------------------------------------------------------------


async def test_oversized_alerts_are_refused_long_replies_cut_visibly_and_the_bot_keeps_up(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    posts = await posts_for(officer_factory, bot_factory)
    kz, uz = posts.kz, posts.uz

    # 60 KB cannot even reach the bot: encrypted, it is over Matrix's 64 KiB event limit.
    with pytest.raises(OfficerError, match="M_TOO_LARGE"):
        await kz.send_text(posts.kz_room, "!alert urgent to:UZ-TERMEZ\n" + "A" * 60_000)
    # The largest alert that fits is refused, with the numbers, and not echoed back.
    huge = await posts.ask(kz, posts.kz_room, "!alert urgent to:UZ-TERMEZ\n" + "x" * 45_000)
    assert re.search(r"The message is 45,?020 characters long; the limit is 8,?000\.",
                     huge.body or ""), huge.body
    assert len(huge.body or "") < 1000
    for length, refusal in (
        (10_000, r"The message is 10,?034 characters long"),
        (5_000, r"The line vehicle: is 5,?000 characters long; the limit is 1,?000\."),
    ):
        field = await posts.ask(kz, posts.kz_room,
                                "!alert urgent to:UZ-TERMEZ\nvehicle: " + "K" * length + "\nLook")
        assert re.search(refusal, field.body or ""), field.body
        assert len(field.body or "") < 1000

    # A 10,000-character reply is carried cut, and says so.
    await posts.ask(kz, posts.kz_room, "!alert urgent to:UZ-TERMEZ\nLook out")
    case = await relayed(posts, uz, posts.uz_room, "KZ-0001")
    await uz.send_text(posts.uz_room, "y" * 10_000, thread_root=case.event_id)
    reply = await told(posts, kz, posts.kz_room, "KZ-0001", "reply")
    assert (reply.body or "").split("\n")[-1] == "y" * 4000 + " [truncated]", \
        (reply.body or "")[-200:]

    started = time.monotonic()
    pong = await posts.ask(kz, posts.kz_room, "!ping")
    assert "pong" in (pong.body or "") and time.monotonic() - started < 10
    assert db_rows(posts, "SELECT ref FROM cases") == [("KZ-0001",)]


# --- forged metadata --------------------------------------------------------------------


async def test_forged_case_keys_relations_and_reactions_change_no_case(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    posts = await posts_for(officer_factory, bot_factory)
    kz, uz, tj = posts.kz, posts.uz, posts.tj
    alert_id = await kz.send_text(posts.kz_room, "!alert urgent to:UZ-TERMEZ,TJ-PANJ\nLook out")
    uz_case = await relayed(posts, uz, posts.uz_room, "KZ-0001")
    await relayed(posts, tj, posts.tj_room, "KZ-0001")
    deliveries = db_rows(posts, "SELECT post, state FROM deliveries ORDER BY post")
    timeline = db_rows(posts, "SELECT kind, post FROM timeline ORDER BY id")

    # UZ forges a relayed case and the bot's acknowledgement key, then works the forgery.
    forged_key = {"ref": "KZ-0001", "kind": "alert", "origin": "KZ-ZHIBEK"}
    forged = await uz.send_text(posts.uz_room, "TLP:GREEN Urgent alert KZ-0001", notice=True,
                                extra_content={CASE_KEY: forged_key})
    await uz.send_text(posts.uz_room, "Answered", reply_to=forged,
                       extra_content={CASE_KEY: {**forged_key, "about": "reply"}})
    await uz.react(posts.uz_room, forged, "✅")
    await kz.send_text(posts.kz_room, "closing", extra_content={
        CASE_KEY: {**forged_key, "about": "closed"}})
    # TJ replies to and reacts on UZ's copy of the case from its own room, and replies to
    # an event that does not exist; it cannot act in UZ's room at all. The homeserver
    # refuses a reaction to another room's event, so TJ's client hides it in the ciphertext.
    await tj.send_text(posts.tj_room, "Confirmed", reply_to=uz_case.event_id)
    with pytest.raises(OfficerError, match="Relations must be in the same room"):
        await tj.react(posts.tj_room, uz_case.event_id, "👍")
    await send_encrypted(tj, posts.tj_room, "m.reaction", {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": uz_case.event_id, "key": "👍"}})
    await tj.send_text(posts.tj_room, "Confirmed", reply_to="$doesnotexist:localhost")
    not_in_room = await posts.ask(tj, posts.tj_room, "!ack")
    assert "Which case?" in (not_in_room.body or ""), not_in_room.body
    assert await send_from_outside(tj, posts.uz_room, "m.reaction", {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": uz_case.event_id, "key": "👍"}}) == "M_FORBIDDEN"
    # An edit of KZ's alert sent from another room, by someone else (hidden from the
    # homeserver, which refuses a relation to another room's event too).
    await send_encrypted(tj, posts.tj_room, "m.room.message", {
        "msgtype": "m.text", "body": "* !alert flash to:UZ-TERMEZ\nForged",
        "m.new_content": {"msgtype": "m.text", "body": "!alert flash to:UZ-TERMEZ\nForged"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": alert_id},
    })
    # A relation to an event id that is not valid Unicode (a lone surrogate) is nothing
    # anyone typed; it must not stop the bot.
    await send_encrypted(uz, posts.uz_room, "m.room.message", {
        "msgtype": "m.text", "body": "Answered",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$\ud800:localhost"}}})
    broken = await send_encrypted(kz, posts.kz_room, "m.room.message", {
        "msgtype": "m.text", "body": "!alert urgent to:UZ-TERMEZ\nPlate \ud83d"})
    refused = await kz.wait_for(lambda m: replies_to(m, broken), room_id=posts.kz_room,
                                sender=posts.bot.user_id)
    assert "broken characters" in (refused.body or ""), refused.body

    for officer, room_id in ((kz, posts.kz_room), (uz, posts.uz_room), (tj, posts.tj_room)):
        pong = await posts.ask(officer, room_id, "!ping")  # everything before has been seen
        assert "pong" in (pong.body or ""), pong.body
    assert posts.bot.running
    assert [key.get("about") for key in case_notices(posts, kz, posts.kz_room)] == []
    assert db_rows(posts, "SELECT post, state FROM deliveries ORDER BY post") == deliveries
    assert db_rows(posts, "SELECT kind, post FROM timeline ORDER BY id") == timeline
    assert db_rows(posts, "SELECT state FROM cases") == [("open",)]


async def send_encrypted(officer: Officer, room_id: str, event_type: str,
                         content: dict[str, Any]) -> str:
    """Any event encrypted (nio sends reactions in the clear), with its relation only inside
    the ciphertext, where the homeserver cannot check it: what a hostile client can send."""
    client = officer.client
    assert client.olm is not None
    if client.olm.should_share_group_session(room_id):
        await client.share_group_session(room_id, ignore_unverified_devices=True)
    _, encrypted = client.encrypt(room_id, event_type, content)
    encrypted.pop("m.relates_to", None)
    path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.encrypted/{uuid4()}"
    result = await request_json(client, "PUT", path, encrypted)
    assert result.ok, result
    return str(result.body["event_id"])


async def send_from_outside(officer: Officer, room_id: str, event_type: str,
                            content: dict[str, Any]) -> str | None:
    """Try to send into a room the officer is not in; the homeserver's error code."""
    path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/{event_type}/{uuid4()}"
    result = await request_json(officer.client, "PUT", path, content)
    return result.errcode


# --- authority --------------------------------------------------------------------------


async def test_strangers_foreign_rooms_plaintext_rooms_and_other_posts_are_refused(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz, uz, tj, tm, stranger = [await officer_factory(name)
                                for name in ("kz", "uz", "tj", "tm", "stranger")]
    rooms = {officer: await officer.create_room("post") for officer in (kz, uz, tj)}
    plain = await tm.create_room("post", encrypted=False)
    tm_post = post("TM-PLAIN", plain, "Asia/Ashgabat", [])
    # Nobody on this homeserver may invite the bot except the four listed officers.
    bot = await bot_factory(config={
        "access": {"allowed_inviters": {"users": [o.user_id for o in (kz, uz, tj, tm)],
                                        "servers": ["partner.example"]}},
        "posts": [post("KZ-ZHIBEK", rooms[kz], "Asia/Almaty", ["UZ-TERMEZ"]),
                  post("UZ-TERMEZ", rooms[uz], "Asia/Tashkent", ["KZ-ZHIBEK"]),
                  post("TJ-PANJ", rooms[tj], "Asia/Dushanbe", []), tm_post],
    })
    for officer, room_id in (*rooms.items(), (tm, plain)):
        await officer.invite(room_id, bot.user_id)
        await officer.wait_until_joined(room_id, bot.user_id)
    posts = Posts(bot, kz, uz, tj, rooms[kz], rooms[uz], rooms[tj])

    # An invite from a server that is not listed is declined; a listed user's is taken.
    strange_room = await stranger.create_room("lounge", invite=[bot.user_id])
    lounge = await kz.create_room("lounge", invite=[bot.user_id])
    await kz.wait_until_joined(lounge, bot.user_id)
    await stranger_invite_declined(stranger, strange_room, bot)

    # A room that is no post's room cannot send or see cases: it is told why once, and
    # then gets silence (checked at the end, once later commands have been answered).
    refused_in_lounge = await posts.ask(kz, lounge, "!alert urgent to:UZ-TERMEZ\nLook out")
    assert (refused_in_lounge.body or "").startswith("I do not serve this room"), \
        refused_in_lounge.body
    await kz.send_text(lounge, "!status KZ-0001")

    # A post whose room is not encrypted gets nothing; the refusal is on the case's record.
    sent = await posts.ask(kz, posts.kz_room, "!alert urgent to:UZ-TERMEZ,TM-PLAIN\nLook out")
    assert "TM-PLAIN" in (sent.body or "") and "not end-to-end encrypted" in (sent.body or ""), \
        sent.body
    await relayed(posts, uz, posts.uz_room, "KZ-0001")
    await tm.send_text(plain, "!ping")

    # Posts the case did not go to cannot see it; a target cannot close it.
    for command in ("!status KZ-0001", "!ack KZ-0001", "!close KZ-0001"):
        refused = await posts.ask(tj, posts.tj_room, command)
        assert (refused.body or "").startswith("There is no case KZ-0001 that your post can see")
    closed = await posts.ask(uz, posts.uz_room, "!close KZ-0001 Nothing found")
    assert (closed.body or "").startswith(
        "Only Zhibek (KZ-ZHIBEK), which sent KZ-0001, or its supervisors can close it."), \
        closed.body
    assert await send_from_outside(tj, posts.uz_room, "m.room.message", {
        "msgtype": "m.text", "body": "!ack KZ-0001"}) == "M_FORBIDDEN"

    said = [m for m in tm.messages(plain, sender=bot.user_id) if m.type == "m.room.message"]
    assert len(said) == 1 and "not end-to-end encrypted" in (said[0].body or ""), said
    in_lounge = [m.event_id for m in kz.messages(lounge, sender=bot.user_id) if m.body]
    assert in_lounge == [refused_in_lounge.event_id], in_lounge
    assert db_rows(posts, "SELECT ref, state FROM cases") == [("KZ-0001", "open")]
    assert db_rows(posts, "SELECT post, state FROM deliveries") == [("UZ-TERMEZ", "routed")]
    assert db_rows(posts, "SELECT kind, post, json_extract(detail, '$.reason') FROM timeline "
                          "WHERE kind = 'refused'") == [("refused", "TM-PLAIN", "not_encrypted")]


async def stranger_invite_declined(stranger: Officer, room_id: str, bot: BotProcess) -> None:
    """Until the bot has left (declined) the stranger's invite."""
    for _ in range(200):
        room = stranger.client.rooms.get(room_id)
        member = room.users.get(bot.user_id) if room is not None else None
        invited = room is not None and bot.user_id in room.invited_users
        if member is None and not invited and room is not None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the bot never declined the stranger's invite")


# --- flood ------------------------------------------------------------------------------


async def test_a_flood_of_commands_gets_one_refusal_and_commands_work_after_the_window(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    # A token bucket of 10 per window admits about 10 + 10 * (time the flood took) /
    # window of the 30 commands: at least 10 are refused only while the 30 sends take
    # under one window. 6 s held while each send took under 0.2 s, which a loaded
    # machine (parallel test workers, other suites: 0.7 s seen) does not promise; a
    # minute does, and one token is back after a tenth of it.
    window_s = 60.0
    kz, uz = await officer_factory("kz"), await officer_factory("uz")
    room_id = await kz.create_room("post", invite=[uz.user_id])
    bot = await bot_factory(config={"limits": {"commands_per_user": f"10/{window_s:g}s",
                                               "commands_per_room": "100/1m"},
                                    **post_rooms(room_id)})
    await kz.invite(room_id, bot.user_id)
    await uz.join(room_id)
    await kz.wait_until_joined(room_id, bot.user_id)
    await kz.wait_until_joined(room_id, uz.user_id)

    flood = [await kz.send_text(room_id, f"!ping {number}") for number in range(30)]
    other = await uz.send_text(room_id, "!ping")  # another officer is not held up
    pong = await uz.wait_for(lambda m: m.sender == bot.user_id and replies_to(m, other),
                             room_id=room_id)
    assert "pong" in (pong.body or ""), pong.body
    await wait_until_claimed(bot, flood)

    answers = {event_id: [m for m in kz.messages(room_id, sender=bot.user_id)
                          if replies_to(m, event_id)] for event_id in flood}
    ran = [event_id for event_id in flood
           if any("pong" in (m.body or "") for m in answers[event_id])]
    refused = [event_id for event_id in flood if event_id not in ran]
    # Exactly the commands the limit admits, by the times the homeserver stamped on them.
    stamped = {m.event_id: m.ts for m in kz.messages(room_id, sender=kz.user_id)}
    limit = FloodGate(per_user=Rate.parse(f"10/{window_s:g}s"), per_room=None)
    assert ran == [event_id for event_id in flood
                   if limit.admit(kz.user_id, room_id, stamped[event_id]).admitted]
    assert flood[:10] == ran[:10] and len(refused) >= 10, len(ran)
    notices = [m for event_id in refused for m in answers[event_id]]
    assert len(notices) == 1 and replies_to(notices[0], refused[0]), notices
    assert (notices[0].body or "").startswith("Too many commands at once"), notices[0].body
    assert notices[0].content["m.mentions"] == {"user_ids": []}

    await asyncio.sleep(window_s / 10 * 1.5)  # one token is back, however the flood ended
    after = await kz.send_text(room_id, "!ping")
    pong = await kz.wait_for(lambda m: m.sender == bot.user_id and replies_to(m, after),
                             room_id=room_id)
    assert "pong" in (pong.body or ""), pong.body
    rows = outbox_kinds(bot)
    assert rows.count("flood-refusal") == 1 and rows.count("reply") == len(ran) + 2


async def test_a_flood_of_replies_on_a_case_is_not_carried_past_the_limit(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    posts = await posts_for(officer_factory, bot_factory, {
        "limits": {"case_messages_per_user": "3/1m", "case_messages_per_room": "100/1m"}})
    await posts.kz.send_text(posts.kz_room, "!alert urgent to:UZ-TERMEZ,TJ-PANJ\n"
                                            "white Kamaz, plate 01A123BC")
    uz_case = await relayed(posts, posts.uz, posts.uz_room, "KZ-0001")
    tj_case = await relayed(posts, posts.tj, posts.tj_room, "KZ-0001")

    flood = [await posts.uz.send_text(posts.uz_room, f"spam {number}",
                                      thread_root=uz_case.event_id) for number in range(8)]
    other = await posts.tj.send_text(posts.tj_room, "TJ has it too",
                                     thread_root=tj_case.event_id)  # not held up
    await told(posts, posts.kz, posts.kz_room, "KZ-0001", "reply", containing="TJ has it too")
    await wait_until_claimed(posts.bot, [*flood, other])
    await posts.kz.send_text(posts.kz_room, "!ping")  # everything queued has gone out after
    await posts.ask(posts.uz, posts.uz_room, "!ping")

    carried = [m.body for m in posts.kz.messages(posts.kz_room, sender=posts.bot.user_id)
               if "spam" in (m.body or "")]
    assert [body.rsplit(" ", 1)[-1] for body in carried if body] == ["0", "1", "2"], carried
    notices = [m for m in posts.uz.messages(posts.uz_room, sender=posts.bot.user_id)
               if (m.body or "").startswith("Too many messages on cases at once")]
    assert len(notices) == 1 and replies_to(notices[0], flood[3]), [m.body for m in notices]
    assert "at most 3 in 1m from one person" in (notices[0].body or ""), notices[0].body
    assert outbox_kinds(posts.bot).count("flood-refusal") == 1


async def test_an_alert_edited_in_a_loop_reaches_the_other_posts_only_up_to_the_limit(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    """Each edit of an alert goes to every target as an update: edits count against the
    same limit as replies and attachments."""
    posts = await posts_for(officer_factory, bot_factory, {
        "limits": {"case_messages_per_user": "3/1m", "case_messages_per_room": "100/1m"}})
    alert = "!alert urgent to:UZ-TERMEZ\nvehicle: white Kamaz, plate 01A123BC"
    alert_id = await posts.kz.send_text(posts.kz_room, alert)
    await relayed(posts, posts.uz, posts.uz_room, "KZ-0001")

    edits = [await edit(posts.kz, posts.kz_room, alert_id, alert + f"\ncolour: shade {number}")
             for number in range(6)]
    await wait_until_claimed(posts.bot, edits)
    await posts.ask(posts.kz, posts.kz_room, "!ping")
    await posts.ask(posts.uz, posts.uz_room, "!ping")  # everything queued has gone out

    updates = [m.body or "" for m in posts.uz.messages(posts.uz_room, sender=posts.bot.user_id)
               if "shade" in (m.body or "")]
    assert [re.findall(r"shade (\d)", body)[-1] for body in updates] == ["0", "1", "2"], updates
    notices = [m for m in posts.kz.messages(posts.kz_room, sender=posts.bot.user_id)
               if (m.body or "").startswith("Too many messages on cases at once")]
    assert len(notices) == 1 and replies_to(notices[0], alert_id), [m.body for m in notices]
    revisions = db_rows(posts, "SELECT COUNT(*) FROM timeline WHERE kind = 'edited'")
    assert revisions == [(3,)], revisions


async def wait_until_claimed(bot: BotProcess, event_ids: list[str]) -> None:
    """Until the bot has claimed (processed, exactly once) every one of `event_ids`."""
    for _ in range(300):
        claimed = bot_rows(bot, "SELECT event_id FROM processed_events")
        if set(event_ids) <= {row[0] for row in claimed}:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the bot did not process every command")


def outbox_kinds(bot: BotProcess) -> list[str]:
    return [row[0] for row in bot_rows(bot, "SELECT kind FROM outbox ORDER BY id")]


def bot_rows(bot: BotProcess, query: str) -> list[tuple[Any, ...]]:
    uri = f"{(bot.data_dir / 'liaison.db').as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        rows = conn.execute(query).fetchall()
    conn.close()
    return [tuple(row) for row in rows]

