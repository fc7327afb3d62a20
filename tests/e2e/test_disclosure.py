"""What the bot writes into a room is what everyone in that room may see: a supervisor
of the origin post asks about a TLP:AMBER case from rooms whose readers may not see
it, then from their own direct room with the bot; and a room the bot serves nobody in."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import Any

from devkit.botprocess import BotProcess
from devkit.officer import Officer, SeenMessage
from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_audit import liaison
from tests.e2e.test_cases import replies_to

NOT_VISIBLE = "There is no case KZ-0001 that your post can see."


def post(post_id: str, room: str, **extra: Any) -> dict[str, Any]:
    return {"id": post_id, "names": {"en": post_id.split("-")[1].title()},
            "country": post_id[:2], "agency": extra.pop("agency", "border"), "room": room,
            "timezone": "Asia/Almaty", **extra}


async def ask(bot: BotProcess, officer: Officer, room_id: str, body: str) -> SeenMessage:
    event_id = await officer.send_text(room_id, body)
    return await officer.wait_for(lambda m: replies_to(m, event_id), room_id=room_id,
                                  sender=bot.user_id)


def audit_rows(bot: BotProcess, action: str) -> list[tuple[Any, ...]]:
    uri = f"{(bot.data_dir / 'liaison.db').as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        rows = conn.execute("SELECT actor, room_id, detail FROM audit_log WHERE action = ?"
                            " ORDER BY seq", (action,)).fetchall()
    conn.close()
    return [tuple(row) for row in rows]


async def until_audited(bot: BotProcess, action: str, count: int) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + 30
    while len(rows := audit_rows(bot, action)) < count:
        assert time.monotonic() < deadline, f"{action}: {rows}"
        await _sleep()
    return rows


async def _sleep() -> None:
    await asyncio.sleep(0.2)


async def test_a_supervisor_sees_an_amber_case_only_where_every_reader_may(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz, uz, tj, centre, boss = [await officer_factory(name) for name in
                                ("kz", "uz", "tj", "caricc", "kzboss")]
    rooms = {officer: await officer.create_room("post") for officer in (kz, uz, tj, centre)}
    bot = await bot_factory(config={"posts": [
        post("KZ-ZHIBEK", rooms[kz], supervisors=[boss.user_id]),
        post("UZ-B", rooms[uz]),
        post("TJ-C", rooms[tj]),
        post("KZ-CARICC", rooms[centre], agency="regional-centre"),
    ]})
    for officer, room_id in rooms.items():
        await officer.invite(room_id, bot.user_id)
        await officer.wait_until_joined(room_id, bot.user_id)
    for officer in (uz, centre):  # the origin's supervisor is also a member of both rooms
        await officer.invite(rooms[officer], boss.user_id)
        await boss.join(rooms[officer])

    sent = await ask(bot, kz, rooms[kz], "!alert urgent to:TJ-C tlp:amber\nWatch the bridge")
    assert (sent.body or "").startswith("KZ-0001"), sent.body
    await ask(bot, kz, rooms[kz], "!update KZ-0001 The source is Rustam, the driver's cousin")

    for room_id in (rooms[uz], rooms[centre]):
        status = await ask(bot, boss, room_id, "!status KZ-0001")
        assert status.body == NOT_VISIBLE, status.body
        pending = await ask(bot, boss, room_id, "!pending")
        assert "KZ-0001" not in (pending.body or ""), pending.body
        escalations = await ask(bot, boss, room_id, "!escalations")
        assert "KZ-0001" not in (escalations.body or "")
        report = await ask(bot, boss, room_id, "!report")
        assert "Zhibek" not in (report.body or ""), report.body
    # What every member of those rooms could decrypt: nothing of the case.
    for officer in (uz, centre):
        for message in officer.messages(rooms[officer], sender=bot.user_id):
            assert "Rustam" not in (message.body or "") and "KZ-0001" not in (
                message.body or "").replace(NOT_VISIBLE, ""), message.body

    direct = await boss.create_room("Liaison")
    await boss.invite(direct, bot.user_id)
    await boss.wait_until_joined(direct, bot.user_id)
    mine = await ask(bot, boss, direct, "!status KZ-0001")
    assert "Rustam, the driver's cousin" in (mine.body or ""), mine.body
    report = await ask(bot, boss, direct, "!report")
    assert "Zhibek (KZ-ZHIBEK)" in (report.body or ""), report.body

    refused = await until_audited(bot, "command-refused", 2)
    assert [(actor, room, json.loads(detail)["reason"]) for actor, room, detail in refused
            if json.loads(detail).get("command") == "status"] == [
        (boss.user_id, rooms[uz], "case_not_visible"),
        (boss.user_id, rooms[centre], "case_not_visible")]
    code, out, err = await liaison(bot, "export", "--audit")
    assert code == 0, err
    shown = [entry for entry in json.loads(out)["audit"] if entry["action"] == "disclosed"]
    assert [(e["actor"], e["room_id"], e["detail"]["shown"], e["detail"]["level"])
            for e in shown] == [(boss.user_id, direct, "status", "full")], shown


async def test_a_room_of_nobody_gets_one_explanation_then_silence(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz, stranger, admin = [await officer_factory(name) for name in ("kz", "who", "admin")]
    kz_room = await kz.create_room("post")
    admins_room = await admin.create_room("admins")
    bot = await bot_factory(config={
        "posts": [post("KZ-ZHIBEK", kz_room)],
        "access": {"allowed_inviters": {"users": [], "servers": [kz.user_id.split(":", 1)[1]]},
                   "admins": [admin.user_id], "admins_room": admins_room}})
    await kz.invite(kz_room, bot.user_id)
    await kz.wait_until_joined(kz_room, bot.user_id)
    await admin.invite(admins_room, bot.user_id)
    await admin.wait_until_joined(admins_room, bot.user_id)
    nowhere = await stranger.create_room("somewhere")
    await stranger.invite(nowhere, bot.user_id)
    await stranger.wait_until_joined(nowhere, bot.user_id)

    first = await ask(bot, stranger, nowhere, "!ping")
    assert (first.body or "").startswith("I do not serve this room"), first.body
    for body in ("!ping", "!help", "!alert flash\nx"):
        await stranger.send_text(nowhere, body)
    await until_audited(bot, "command-refused", 4)
    said = [m.body for m in stranger.messages(nowhere, sender=bot.user_id) if m.body]
    assert said == [first.body], said
    told = await admin.wait_for(lambda m: nowhere in (m.body or ""), room_id=admins_room,
                                sender=bot.user_id)
    assert stranger.user_id in (told.body or "")

    code, out, err = await liaison(bot, "rooms")
    assert code == 0, err
    lines = dict(line.split("\t", 1) for line in out.splitlines())
    assert lines[kz_room].startswith("post KZ-ZHIBEK")
    assert lines[admins_room].startswith("admins' room")
    assert lines[nowhere].startswith("unknown")
    code, out, err = await liaison(bot, "rooms", "leave", nowhere)
    assert code == 0, err
    deadline = time.monotonic() + 30
    while bot.user_id in (stranger.client.rooms[nowhere].users or {}):
        assert time.monotonic() < deadline, "the bot never left"
        await _sleep()
