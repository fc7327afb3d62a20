"""Reports the bot makes by itself: the chart of `!report`, drawn when it is sent, and the
weekly reports of `reports.weekly`.

**Charts.** `!report` (and a weekly report) queues, after its table, a render request
(`commands.report_chart.ChartRequest`) rather than an image: `ReportCharts` is the outbox
sender's renderer. Just before sending, it reads the figures again for the same period
(the same reading as `!report`, as of the same instant), draws the PNG in a worker thread,
encrypts and uploads it (`bot.media.upload`), and hands back the `m.image` content, which
the sender stores in place of the request before sending it under the entry's own txn
id. An unreachable media repository is tried again later; a chart that cannot be drawn
becomes a short notice (the table already went out).

**Weekly reports.** `WeeklyReports` sleeps until the next slot of any schedule (the
database, not the sleep, decides what is owed), then, in one transaction per slot, claims
it (`storage.reports`) and queues the table in the room's language and the chart request.
A slot that fell due while the bot was down goes out once at start, marked late; older
ones missed in the same outage are recorded as skipped and logged; slots before a schedule
was first seen are not owed. A restart never sends a slot twice: its claim is in the
database.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
from collections.abc import Callable, Mapping
from typing import Any

from nio import AsyncClient

from liaison.bot.clock import Clock
from liaison.bot.directory import Directory
from liaison.bot.media import MediaUnavailable, upload
from liaison.commands.chase_render import render_report
from liaison.commands.chasing import is_late
from liaison.commands.notify import OutboxKind
from liaison.commands.render import notice_content
from liaison.commands.report_chart import (
    CHART_KIND,
    REPORT_KEY,
    Chart,
    ChartRequest,
    ack_time_chart,
    chart_failed_content,
    chart_not_installed_content,
    chart_request,
    image_content,
    without_chart,
)
from liaison.commands.report_schedule import WeeklyReport
from liaison.config import Config
from liaison.storage import chasing, outbox, reports
from liaison.storage.db import Database
from liaison.storage.outbox import OutboxMessage

log = logging.getLogger(__name__)

UPLOAD_ATTEMPTS = 5
"""Tries at uploading a chart before a notice is sent in its place."""
UPLOAD_TIMEOUT_S = 120.0
DRAW_TIMEOUT_S = 120.0
"""A chart not drawn by then becomes a notice (the table already went out)."""
WEEKLY_KIND = OutboxKind.REPORT_WEEKLY
"""The outbox kind of a weekly report's table."""
RETRY_MS = 5_000
"""After a failed round, look again this soon."""
MAX_SLEEP_S = 60.0
"""Look at the schedules at least this often: the wall clock may have jumped."""


@functools.cache
def charts_installed() -> bool:
    """Whether matplotlib (the `charts` extra) can be imported: without it reports go out
    as their table, saying that charts are not installed."""
    return importlib.util.find_spec("matplotlib") is not None


class ReportCharts:
    """The sender's renderer (`bot.sender.Renderer`) for report charts."""

    def __init__(self, db: Database, client: AsyncClient, config: Config) -> None:
        self._db = db
        self._client = client
        self._config = config
        self._drawing = asyncio.Lock()
        """matplotlib draws one chart at a time."""

    async def __call__(self, message: OutboxMessage) -> dict[str, Any]:
        relation = message.content.get("m.relates_to")
        extra = {"m.relates_to": relation} if isinstance(relation, Mapping) else {}
        request = ChartRequest.of(message.content)
        if request is None:
            log.error("unreadable render request; a notice goes instead",
                      extra={"room_id": message.room_id, "txn_id": message.txn_id})
            return chart_failed_content("en", extra)
        try:
            chart = await self._draw(request)
        except ModuleNotFoundError:  # asked for while the charts extra was still installed
            log.warning("report chart not drawn: matplotlib (the charts extra) is not installed",
                        extra={"room_id": message.room_id, "txn_id": message.txn_id})
            return chart_not_installed_content(request.language, extra)
        except Exception:
            log.exception("report chart could not be drawn; a notice goes instead",
                          extra={"room_id": message.room_id, "txn_id": message.txn_id})
            return chart_failed_content(request.language, extra)
        try:
            file = await asyncio.wait_for(
                upload(self._client, chart.png, filename=request.filename), UPLOAD_TIMEOUT_S)
        except (MediaUnavailable, TimeoutError) as error:
            if message.attempts + 1 < UPLOAD_ATTEMPTS:
                raise MediaUnavailable(str(error) or "upload timed out") from error
            # Its room's queue waits behind it: after a few tries a notice goes instead.
            log.error("report chart could not be uploaded; a notice goes instead",
                      extra={"room_id": message.room_id, "attempts": message.attempts + 1})
            return chart_failed_content(request.language, extra)
        return image_content(request, chart, file, extra)

    async def _draw(self, request: ChartRequest) -> Chart:
        async with self._db.read() as conn:
            figures = await chasing.post_reports(
                conn, list(request.posts), policies=self._config.chasing.policies,
                since_ms=request.since_ms, now_ms=request.now_ms)
        async with self._drawing:
            return await asyncio.wait_for(
                asyncio.to_thread(ack_time_chart, figures, period=request.period,
                                  language=request.language), DRAW_TIMEOUT_S)


