"""Reports as pictures, and reports on a schedule: the chart's PNG, the render request that
stands for it in the outbox until the sender draws, encrypts and uploads it, the weekly
schedule (daylight saving, missed slots) and the weekly reports themselves, sent once
across restarts."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from nio import RoomSendResponse, UploadError, UploadResponse
from nio.crypto.attachments import decrypt_attachment
from PIL import Image

from liaison.bot.directory import Directory
from liaison.bot.media import MediaUnavailable
from liaison.bot.reports import (
    UPLOAD_ATTEMPTS,
    WEEKLY_KIND,
    ReportCharts,
    WeeklyReports,
    charts_installed,
)
from liaison.bot.sender import OutboxSender, SenderSettings
from liaison.commands.localtime import Moment
from liaison.commands.notify import OutboxKind
from liaison.commands.report import PostReport
from liaison.commands.report_chart import (
    CHART_KIND,
    PNG_SIGNATURE,
    RENDER_KEY,
    REPORT_KEY,
    ChartRequest,
    ack_time_chart,
    chart_request,
    png_size,
)
from liaison.commands.report_schedule import WeeklyReport
from liaison.commands.texts import text
from liaison.config import Config, parse_config
from liaison.handlers import default_registry
from liaison.storage import outbox
from liaison.storage.db import Database
from tests.unit.commandrun import run_command
from tests.unit.test_chaser import FixedClock
from tests.unit.test_config import VALID, line_of, problems_of

MIN = 60_000

KZ_ROOM = "!kz-zhibek:liaison.example"
UZ_ROOM = "!uz-termez:liaison.example"
SUP_ROOM = "!uz-supervisors:liaison.example"
KZ = "@aigerim:liaison.example"
UZ = "@bekzod:liaison.example"
UZ_BOSS = "@uz-boss:liaison.example"
JOINED = frozenset({KZ_ROOM, UZ_ROOM, SUP_ROOM})

# Monday 4 May 2026, 08:00 in Tashkent (UTC+5) is 03:00 UTC.
SLOT = datetime(2026, 5, 4, 3, 0, tzinfo=UTC)
WEEKLY = {"room": SUP_ROOM, "day": "monday", "at": "08:00", "timezone": "Asia/Tashkent"}


def config(weekly: list[dict[str, Any]] | None = None) -> Config:
    def post(post_id: str, room: str, **extra: Any) -> dict[str, Any]:
        return {"id": post_id, "names": {"en": post_id.split("-")[1].title()},
                "country": post_id[:2], "agency": "border", "room": room, **extra}

    return parse_config(json.dumps({
        "homeserver": {"url": "https://matrix.liaison.example"},
        "bot": {"user_id": "@liaison:liaison.example", "password": {"env": "X"},
                "pickle_key": {"env": "Y"}},
        "data_dir": "data",
        "trust": {"policy": "tofu"},
        "posts": [
            post("KZ-ZHIBEK", KZ_ROOM, neighbours=["UZ-TERMEZ"]),
            post("UZ-TERMEZ", UZ_ROOM, neighbours=["KZ-ZHIBEK"], timezone="Asia/Tashkent",
                 language="ru", supervisors=[UZ_BOSS], supervisors_room=SUP_ROOM),
        ],
        "reports": {"weekly": weekly if weekly is not None else [WEEKLY]},
    }))


def figures(post: str, *, received: int, acknowledged: int, median: int | None,
            p90: int | None) -> PostReport:
    return PostReport(post=post, sent=0, received=received, acknowledged=acknowledged,
                      ack_median_ms=median, ack_p90_ms=p90, requests=0, answered=0,
                      answer_median_ms=None, answer_p90_ms=None, overdue=0, escalations=0)


FIGURES = [
    figures("UZ-TERMEZ", received=4, acknowledged=3, median=2 * MIN, p90=6 * MIN),
    figures("KZ-ZHIBEK", received=0, acknowledged=0, median=None, p90=None),
    figures("TJ-PANJ", received=5, acknowledged=0, median=None, p90=None),
]


def png_chunks(png: bytes) -> list[bytes]:
    """The chunk types of a PNG, in order (each chunk's CRC checked)."""
    kinds, position = [], len(PNG_SIGNATURE)
    while position < len(png):
        (length,) = struct.unpack(">I", png[position:position + 4])
        kind = png[position + 4:position + 8]
        data = png[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", png[position + 8 + length:position + 12 + length])
        assert zlib.crc32(kind + data) == crc
        kinds.append(kind)
        position += 12 + length
    return kinds


# --- the picture --------------------------------------------------------------------------


def test_the_chart_is_a_png_of_the_size_it_declares_with_a_row_per_post() -> None:
    chart = ack_time_chart(FIGURES, period="7d", language="en")

    assert chart.png.startswith(PNG_SIGNATURE)
    assert png_chunks(chart.png)[-1] == b"IEND"
    image = Image.open(io.BytesIO(chart.png))
    assert image.format == "PNG" and image.size == (chart.width, chart.height)
    assert chart.width == 800
    one_post = ack_time_chart(FIGURES[:1], period="7d", language="en")
    assert one_post.width == chart.width and one_post.height < chart.height


def test_the_chart_is_deterministic_and_carries_no_timestamp_or_software_name() -> None:
    first = ack_time_chart(FIGURES, period="30d", language="ru")
    again = ack_time_chart(FIGURES, period="30d", language="ru")

    assert first.png == again.png
    assert b"tIME" not in png_chunks(first.png)
    assert b"Software" not in first.png and b"matplotlib" not in first.png.lower()


def test_the_chart_is_labelled_in_the_room_language_and_arabic_rooms_read_english() -> None:
    english = ack_time_chart(FIGURES, period="7d", language="en").png
    assert ack_time_chart(FIGURES, period="7d", language="ru").png != english
    # matplotlib cannot join Arabic letters: the words are drawn in English.
    assert ack_time_chart(FIGURES, period="7d", language="ar").png == english


@pytest.mark.parametrize("reports", [[], FIGURES[1:]], ids=["no posts", "nothing acknowledged"])
def test_a_chart_with_nothing_acknowledged_is_still_a_valid_image(
        reports: list[PostReport]) -> None:
    chart = ack_time_chart(reports, period="7d", language="en")

    assert Image.open(io.BytesIO(chart.png)).size == (chart.width, chart.height)
    assert chart.png != ack_time_chart(FIGURES, period="7d", language="en").png


def test_png_size_refuses_what_is_not_a_png() -> None:
    with pytest.raises(ValueError):
        png_size(b"GIF89a" + bytes(30))


def test_a_render_request_reads_back_from_its_outbox_content() -> None:
    request = chart_request(since_ms=1, now_ms=2, posts=["UZ-TERMEZ"], language="ru",
                            period="7d")
    stored = json.loads(json.dumps(request.content({"m.relates_to": {"x": 1}})))

    assert ChartRequest.of(stored) == request
    assert request.filename == "report-7d.png"
    assert ChartRequest.of({"body": "hello"}) is None
    assert ChartRequest.of({RENDER_KEY: {"chart": "ack_times", "posts": "UZ-TERMEZ"}}) is None


# --- the outbox: a request is replaced by what it renders to --------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "liaison.db")
    yield database
    await database.close()


async def queued_request(db: Database, now_ms: int) -> outbox.OutboxMessage:
    request = chart_request(since_ms=0, now_ms=now_ms, posts=["UZ-TERMEZ"], language="en",
                            period="7d")
    async with db.transaction() as conn:
        return await outbox.enqueue(conn, room_id=SUP_ROOM, event_type="m.room.message",
                                    content=request.content(), now_ms=now_ms, kind=CHART_KIND)


async def test_replacing_the_content_keeps_the_txn_id_and_only_while_pending(
        db: Database) -> None:
    message = await queued_request(db, 1_000)
    image = {"msgtype": "m.image", "body": "report-7d.png"}

    async with db.transaction() as conn:
        replaced = await outbox.replace_content(conn, message, image)
    async with db.read() as conn:
        stored = await outbox.get(conn, message.id)
    assert stored is not None and stored == replaced
    assert (stored.content, stored.txn_id, stored.state) == (image, message.txn_id, "pending")
    async with db.transaction() as conn:
        await outbox.mark_sent(conn, message.id, event_id="$image", now_ms=2_000)
    with pytest.raises(LookupError):
        async with db.transaction() as conn:
            await outbox.replace_content(conn, message, {"body": "other"})


@dataclass
class Room:
    encrypted: bool = True


@dataclass
class FlakyClient:
    """room_send fails with the errors given, then succeeds; records what it was given."""

    failures: list[Exception]
    rooms: dict[str, Room] = field(default_factory=lambda: {SUP_ROOM: Room()})
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def room_send(self, room_id: str, event_type: str, content: dict[str, Any], *,
                        tx_id: str, ignore_unverified_devices: bool) -> Any:
        self.sent.append((tx_id, content))
        if self.failures:
            raise self.failures.pop(0)
        return RoomSendResponse(f"$event{len(self.sent)}", room_id)


@dataclass
class CountingRenderer:
    failures: list[Exception] = field(default_factory=list)
    calls: int = 0

    async def __call__(self, message: outbox.OutboxMessage) -> dict[str, Any]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {"msgtype": "m.image", "body": "report-7d.png", "drawn": self.calls}


async def send_round(sender: OutboxSender, db: Database, now_ms: int) -> None:
    async with db.read() as conn:
        batch = await outbox.next_batch(conn, now_ms=now_ms, limit=4)
    for message in batch:
        await sender._send(message)


async def test_a_chart_rendered_before_a_failed_send_is_resent_as_is_under_the_same_txn_id(
        db: Database) -> None:
    clock = FixedClock(SLOT)
    client = FlakyClient([TimeoutError("homeserver away")])
    renderer = CountingRenderer()
    sender = OutboxSender(db, client, clock, SenderSettings(),  # type: ignore[arg-type]
                          renderer=renderer)
    message = await queued_request(db, clock.now_ms())

    await send_round(sender, db, clock.now_ms())
    async with db.read() as conn:
        waiting = await outbox.get(conn, message.id)
    assert waiting is not None and waiting.state == "pending"
    assert waiting.content == {"msgtype": "m.image", "body": "report-7d.png", "drawn": 1}

    clock.at += timedelta(minutes=1)
    await send_round(sender, db, clock.now_ms())
    async with db.read() as conn:
        sent = await outbox.get(conn, message.id)
    assert sent is not None and sent.state == "sent"
    assert renderer.calls == 1  # drawn and uploaded once; the second attempt re-sends it
    assert [txn for txn, _ in client.sent] == [message.txn_id, message.txn_id]
    assert client.sent[0][1] == client.sent[1][1] == waiting.content
    assert all(RENDER_KEY not in content for _, content in client.sent)


async def test_a_render_that_must_wait_sends_nothing_and_is_tried_again(db: Database) -> None:
    clock = FixedClock(SLOT)
    client = FlakyClient([])
    renderer = CountingRenderer([MediaUnavailable("upload failed")])
    sender = OutboxSender(db, client, clock, SenderSettings(),  # type: ignore[arg-type]
                          renderer=renderer)
    message = await queued_request(db, clock.now_ms())

    await send_round(sender, db, clock.now_ms())
    async with db.read() as conn:
        waiting = await outbox.get(conn, message.id)
    assert client.sent == []
    assert waiting is not None and waiting.state == "pending" and waiting.attempts == 1
    assert RENDER_KEY in waiting.content

    clock.at += timedelta(minutes=1)
    await send_round(sender, db, clock.now_ms())
    assert [content.get("drawn") for _, content in client.sent] == [2]


async def test_a_render_request_is_never_sent_as_it_is(db: Database) -> None:
    clock = FixedClock(SLOT)
    client = FlakyClient([])
    sender = OutboxSender(db, client, clock, SenderSettings())  # type: ignore[arg-type]
    message = await queued_request(db, clock.now_ms())

    await send_round(sender, db, clock.now_ms())
    async with db.read() as conn:
        failed = await outbox.get(conn, message.id)
    assert client.sent == [] and failed is not None and failed.state == "failed"


# --- the renderer: figures, drawing, encrypted upload -------------------------------------


@dataclass
class UploadingClient:
    """Keeps what is uploaded; `refuse` makes the media repository answer with an error."""

    refuse: bool = False
    uploads: list[tuple[bytes, str, str]] = field(default_factory=list)

    async def upload(self, data_provider: io.BytesIO, *, content_type: str, filename: str,
                     filesize: int) -> tuple[Any, None]:
        data = data_provider.read()
        assert len(data) == filesize
        self.uploads.append((data, content_type, filename))
        if self.refuse:
            return UploadError("no space", "M_TOO_LARGE"), None
        return UploadResponse(f"mxc://liaison.example/chart{len(self.uploads)}"), None


@dataclass
class Bot:
    db: Database
    config: Config
    clock: FixedClock
    events: int = 0

    async def say(self, room_id: str, sender: str, body: str) -> str:
        self.events += 1
        notice = await run_command(
            self.db, self.config, self.clock, default_registry(), room_id=room_id,
            sender=sender, body=body, event_id=f"$event{self.events}", at=self.clock.at,
            joined=JOINED)
        return notice.text

    async def queued(self, room_id: str) -> list[outbox.OutboxMessage]:
        async with self.db.read() as conn:
            rows = await conn.execute_fetchall(
                "SELECT id FROM outbox WHERE room_id = ? ORDER BY id", (room_id,))
            messages = [await outbox.get(conn, row[0]) for row in rows]
        return [message for message in messages if message is not None]


async def acknowledged_case(db: Database, conf: Config) -> Bot:
    """KZ alerts UZ at 02:10 UTC on the slot's day; UZ acknowledges two minutes later."""
    bot = Bot(db, conf, FixedClock(SLOT - timedelta(minutes=50)))
    assert (await bot.say(KZ_ROOM, KZ, "!alert flash to:UZ-TERMEZ\nWhite Kamaz")).startswith(
        "KZ-0001")
    bot.clock.at += timedelta(minutes=2)
    await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")
    return bot


async def test_the_chart_is_uploaded_encrypted_and_decrypts_to_the_png_it_describes(
        db: Database) -> None:
    conf = config()
    await acknowledged_case(db, conf)
    client = UploadingClient()
    request = chart_request(since_ms=int((SLOT - timedelta(days=7)).timestamp() * 1000),
                            now_ms=int(SLOT.timestamp() * 1000), posts=["UZ-TERMEZ"],
                            language="ru", period="7d")
    relation = {"m.in_reply_to": {"event_id": "$report"}}
    message = await queued_request(db, 0)
    message = outbox.OutboxMessage(**{**message.__dict__,
                                      "content": request.content({"m.relates_to": relation})})

    content = await ReportCharts(db, client, conf)(message)  # type: ignore[arg-type]

    [(ciphertext, mimetype, filename)] = client.uploads
    assert (mimetype, filename) == ("application/octet-stream", "report-7d.png")
    assert not ciphertext.startswith(PNG_SIGNATURE)
    assert "url" not in content and content["file"]["url"] == "mxc://liaison.example/chart1"
    file = content["file"]
    png = decrypt_attachment(ciphertext, file["key"]["k"], file["hashes"]["sha256"], file["iv"])
    assert png.startswith(PNG_SIGNATURE)
    assert (content["msgtype"], content["body"], content["filename"]) == (
        "m.image", "report-7d.png", "report-7d.png")
    assert content["info"] == {"mimetype": "image/png", "size": len(png),
                               "w": Image.open(io.BytesIO(png)).size[0],
                               "h": Image.open(io.BytesIO(png)).size[1]}
    assert content["m.relates_to"] == relation and content["m.mentions"] == {}
    # The figures read from the database: one case, acknowledged after 2 minutes.
    expected = ack_time_chart([figures("UZ-TERMEZ", received=1, acknowledged=1,
                                       median=2 * MIN, p90=2 * MIN)], period="7d", language="ru")
    assert png == expected.png


async def test_a_chart_that_cannot_be_drawn_becomes_a_notice_and_an_upload_failure_waits(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = config()
    message = await queued_request(db, 0)
    with pytest.raises(MediaUnavailable):
        await ReportCharts(db, UploadingClient(refuse=True), conf)(message)  # type: ignore[arg-type]

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no fonts")

    monkeypatch.setattr("liaison.bot.reports.ack_time_chart", broken)
    client = UploadingClient()
    content = await ReportCharts(db, client, conf)(message)  # type: ignore[arg-type]
    assert client.uploads == []
    assert content["msgtype"] == "m.notice"
    assert content["body"] == text("chart.failed", "en")


async def test_without_the_charts_extra_report_answers_with_the_table_and_one_line_saying_so(
        db: Database) -> None:
    conf = config()
    bot = await acknowledged_case(db, conf)
    answer = await run_command(
        db, conf, bot.clock, default_registry(), room_id=SUP_ROOM, sender=UZ_BOSS,
        body="!report 7d", event_id="$report", at=bot.clock.at, joined=JOINED, charts=False)
    lines = answer.text.splitlines()  # the supervisors' room reads Russian
    assert "Termez (UZ-TERMEZ)" in lines
    assert any(line.startswith("• Подтверждено 1 из 1: медиана 2") for line in lines)
    assert lines[-1] == text("chart.not_installed", "ru")
    assert [message.kind for message in await bot.queued(SUP_ROOM)] == [OutboxKind.REPLY]

    with_charts = await run_command(
        db, conf, bot.clock, default_registry(), room_id=SUP_ROOM, sender=UZ_BOSS,
        body="!report 7d", event_id="$report2", at=bot.clock.at, joined=JOINED)
    assert with_charts.text == "\n".join(lines[:-1])
    assert [message.kind for message in await bot.queued(SUP_ROOM)][1:] == [
        OutboxKind.REPLY, CHART_KIND]


async def test_a_chart_asked_for_before_matplotlib_went_away_becomes_that_line(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = config()
    message = await queued_request(db, 0)

    def not_installed(*args: Any, **kwargs: Any) -> Any:
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    monkeypatch.setattr("liaison.bot.reports.ack_time_chart", not_installed)
    client = UploadingClient()
    content = await ReportCharts(db, client, conf)(message)  # type: ignore[arg-type]
    assert client.uploads == []
    assert (content["msgtype"], content["body"]) == ("m.notice",
                                                    text("chart.not_installed", "en"))


def test_charts_are_installed_in_the_development_environment() -> None:
    assert charts_installed()  # the wheel test checks the other way: tests/e2e/test_wheel.py


async def test_a_chart_the_media_repository_keeps_refusing_becomes_a_notice_in_the_end(
        db: Database) -> None:
    """Its room's queue waits behind it, so it cannot wait for ever."""
    conf = config()
    message = await queued_request(db, 0)
    client = UploadingClient(refuse=True)
    charts = ReportCharts(db, client, conf)  # type: ignore[arg-type]
    for attempts in range(UPLOAD_ATTEMPTS - 1):
        with pytest.raises(MediaUnavailable):
            await charts(outbox.OutboxMessage(**{**message.__dict__, "attempts": attempts}))
    content = await charts(outbox.OutboxMessage(
        **{**message.__dict__, "attempts": UPLOAD_ATTEMPTS - 1}))
    assert len(client.uploads) == UPLOAD_ATTEMPTS
    assert content["msgtype"] == "m.notice"
    assert content["body"] == text("chart.failed", "en")


@dataclass
class SlowRenderer:
    """Holds every render until released, as a slow media repository would."""

    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, message: outbox.OutboxMessage) -> dict[str, Any]:
        await self.release.wait()
        return {"msgtype": "m.image", "body": "report-7d.png"}


async def test_a_slow_chart_holds_up_only_its_own_room(db: Database) -> None:
    clock = FixedClock(SLOT)
    client = FlakyClient([], rooms={SUP_ROOM: Room(), UZ_ROOM: Room()})
    renderer = SlowRenderer()
    sender = OutboxSender(db, client, clock, SenderSettings(),  # type: ignore[arg-type]
                          renderer=renderer)
    chart = await queued_request(db, clock.now_ms())
    running = asyncio.create_task(sender.run())
    try:
        await asyncio.sleep(0.2)  # the chart is in hand when a relay comes in
        async with db.transaction() as conn:
            relay = await outbox.enqueue(conn, room_id=UZ_ROOM, event_type="m.room.message",
                                         content={"msgtype": "m.text", "body": "relay"},
                                         now_ms=clock.now_ms(), kind="case-relay")
        sender.wake()
        for _ in range(100):
            if client.sent:
                break
            await asyncio.sleep(0.02)
        assert [txn for txn, _ in client.sent] == [relay.txn_id]  # not behind the chart
        renderer.release.set()
        for _ in range(200):
            if len(client.sent) == 2:
                break
            await asyncio.sleep(0.02)
        assert [txn for txn, _ in client.sent] == [relay.txn_id, chart.txn_id]
        assert client.sent[1][1] == {"msgtype": "m.image", "body": "report-7d.png"}
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


# --- the weekly schedule ------------------------------------------------------------------


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def weekly(**changes: Any) -> WeeklyReport:
    return WeeklyReport.model_validate({**WEEKLY, **changes})


def test_slots_fall_on_the_day_and_time_in_the_schedule_zone() -> None:
    schedule = weekly()
    assert schedule.slot_at_or_before(ms(SLOT)) == ms(SLOT)
    assert schedule.slot_at_or_before(ms(SLOT) - 1) == ms(SLOT - timedelta(days=7))
    assert schedule.slot_after(ms(SLOT)) == ms(SLOT + timedelta(days=7))
    assert schedule.slot_after(ms(SLOT) - 1) == ms(SLOT)
    # Monday 00:30 in Tashkent is still Sunday in UTC: the zone's day counts.
    assert weekly(at="00:30").slot_after(ms(SLOT)) == ms(datetime(2026, 5, 10, 19, 30,
                                                                  tzinfo=UTC))
    assert schedule.since_ms(ms(SLOT)) == ms(SLOT - timedelta(days=7))


def test_slots_keep_their_wall_clock_time_across_daylight_saving_changes() -> None:
    berlin = weekly(day="sunday", at="08:00", timezone="Europe/Berlin")
    # Clocks go forward on Sunday 29 March 2026: 08:00 is 07:00 UTC before, 06:00 after.
    assert berlin.slot_after(ms(datetime(2026, 3, 23, tzinfo=UTC))) == ms(
        datetime(2026, 3, 29, 6, 0, tzinfo=UTC))
    assert berlin.slot_at_or_before(ms(datetime(2026, 3, 29, 5, 59, tzinfo=UTC))) == ms(
        datetime(2026, 3, 22, 7, 0, tzinfo=UTC))
    # 02:30 does not exist that night: it comes an hour later on the wall (03:30 CEST).
    gap = weekly(day="sunday", at="02:30", timezone="Europe/Berlin")
    assert gap.slot_after(ms(datetime(2026, 3, 28, tzinfo=UTC))) == ms(
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC))
    # 02:30 happens twice on 25 October: the first one (still CEST, UTC+2).
    assert gap.slot_after(ms(datetime(2026, 10, 24, tzinfo=UTC))) == ms(
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC))
    assert gap.slot_after(ms(datetime(2026, 10, 25, 0, 30, tzinfo=UTC))) == ms(
        datetime(2026, 11, 1, 1, 30, tzinfo=UTC))


def test_a_week_across_a_daylight_saving_change_runs_wall_clock_to_wall_clock() -> None:
    schedule = weekly(timezone="Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    for monday, before in ((datetime(2026, 3, 30, 8, tzinfo=berlin),
                            datetime(2026, 3, 23, 8, tzinfo=berlin)),
                           (datetime(2026, 10, 26, 8, tzinfo=berlin),
                            datetime(2026, 10, 19, 8, tzinfo=berlin))):
        slot = schedule.slot_at_or_before(ms(monday))
        assert slot == ms(monday)
        assert schedule.since_ms(slot) == ms(before)


