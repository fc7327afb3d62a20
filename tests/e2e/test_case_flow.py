"""A case worked without commands, end to end: reactions, thread replies both ways, an
edit, a deletion, and exactly-once after a crash — three officers in three post rooms
on a real Synapse, every message read as the officers decrypted it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from nio import RoomRedactResponse

from devkit.officer import Officer, SeenMessage
from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_cases import ALERT, Posts, about_case, post, replies_to

REQUEST = "!request urgent to:UZ-TERMEZ,TJ-PANJ due:4h\nWho owns plate 01A123BC?"


def in_thread(message: SeenMessage, root: str) -> bool:
    relation = message.relates_to
    return relation.get("rel_type") == "m.thread" and relation.get("event_id") == root


async def posts_with_a_visitor(officer_factory: OfficerFactory,
                               bot_factory: BotFactory) -> tuple[Posts, Officer]:
    """KZ, UZ and TJ in their posts' rooms with the bot; UZ-TERMEZ lists its officers, and
    a visitor who is in UZ's room but not one of them."""
    kz, uz, tj, visitor = [await officer_factory(name) for name in ("kz", "uz", "tj", "visitor")]
    rooms = {officer: await officer.create_room("post") for officer in (kz, uz, tj)}
    uz_post = post("UZ-TERMEZ", rooms[uz], "Asia/Tashkent", ["KZ-ZHIBEK", "TJ-PANJ"])
    uz_post["officers"] = [uz.user_id]
    bot = await bot_factory(config={"posts": [
        post("KZ-ZHIBEK", rooms[kz], "Asia/Almaty", ["UZ-TERMEZ"]),
        uz_post,
        post("TJ-PANJ", rooms[tj], "Asia/Dushanbe", ["UZ-TERMEZ"]),
    ]})
    for officer, room_id in rooms.items():
        await officer.invite(room_id, bot.user_id)
        await officer.wait_until_joined(room_id, bot.user_id)
    await uz.invite(rooms[uz], visitor.user_id)
    await visitor.join(rooms[uz])
    await uz.wait_until_joined(rooms[uz], visitor.user_id)
    return Posts(bot, kz, uz, tj, rooms[kz], rooms[uz], rooms[tj]), visitor


def from_bot(posts: Posts, officer: Officer, room_id: str,
             predicate: Callable[[SeenMessage], bool]) -> list[SeenMessage]:
    return [m for m in officer.messages(room_id, sender=posts.bot.user_id) if predicate(m)]


def notice_about(ref: str, about: str) -> Callable[[SeenMessage], bool]:
    return lambda message: about_case(message, ref, about)


async def relayed(posts: Posts, officer: Officer, room_id: str, ref: str) -> SeenMessage:
    """The relayed case in a target room, decrypted by that post's officer."""
    message = await officer.wait_for(lambda m: about_case(m, ref), room_id=room_id,
                                     sender=posts.bot.user_id)
    assert message.encrypted, message.describe()
    return message


async def told(posts: Posts, officer: Officer, room_id: str, ref: str, about: str,
               *, containing: str = "") -> SeenMessage:
    message = await officer.wait_for(
        lambda m: about_case(m, ref, about) and containing in (m.body or ""),
        room_id=room_id, sender=posts.bot.user_id)
    assert message.encrypted, message.describe()
    return message


async def edit(officer: Officer, room_id: str, original: str, body: str) -> str:
    """An edit the way Element sends one."""
    return await officer.send_raw(room_id, "m.room.message", {
        "msgtype": "m.text", "body": "* " + body,
        "m.new_content": {"msgtype": "m.text", "body": body},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    })


