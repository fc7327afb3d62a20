"""Reports as pictures, end to end: `!report` answers with its table and then an encrypted
chart a supervisor's client downloads and decrypts to a PNG; a weekly report arrives on its
own at its time, once, across a restart."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from PIL import Image

from devkit.officer import Officer, SeenMessage
from liaison.commands.report_chart import PNG_SIGNATURE, REPORT_KEY
from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_chasing import ANSWER_TIMEOUT_S, Chase, flash_policy, two_posts
from tests.e2e.test_foundation import raw_event, replies_to

ZONE = "Asia/Tashkent"
SLOT_AFTER_S = 20
"""The weekly report falls due this long after the bot is told about it (a start takes a
few seconds)."""


async def posts_with_supervisors_room(officer_factory: OfficerFactory,
                                      bot_factory: BotFactory) -> tuple[Chase, str]:
    """KZ and UZ posts and UZ's supervisors' room with the bot in it; KZ has sent one
    alert, which UZ acknowledged."""
    rooms: dict[str, str] = {}

    async def make_room(boss: Officer) -> dict[str, str]:
        rooms["supervisors"] = await boss.create_room("supervisors")
        return {"supervisors_room": rooms["supervisors"]}

    chase = await two_posts(officer_factory, bot_factory, flash_policy(), rooms_for=make_room)
    room = rooms["supervisors"]
    await chase.uz_boss.invite(room, chase.bot.user_id)
    await chase.uz_boss.wait_until_joined(room, chase.bot.user_id)
    await chase.ask(chase.kz, chase.kz_room, "!alert flash to:UZ-TERMEZ\nWhite Kamaz")
    acked = await chase.ask(chase.uz, chase.uz_room, "!ack KZ-0001")
    assert "KZ-0001" in (acked.body or ""), acked.body
    return chase, room


async def assert_encrypted_png(officer: Officer, image: SeenMessage) -> None:
    """An m.image the officer decrypted: encrypted on the server, an encrypted attachment
    (no plain url) whose bytes decrypt to the PNG its info describes."""
    assert image.encrypted and image.msgtype == "m.image", image.describe()
    on_server = await raw_event(officer, image.room_id, image.event_id)
    assert on_server["type"] == "m.room.encrypted", on_server
    assert "url" not in image.content and "mxc://" in image.content["file"]["url"]
    png = await officer.download_attachment(image)
    assert png.startswith(PNG_SIGNATURE)
    info = image.content["info"]
    assert (info["mimetype"], info["size"]) == ("image/png", len(png))
    assert Image.open(io.BytesIO(png)).size == (info["w"], info["h"])
    assert info["w"] >= 400 and info["h"] >= 150


async def test_report_answers_with_the_table_then_an_encrypted_chart(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    chase, room = await posts_with_supervisors_room(officer_factory, bot_factory)
    boss, bot = chase.uz_boss, chase.bot

    command = await boss.send_text(room, "!report 7d")
    table = await boss.wait_for(lambda m: replies_to(m, command) and m.msgtype == "m.notice",
                                room_id=room, sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    image = await boss.wait_for(lambda m: replies_to(m, command) and m.msgtype == "m.image",
                                room_id=room, sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)

    assert (table.body or "").splitlines()[1:3] == [
        "Termez (UZ-TERMEZ)", "• Cases sent 0, received 1."], table.body
    await assert_encrypted_png(boss, image)
    assert image.body == image.content["filename"] == "report-7d.png"
    assert image.content[REPORT_KEY]["period"] == "7d"
    answers = [m.event_id for m in boss.messages(room, sender=bot.user_id)
               if replies_to(m, command)]
    assert answers == [table.event_id, image.event_id]  # the table first, then the picture


def weekly_reports_seen(officer: Officer, room_id: str, sender: str) -> list[SeenMessage]:
    return [m for m in officer.messages(room_id, sender=sender)
            if isinstance(m.content.get(REPORT_KEY), dict)]


async def test_a_weekly_report_arrives_at_its_time_and_only_once(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    chase, room = await posts_with_supervisors_room(officer_factory, bot_factory)
    boss, bot = chase.uz_boss, chase.bot

    due = datetime.now(UTC).astimezone(ZoneInfo(ZONE)) + timedelta(seconds=SLOT_AFTER_S)
    schedule: dict[str, Any] = {"room": room, "day": due.strftime("%A").lower(),
                                "at": due.strftime("%H:%M:%S"), "timezone": ZONE}
    await bot.stop()
    bot.reconfigure({"reports": {"weekly": [schedule]}})
    await bot.start()

    image = await boss.wait_for(lambda m: m.msgtype == "m.image", room_id=room,
                                sender=bot.user_id, timeout=SLOT_AFTER_S + ANSWER_TIMEOUT_S)
    [table, chart] = weekly_reports_seen(boss, room, bot.user_id)
    assert chart.event_id == image.event_id
    assert table.ts >= due.timestamp() * 1000 - 1000, "sent before it was due"
    assert table.encrypted and table.msgtype == "m.notice"
    lines = (table.body or "").splitlines()
    assert lines[0].startswith("Report for the last 7d (") and "+05:00" in lines[0], lines
    assert lines[1:3] == ["Termez (UZ-TERMEZ)", "• Cases sent 0, received 1."], lines
    assert lines[3].startswith("• Acknowledged 1 of 1: median "), lines
    assert table.content[REPORT_KEY]["late"] is False
    await assert_encrypted_png(boss, chart)

    # A restart after it went out sends nothing again.
    await bot.stop()
    await bot.start()
    await chase.ask(boss, room, "!ping")
    assert [m.event_id for m in weekly_reports_seen(boss, room, bot.user_id)] == [
        table.event_id, chart.event_id]