def test_missed_slots_are_those_strictly_between_two_instants() -> None:
    schedule = weekly()
    week = timedelta(days=7)
    assert schedule.missed_slots(after_ms=ms(SLOT), before_ms=ms(SLOT + 3 * week)) == [
        ms(SLOT + week), ms(SLOT + 2 * week)]
    assert schedule.missed_slots(after_ms=ms(SLOT), before_ms=ms(SLOT + week)) == []


def test_a_report_covers_the_listed_posts_else_those_supervised_in_its_room() -> None:
    posts = config().posts
    assert weekly().report_posts(posts) == ["UZ-TERMEZ"]
    assert weekly(room=KZ_ROOM).report_posts(posts) == ["KZ-ZHIBEK"]  # the room's own post
    assert weekly(room="!elsewhere:liaison.example").report_posts(posts) == []
    assert weekly(posts=["KZ-ZHIBEK"]).report_posts(posts) == ["KZ-ZHIBEK"]


def with_reports(section: str) -> str:
    return VALID + section


@pytest.mark.parametrize(("entry", "needle", "message"), [
    ('room: "uz-supervisors"', "uz-supervisors",
     'room must be a Matrix room id such as "!abc123:example.org"'),
    ("day: lundi", "lundi", "day must be one of monday, tuesday, wednesday, thursday, friday, "
                            "saturday, sunday"),
    ('at: "8am"', "8am", 'at must be a time of day written "HH:MM" (in quotes), like "08:00"'),
    ("at: 25:00", "25:00", 'at must be a time of day written "HH:MM" (in quotes), like "08:00"'),
    ("timezone: Asia/Tashkemt", "Tashkemt",
     "unknown IANA time zone 'Asia/Tashkemt'; write it like Asia/Almaty"),
    ("period: 400d", "400d", "period may be at most 366d"),
    ("posts: [UZ-TERMES]", "UZ-TERMES", "unknown post id 'UZ-TERMES'; did you mean UZ-TERMEZ?"),
    ("colour: blue", "colour", "unknown field 'colour'; expected one of: room, day, at, "
                               "timezone, period, posts"),
])
def test_a_bad_weekly_report_is_refused_with_its_field_and_line(
        entry: str, needle: str, message: str) -> None:
    fields = {"room": '"!uz-termez:liaison.example"', "day": "monday", "at": '"08:00"'}
    key = entry.split(":", 1)[0]
    fields[key] = entry.split(":", 1)[1].strip()
    lines = "\n".join(f"      {name}: {value}" for name, value in fields.items())
    source = with_reports(f"reports:\n  weekly:\n    - {lines.lstrip()}\n")

    [problem] = problems_of(source)
    assert problem.line == line_of(source, needle)
    assert problem.path == f"reports.weekly[0].{key}" + ("[0]" if key == "posts" else "")
    assert problem.message == message