async def test_a_case_is_worked_by_reactions_and_thread_replies_and_its_edit_reaches_both(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    posts, visitor = await posts_with_a_visitor(officer_factory, bot_factory)
    kz, uz, tj = posts.kz, posts.uz, posts.tj

    alert_id = await kz.send_text(posts.kz_room, ALERT)
    uz_case = await relayed(posts, uz, posts.uz_room, "KZ-0001")
    tj_case = await relayed(posts, tj, posts.tj_room, "KZ-0001")

    # Reactions that acknowledge nothing: a member of UZ's room who is not one of its
    # officers; TJ on its own message, and with an emoji that is not an acknowledgement.
    await visitor.react(posts.uz_room, uz_case.event_id, "👍")
    chat = await tj.send_text(posts.tj_room, "Shift change at 18:00")
    await tj.react(posts.tj_room, chat, "👍")
    await tj.react(posts.tj_room, tj_case.event_id, "😀")
    for officer, room_id in ((uz, posts.uz_room), (tj, posts.tj_room)):
        status = await posts.ask(officer, room_id, "!status KZ-0001")  # after the reactions
        assert "not acknowledged" in (status.body or ""), status.body
    refused = await posts.ask(visitor, posts.uz_room, "!ack KZ-0001")
    assert (refused.body or "").startswith("You are not listed as an officer of UZ-TERMEZ")

    # UZ acknowledges with a thumbs up (twice): KZ is told once, in the case's thread.
    await uz.react(posts.uz_room, uz_case.event_id, "👍🏽")
    ack = await told(posts, kz, posts.kz_room, "KZ-0001", "ack")
    assert "Termez (UZ-TERMEZ) acknowledged KZ-0001" in (ack.body or ""), ack.body
    assert uz.user_id in (ack.body or "") and in_thread(ack, alert_id)
    await uz.react(posts.uz_room, uz_case.event_id, "✅")
    await posts.ask(uz, posts.uz_room, "!ping")  # the second reaction has been handled
    await posts.ask(kz, posts.kz_room, "!ping")  # and anything it queued for KZ delivered
    assert len(from_bot(posts, kz, posts.kz_room, lambda m: about_case(m, "KZ-0001", "ack"))) == 1

    # TJ replies in the relayed case's thread: KZ reads it in the case's thread.
    await tj.send_text(posts.tj_room, "Seen the truck at 18:40, heading north",
                       thread_root=tj_case.event_id)
    reply = await told(posts, kz, posts.kz_room, "KZ-0001", "reply")
    assert (reply.body or "").startswith(
        f"TLP:AMBER Reply from Panj (TJ-PANJ) on KZ-0001 ({tj.user_id}):"), reply.body
    assert "Seen the truck at 18:40, heading north" in (reply.body or "")
    assert in_thread(reply, alert_id)

    # KZ answers in its own thread: both targets read it in their threads.
    await kz.send_text(posts.kz_room, "Stop it at the bridge", thread_root=alert_id)
    for officer, room_id, case in ((uz, posts.uz_room, uz_case), (tj, posts.tj_room, tj_case)):
        carried = await told(posts, officer, room_id, "KZ-0001", "reply")
        assert "Reply from Zhibek (KZ-ZHIBEK) on KZ-0001" in (carried.body or "")
        assert (carried.body or "").endswith("Stop it at the bridge")
        assert in_thread(carried, case.event_id)
    assert from_bot(posts, uz, posts.uz_room, lambda m: "Seen the truck" in (m.body or "")) == []

    # KZ edits the alert: the targets get what changed, and the case is not routed again.
    await edit(kz, posts.kz_room, alert_id, ALERT.replace("01A123BC", "01A999BC"))
    edited = await kz.wait_for(lambda m: replies_to(m, alert_id) and "Your edit" in (m.body or ""),
                               room_id=posts.kz_room, sender=posts.bot.user_id)
    assert "went to: UZ-TERMEZ, TJ-PANJ" in (edited.body or ""), edited.body
    for officer, room_id, case in ((uz, posts.uz_room, uz_case), (tj, posts.tj_room, tj_case)):
        update = await told(posts, officer, room_id, "KZ-0001", "edit")
        assert "vehicle: white Kamaz, plate 01A999BC" in (update.body or ""), update.body
        assert in_thread(update, case.event_id)
        assert len(from_bot(posts, officer, room_id, lambda m: about_case(m, "KZ-0001"))) == 1

    # !close reaches both; the timeline has it all.
    await posts.ask(kz, posts.kz_room, "!close KZ-0001 Seized 40 kg at the bridge")
    for officer, room_id in ((uz, posts.uz_room), (tj, posts.tj_room)):
        closed = await told(posts, officer, room_id, "KZ-0001", "closed")
        assert "Seized 40 kg at the bridge" in (closed.body or "")
    status = await posts.ask(kz, posts.kz_room, "!status KZ-0001")
    body = status.body or ""
    assert "Termez (UZ-TERMEZ): acknowledged" in body and uz.user_id in body, body
    assert "Panj (TJ-PANJ): acknowledged" in body  # by the reply
    assert f"reply from Panj (TJ-PANJ) ({tj.user_id})" in body
    assert f"reply from Zhibek (KZ-ZHIBEK) ({kz.user_id})" in body
    assert "edited by Zhibek (KZ-ZHIBEK)" in body


async def test_a_request_is_answered_only_by_a_reply_and_a_deleted_alert_is_withdrawn(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    posts, _ = await posts_with_a_visitor(officer_factory, bot_factory)
    kz, uz, tj = posts.kz, posts.uz, posts.tj

    await posts.ask(kz, posts.kz_room, REQUEST)
    uz_case = await relayed(posts, uz, posts.uz_room, "KZ-0001")
    tj_case = await relayed(posts, tj, posts.tj_room, "KZ-0001")
    await uz.react(posts.uz_room, uz_case.event_id, "✅")
    await told(posts, kz, posts.kz_room, "KZ-0001", "ack", containing="UZ-TERMEZ")
    in_case_thread = await tj.send_text(posts.tj_room, "!ack", thread_root=tj_case.event_id)
    acked = await tj.wait_for(lambda m: replies_to(m, in_case_thread), room_id=posts.tj_room,
                              sender=posts.bot.user_id)
    assert (acked.body or "").startswith("Acknowledged KZ-0001"), acked.body
    assert in_thread(acked, tj_case.event_id)

    status = await posts.ask(kz, posts.kz_room, "!status KZ-0001")
    assert "answered" not in (status.body or ""), status.body  # acknowledged is not answered

    await uz.send_text(posts.uz_room, "Registered to a Termez transport firm",
                       reply_to=uz_case.event_id)
    answer = await told(posts, kz, posts.kz_room, "KZ-0001", "reply")
    assert "Registered to a Termez transport firm" in (answer.body or "")
    status = await posts.ask(kz, posts.kz_room, "!status KZ-0001")
    body = status.body or ""
    assert "Termez (UZ-TERMEZ): answered" in body and uz.user_id in body, body
    assert "Panj (TJ-PANJ): acknowledged" in body
    states = db_rows(posts, "SELECT post, state FROM deliveries ORDER BY post")
    assert states == [("TJ-PANJ", "acknowledged"), ("UZ-TERMEZ", "answered")]

    # The originator deletes an alert: every target is told it is withdrawn, and it is
    # cancelled.
    alert_id = await kz.send_text(posts.kz_room, "!alert urgent to:UZ-TERMEZ,TJ-PANJ\nLook out")
    for officer, room_id in ((uz, posts.uz_room), (tj, posts.tj_room)):
        await relayed(posts, officer, room_id, "KZ-0002")
    assert isinstance(await kz.client.room_redact(posts.kz_room, alert_id), RoomRedactResponse)
    for officer, room_id in ((uz, posts.uz_room), (tj, posts.tj_room)):
        withdrawn = await told(posts, officer, room_id, "KZ-0002", "withdrawn")
        assert "the originator deleted the message" in (withdrawn.body or "")
    await told(posts, kz, posts.kz_room, "KZ-0002", "withdrawn")
    assert db_rows(posts, "SELECT state FROM cases WHERE ref = 'KZ-0002'") == [("cancelled",)]


async def test_events_replayed_after_a_crash_act_once(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    posts, _ = await posts_with_a_visitor(officer_factory, bot_factory)
    kz, uz, tj, bot = posts.kz, posts.uz, posts.tj, posts.bot

    alert_id = await kz.send_text(posts.kz_room, ALERT)
    await kz.wait_for(lambda m: replies_to(m, alert_id), room_id=posts.kz_room,
                      sender=bot.user_id)
    await crash_and_replay(posts)
    uz_case = await relayed(posts, uz, posts.uz_room, "KZ-0001")
    tj_case = await relayed(posts, tj, posts.tj_room, "KZ-0001")

    await uz.react(posts.uz_room, uz_case.event_id, "👍")
    await tj.send_text(posts.tj_room, "On it", thread_root=tj_case.event_id)
    await told(posts, kz, posts.kz_room, "KZ-0001", "ack")
    await told(posts, kz, posts.kz_room, "KZ-0001", "reply")
    await crash_and_replay(posts)

    for officer, room_id in ((kz, posts.kz_room), (uz, posts.uz_room), (tj, posts.tj_room)):
        await posts.ask(officer, room_id, "!ping")  # everything replayed has been handled
    assert db_rows(posts, "SELECT ref FROM cases") == [("KZ-0001",)]
    for officer, room_id in ((uz, posts.uz_room), (tj, posts.tj_room)):
        cases_read = from_bot(posts, officer, room_id, lambda m: about_case(m, "KZ-0001"))
        assert len(cases_read) == 1, [m.describe() for m in cases_read]
    answers = from_bot(posts, kz, posts.kz_room,
                       lambda m: replies_to(m, alert_id) and not in_thread(m, alert_id))
    assert len(answers) == 1, [m.describe() for m in answers]
    for about in ("ack", "reply"):
        assert len(from_bot(posts, kz, posts.kz_room, notice_about("KZ-0001", about))) == 1
    replayed = [r for r in bot.log_records()
                if r.get("msg") == "event already processed" and r.get("event_id") == alert_id]
    assert len(replayed) == 2, "sync did not hand the command to the bot again"


async def crash_and_replay(posts: Posts) -> None:
    """SIGKILL the bot, make its next sync start from scratch (so every event it handled is
    delivered again, as after a crash before it saved the sync token), start it."""
    bot = posts.bot
    await bot.kill()
    with sqlite3.connect(bot.data_dir / "liaison.db") as conn:
        conn.execute("DELETE FROM kv WHERE key = 'sync_token'")
    conn.close()
    await bot.start()


def db_rows(posts: Posts, query: str) -> list[tuple[Any, ...]]:
    uri = f"{(posts.bot.data_dir / 'liaison.db').as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        rows = conn.execute(query).fetchall()
    conn.close()
    return [tuple(row) for row in rows]