class WeeklyReports:
    """Sends each slot of `reports.weekly` once (see the module docstring)."""

    def __init__(self, db: Database, clock: Clock, config: Config, *,
                 languages: Directory, wake_sender: Callable[[], None],
                 ready: asyncio.Event | None = None, charts: bool | None = None) -> None:
        self._db = db
        self._charts = charts_installed() if charts is None else charts
        self._clock = clock
        self._schedules = config.reports.weekly
        self._languages = languages
        self._wake_sender = wake_sender
        self._ready = ready
        self._handled: dict[str, int] = {}
        """The latest slot of each schedule this run has dealt with (no need to look again)."""
        self.started_ms = clock.now_ms()
        """Slots due before this instant fell due while the bot was not running."""

    async def run(self) -> None:
        if not self._schedules:
            return
        if self._ready is not None:
            await self._ready.wait()
        while True:
            try:
                next_ms = await self.tick()
            except Exception:
                log.exception("weekly reports round failed; retrying")
                next_ms = self._clock.now_ms() + RETRY_MS
            wait_s = (next_ms - self._clock.now_ms()) / 1000
            await asyncio.sleep(min(max(0.0, wait_s), MAX_SLEEP_S))

    async def tick(self) -> int:
        """Queue every slot that is due and not yet claimed; when the next one falls due."""
        now = self._clock.now_ms()
        await self._languages.refresh(self._db)
        for schedule in self._schedules:
            due = schedule.slot_at_or_before(now)
            if self._handled.get(schedule.key) == due:
                continue
            if await self._send_slot(schedule, due, now):
                self._wake_sender()  # now: a later schedule's failure must not hold it
            self._handled[schedule.key] = due
        return min(schedule.slot_after(now) for schedule in self._schedules)

    async def _send_slot(self, schedule: WeeklyReport, due: int, now: int) -> bool:
        """Claim the slot ending at `due` and queue its report, in one transaction; False
        when it is not owed or was claimed before."""
        key = schedule.key
        async with self._db.transaction() as conn:
            first_seen = await reports.first_seen(conn, key, now_ms=self.started_ms)
            if due < first_seen:
                return False
            last = await reports.last_slot_ms(conn, key)
            after = first_seen - 1 if last is None else max(first_seen - 1, last)
            missed = schedule.missed_slots(after_ms=after, before_ms=due)
            for slot in missed:
                await reports.claim_slot(conn, room_id=schedule.room,
                                         since_ms=schedule.since_ms(slot), until_ms=slot,
                                         schedule=key, skipped=True, now_ms=now)
            late = is_late(due, now, self.started_ms)
            since = schedule.since_ms(due)
            if not await reports.claim_slot(conn, room_id=schedule.room, since_ms=since,
                                            until_ms=due, schedule=key, late=late, now_ms=now):
                return False
            await self._queue(conn, schedule, since_ms=since, until_ms=due, late=late, now=now)
        if missed:
            log.warning("weekly reports missed while the bot was down were skipped; only the "
                        "latest is sent", extra={"room_id": schedule.room,
                                                 "skipped": len(missed)})
        log.info("weekly report queued", extra={"room_id": schedule.room, "until_ms": due,
                                                "late": late})
        return True

    async def _queue(self, conn: Any, schedule: WeeklyReport, *, since_ms: int, until_ms: int,
                     late: bool, now: int) -> None:
        config = self._languages.config
        posts = [post_id for post_id in schedule.report_posts(config.posts)
                 if config.post_by_id(post_id) is not None]
        figures = await chasing.post_reports(conn, posts, policies=config.chasing.policies,
                                             since_ms=since_ms, now_ms=until_ms)
        language = self._language(schedule.room)
        notice = render_report(figures, period=schedule.period_text, since_ms=since_ms,
                               now_ms=until_ms, posts={post.id: post for post in config.posts},
                               language=language, timezone=schedule.timezone, late=late)
        if not self._charts:
            notice = without_chart(notice, language)
        about = {"weekly": True, "period": schedule.period_text, "since_ms": since_ms,
                 "until_ms": until_ms, "late": late}
        await outbox.enqueue(conn, room_id=schedule.room, event_type="m.room.message",
                             content=notice_content(notice.text, notice.html,
                                                    extra={REPORT_KEY: about}),
                             now_ms=now, kind=WEEKLY_KIND)
        if not self._charts:
            return
        request = chart_request(since_ms=since_ms, now_ms=until_ms, posts=posts,
                                language=language, period=schedule.period_text)
        await outbox.enqueue(conn, room_id=schedule.room, event_type="m.room.message",
                             content=request.content(), now_ms=now, kind=CHART_KIND)

    def _language(self, room_id: str) -> str:
        """The room's `!lang` choice; else its post's language; else the language of the
        posts whose supervisors meet there (as their escalations read); else English."""
        chosen = self._languages.chosen_language(room_id)
        if chosen is not None:
            return chosen
        config = self._languages.config
        post = config.post_by_room(room_id)
        if post is not None:
            return post.language
        supervised = [p for p in config.posts if p.supervisors_room == room_id]
        return supervised[0].language if supervised else "en"