def test_a_weekly_report_into_a_room_of_no_post_must_name_its_posts() -> None:
    source = with_reports(
        'reports:\n  weekly:\n    - {room: "!sup:liaison.example", day: friday, at: "07:05"}\n')
    [problem] = problems_of(source)
    assert (problem.path, problem.line) == ("reports.weekly[0].room",
                                            line_of(source, "!sup:liaison.example"))
    assert problem.message.endswith("list the posts the report covers in posts: [...]")
    parse_config(with_reports(  # naming them is enough
        'reports:\n  weekly:\n    - {room: "!sup:liaison.example", day: friday, at: "07:05",'
        ' posts: [UZ-TERMEZ]}\n'))


def test_a_good_weekly_report_loads_with_its_defaults() -> None:
    conf = parse_config(with_reports(
        'reports:\n  weekly:\n    - {room: "!uz-termez:liaison.example", day: Friday,'
        ' at: "7:05"}\n'))
    [entry] = conf.reports.weekly
    assert (entry.day, entry.at, entry.timezone, entry.period_text, entry.posts) == (
        "friday", "07:05", "UTC", "7d", ())


# --- weekly reports, once ------------------------------------------------------------------


def reporter(db: Database, conf: Config, clock: FixedClock, *,
             charts: bool = True) -> WeeklyReports:
    """A WeeklyReports as a (re)started process makes it: it starts now."""
    return WeeklyReports(db, clock, conf, languages=Directory(conf), wake_sender=lambda: None,
                         charts=charts)


async def test_without_the_charts_extra_a_weekly_report_is_its_table_saying_so(
        db: Database) -> None:
    conf = config()
    bot = await acknowledged_case(db, conf)
    bot.clock.at = SLOT
    await reporter(db, conf, bot.clock, charts=False).tick()
    [table] = await bot.queued(SUP_ROOM)
    assert table.kind == WEEKLY_KIND
    lines = table.content["body"].splitlines()
    assert lines[1] == "Termez (UZ-TERMEZ)"
    assert lines[-1] == text("chart.not_installed", "ru")


async def test_a_weekly_report_goes_out_once_at_its_time_in_the_room_language(
        db: Database) -> None:
    conf = config()
    bot = await acknowledged_case(db, conf)
    reports = reporter(db, conf, bot.clock)

    assert await reports.tick() == ms(SLOT)
    assert await bot.queued(SUP_ROOM) == []

    bot.clock.at = SLOT
    assert await reports.tick() == ms(SLOT + timedelta(days=7))
    table, chart = await bot.queued(SUP_ROOM)
    assert (table.kind, chart.kind) == (WEEKLY_KIND, CHART_KIND)
    lines = table.content["body"].splitlines()
    assert lines[0] == text("chase.report.title", "ru", period="7d",
                            since=Moment(ms(SLOT - timedelta(days=7)), "Asia/Tashkent"),
                            until=Moment(ms(SLOT), "Asia/Tashkent"))
    assert lines[1] == "Termez (UZ-TERMEZ)"
    assert lines[3].startswith("• Подтверждено 1 из 1: медиана 2")
    assert table.content[REPORT_KEY]["late"] is False
    assert ChartRequest.of(chart.content) == chart_request(
        since_ms=ms(SLOT - timedelta(days=7)), now_ms=ms(SLOT), posts=["UZ-TERMEZ"],
        language="ru", period="7d")

    bot.clock.at = SLOT + timedelta(minutes=1)
    await reports.tick()
    await reporter(db, conf, bot.clock).tick()  # a restart
    assert len(await bot.queued(SUP_ROOM)) == 2


async def test_after_an_outage_only_the_latest_missed_report_goes_out_late_and_once(
        db: Database) -> None:
    conf = config()
    clock = FixedClock(SLOT - timedelta(hours=1))
    await reporter(db, conf, clock).tick()  # the schedule is seen before its first slot

    clock.at = SLOT + timedelta(days=15)  # down through three slots
    restarted = reporter(db, conf, clock)
    await restarted.tick()
    await restarted.tick()
    await reporter(db, conf, clock).tick()

    bot = Bot(db, conf, clock)
    table, chart = await bot.queued(SUP_ROOM)
    latest = SLOT + timedelta(days=14)
    assert table.content[REPORT_KEY] == {"weekly": True, "period": "7d", "late": True,
                                         "since_ms": ms(latest - timedelta(days=7)),
                                         "until_ms": ms(latest)}
    assert table.content["body"].splitlines()[-1] == text(
        "chase.late", "ru", time=Moment(ms(latest), "Asia/Tashkent"))
    assert ChartRequest.of(chart.content) is not None
    async with db.read() as conn:
        slots = await conn.execute_fetchall(
            "SELECT until_ms, state, late FROM report_slots ORDER BY until_ms")
    assert [tuple(row) for row in slots] == [(ms(SLOT), "skipped", 0),
                                             (ms(SLOT + timedelta(days=7)), "skipped", 0),
                                             (ms(latest), "queued", 1)]


async def test_a_new_schedule_owes_nothing_from_before_it_was_first_seen(db: Database) -> None:
    conf = config()
    clock = FixedClock(SLOT + timedelta(days=2))
    reports = reporter(db, conf, clock)
    assert await reports.tick() == ms(SLOT + timedelta(days=7))

    clock.at = SLOT + timedelta(days=7)
    await reports.tick()
    [table, _] = await Bot(db, conf, clock).queued(SUP_ROOM)
    assert table.content[REPORT_KEY]["until_ms"] == ms(SLOT + timedelta(days=7))
    assert table.content[REPORT_KEY]["late"] is False


async def test_a_room_that_chose_a_language_reads_its_report_in_it(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO room_languages (room_id, language, set_by, set_ms)"
                           " VALUES (?, 'en', ?, 0)", (SUP_ROOM, UZ_BOSS))
    conf = config()
    clock = FixedClock(SLOT - timedelta(minutes=1))
    reports = reporter(db, conf, clock)
    await reports.tick()
    clock.at = SLOT
    await reports.tick()
    [table, chart] = await Bot(db, conf, clock).queued(SUP_ROOM)
    assert table.content["body"].startswith("Report for the last 7d")
    request = ChartRequest.of(chart.content)
    assert request is not None and request.language == "en"
