"""The optional monitoring listener: `/metrics` for Prometheus and `/healthz` for whatever
restarts the bot or pages someone, served by aiohttp on the bot's own loop.

Figures about the work (cases, deliveries, acknowledgements, chase steps, the outbox,
undecryptable messages) are read from the database at each scrape (`storage.metrics`)
through a read-only connection of the scrape's own, so they are exact across restarts
and a scrape never waits for, or holds up, the bot's transactions. Figures about this
process (send failures, the last successful sync) are counters the outbox worker and the
sync loop keep. Each scrape renders its own `CollectorRegistry`, never
prometheus_client's global one, so several bots in one process (or tests) never collide.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiosqlite
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector

from liaison.bot.clock import Clock
from liaison.bot.health import HealthLimits, HomeserverReach, LinkState, assess
from liaison.bot.key_health import KeyHealth
from liaison.bot.session import StartupError
from liaison.commands.links import Link
from liaison.config import MetricsConfig
from liaison.storage import links as link_store
from liaison.storage import outbox
from liaison.storage.db import read_only
from liaison.storage.metrics import ACK_BUCKETS_S, WorkFigures, work_figures

log = logging.getLogger(__name__)


class SyncProgress(Protocol):
    """What the sync loop (`bot.sync.SyncLoop`) tells: when a sync last succeeded, in
    the loop's monotonic seconds."""

    @property
    def last_success_monotonic(self) -> float | None: ...


class SendCounters(Protocol):
    """What the outbox worker (`bot.sender.OutboxSender`) counts."""

    @property
    def retries(self) -> int: ...

    @property
    def permanent_failures(self) -> int: ...


@dataclass(frozen=True)
class ProcessFigures:
    send_retries: int
    send_permanent_failures: int
    sync_lag_s: float
    """Since the last successful sync ended, or since the start while there was none."""
    sync_last_success_unix_s: float | None
    keys: KeyHealth | None = None
    undecryptable_share: float | None = None
    """Of officers' encrypted events in the last 15 minutes, unreadable on arrival."""
    since_decrypted_command_s: float | None = None


@dataclass(frozen=True)
class LinkFigures:
    """Per link (`docs/links.md`): protocol events logged, refusals, and the queue."""

    events: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    """(link, direction, event type) → events sent, received (accepted) or refused."""
    refused: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(link, reason) → events refused."""
    queues: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)
    """link → (protocol events queued for its room, the oldest one's age in ms)."""


async def link_figures(conn: aiosqlite.Connection, links: Sequence[Link], *,
                       now_ms: int) -> LinkFigures:
    """The figures of `links` from the database (a scrape's read-only connection)."""
    names = {link.name for link in links}
    queues = {}
    for link in links:
        pending, oldest_ms = await link_store.queued(conn, link.room)
        queues[link.name] = (pending, None if oldest_ms is None else max(0, now_ms - oldest_ms))
    return LinkFigures(
        events={key: count for key, count in (await link_store.counts(conn)).items()
                if key[0] in names},
        refused={key: count for key, count in (await link_store.refusals(conn)).items()
                 if key[0] in names},
        queues=queues)


def link_metrics(figures: LinkFigures) -> Iterator[Metric]:
    events = CounterMetricFamily(
        "liaison_link_events_total",
        "Protocol events on a link, by direction (sent, received: accepted, refused) and type",
        labels=["link", "direction", "type"])
    for (link, direction, event_type), count in sorted(figures.events.items()):
        events.add_metric([link, direction, event_type], count)
    yield events
    refused = CounterMetricFamily(
        "liaison_link_refused_total", "Protocol events refused on a link, by reason",
        labels=["link", "reason"])
    for (link, reason), count in sorted(figures.refused.items()):
        refused.add_metric([link, reason], count)
    yield refused
    queue = GaugeMetricFamily("liaison_link_queue",
                              "Protocol events queued for the partner, not sent yet",
                              labels=["link"])
    lag = GaugeMetricFamily("liaison_link_lag_seconds",
                            "How long the oldest protocol event queued for the partner has "
                            "waited (0 when none is)", labels=["link"])
    for link, (pending, age_ms) in sorted(figures.queues.items()):
        queue.add_metric([link], pending)
        lag.add_metric([link], 0 if age_ms is None else age_ms / 1000)
    yield queue
    yield lag


class FiguresCollector:
    """One scrape's figures as Prometheus metric families (a prometheus_client collector)."""

    def __init__(self, work: WorkFigures, process: ProcessFigures,
                 links: LinkFigures | None = None) -> None:
        self._work = work
        self._process = process
        self._links = links

    def collect(self) -> Iterator[Metric]:
        if self._links is not None:
            yield from link_metrics(self._links)
        work, process = self._work, self._process
        cases = CounterMetricFamily("liaison_cases_total", "Cases opened, by priority and kind",
                                    labels=["priority", "kind"])
        for (priority, kind), count in work.cases.items():
            cases.add_metric([priority, kind], count)
        yield cases
        deliveries = work.deliveries
        yield CounterMetricFamily(
            "liaison_deliveries_total", "Cases routed to a target post (one per target)",
            value=deliveries.routed)
        yield CounterMetricFamily(
            "liaison_acknowledgements_total",
            "Deliveries acknowledged by their target post (an answer acknowledges too)",
            value=deliveries.acknowledged)
        buckets = [(str(float(bound)), count)  # `le="30.0"`, as prometheus_client writes it
                   for bound, count in zip(ACK_BUCKETS_S, deliveries.ack_within, strict=True)]
        yield HistogramMetricFamily(
            "liaison_time_to_acknowledge_seconds",
            "From a case routed to a target post to that post's acknowledgement",
            buckets=[*buckets, ("+Inf", deliveries.acknowledged)],
            sum_value=deliveries.ack_sum_ms / 1000)
        yield CounterMetricFamily("liaison_reminders_total", "Chase reminders fired",
                                  value=work.reminders)
        yield CounterMetricFamily("liaison_escalations_total",
                                  "Escalations to supervisors fired", value=work.escalations)
        yield GaugeMetricFamily("liaison_outbox_pending", "Messages waiting in the outbox",
                                value=work.outbox.pending)
        age_ms = work.outbox.oldest_pending_age_ms
        yield GaugeMetricFamily(
            "liaison_outbox_oldest_pending_age_seconds",
            "How long the oldest message in the outbox has waited (0 when it is empty)",
            value=0 if age_ms is None else age_ms / 1000)
        failures = CounterMetricFamily(
            "liaison_send_failures_total",
            "Failed sends since this process started: retried, or given up on (permanent)",
            labels=["kind"])
        failures.add_metric(["retry"], process.send_retries)
        failures.add_metric(["permanent"], process.send_permanent_failures)
        yield failures
        yield GaugeMetricFamily(
            "liaison_undecryptable_waiting",
            "Messages the bot could not decrypt yet, waiting for their keys",
            value=work.undecryptable_waiting)
        yield CounterMetricFamily(
            "liaison_undecryptable_notified_total",
            "Messages the bot never decrypted: their senders were told",
            value=work.undecryptable_notified)
        yield GaugeMetricFamily(
            "liaison_sync_lag_seconds",
            "Since the last successful sync (since the start, before the first one)",
            value=process.sync_lag_s)
        yield GaugeMetricFamily(
            "liaison_sync_last_success_timestamp_seconds",
            "When the last successful sync ended, Unix time (0: none since the start)",
            value=process.sync_last_success_unix_s or 0)
        keys = process.keys
        if keys is None:
            return
        yield CounterMetricFamily(
            "liaison_key_upload_failures_total",
            "One-time key uploads that failed since this process started (refused or "
            "unanswered)", value=keys.upload_failures)
        yield GaugeMetricFamily(
            "liaison_key_upload_refused",
            "1 while the homeserver refuses the bot's one-time keys (a stale crypto store)",
            value=0 if keys.upload_rejected is None else 1)
        yield CounterMetricFamily(
            "liaison_key_claim_failures_total",
            "Claims of officers' one-time keys that failed since this process started",
            value=keys.claim_failures)
        yield GaugeMetricFamily(
            "liaison_undecryptable_share",
            "Of officers' encrypted messages in the last 15 minutes, the share the bot could "
            "not read when they arrived (0 when there were none)",
            value=process.undecryptable_share or 0.0)
        yield GaugeMetricFamily(
            "liaison_seconds_since_decrypted_command",
            "Since the bot last read an encrypted command (since the start, before the first)",
            value=(process.sync_lag_s if process.since_decrypted_command_s is None
                   else process.since_decrypted_command_s))
        if keys.one_time_keys_on_server is not None:
            yield GaugeMetricFamily(
                "liaison_one_time_keys_on_server",
                "The bot device's unclaimed one-time keys on the homeserver",
                value=keys.one_time_keys_on_server)


def exposition(work: WorkFigures, process: ProcessFigures,
               links: LinkFigures | None = None) -> bytes:
    """The Prometheus text format of one scrape; also this process's CPU, memory and
    file descriptors (`process_*`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FiguresCollector(work, process, links))
    ProcessCollector(registry=registry)
    return generate_latest(registry)


class MonitoringListener:
    """`/metrics` and `/healthz` on `settings.host:settings.port`, from `start()` until
    `stop()`."""

    def __init__(self, settings: MetricsConfig, *, database: Path, clock: Clock,
                 sync: SyncProgress | None = None, sender: SendCounters | None = None,
                 reach: HomeserverReach | None = None,
                 keys: KeyHealth | None = None, links: Sequence[Link] = (),
                 identity_problems: Callable[[], Mapping[str, str]] = dict) -> None:
        self._settings = settings
        self._links = tuple(links)
        self._identity_problems = identity_problems
        """Link name → why its partner's identity is refused (`bot.links.LinkEvents`)."""
        self._database = database
        self._clock = clock
        self._sync = sync
        self._sender = sender
        self._reach = reach
        """Start-up's tries to reach the homeserver (the listener starts before them)."""
        self._keys = keys
        self._reading = asyncio.Lock()
        """One scrape or health check reads the database at a time, however many ask."""
        self._limits = HealthLimits(
            sync_stalled_after_s=settings.sync_stalled_after.total_seconds(),
            outbox_stuck_after_s=settings.outbox_stuck_after.total_seconds())
        self._runner: web.AppRunner | None = None
        self._started_s = 0.0

    @property
    def address(self) -> str:
        """`http://127.0.0.1:9464` (an IPv6 host in brackets)."""
        host = self._settings.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self._settings.port}"

    async def start(self) -> None:
        """Listen; raise `StartupError` when the address cannot be had (a port in use)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._settings.host, self._settings.port).start()
        except OSError as error:
            await runner.cleanup()
            raise StartupError(f"metrics: cannot listen on {self.address}: "
                               f"{error.strerror or error}") from error
        self._runner = runner
        self._started_s = asyncio.get_running_loop().time()
        log.info("metrics listening", extra={"metrics": f"{self.address}/metrics",
                                             "healthz": f"{self.address}/healthz"})

    def attach(self, *, sync: SyncProgress, sender: SendCounters,
               identity_problems: Callable[[], Mapping[str, str]] | None = None) -> None:
        """The sync loop and the outbox worker (and the links' identity checks), once
        start-up made them."""
        self._sync, self._sender = sync, sender
        if identity_problems is not None:
            self._identity_problems = identity_problems

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        async with self._reading, read_only(self._database) as conn:
            work = await work_figures(conn, now_ms=self._clock.now_ms())
            links = (await link_figures(conn, self._links, now_ms=self._clock.now_ms())
                     if self._links else None)
        return web.Response(body=exposition(work, self._process_figures(), links),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        links: LinkFigures | None = None
        try:
            async with self._reading, read_only(self._database) as conn:
                stats = await outbox.stats(conn, now_ms=self._clock.now_ms())
                if self._links:
                    links = await link_figures(conn, self._links, now_ms=self._clock.now_ms())
        except (sqlite3.Error, OSError):
            log.warning("health check could not read the outbox", exc_info=True)
            stats = None
        problems = self._identity_problems()
        link_states = tuple(
            LinkState(link.name, *(links.queues.get(link.name, (0, None)) if links
                                   else (0, None)), identity_problem=problems.get(link.name))
            for link in self._links)
        health = assess(now_s=asyncio.get_running_loop().time(), started_s=self._started_s,
                        last_sync_s=self._last_sync(), outbox=stats,
                        limits=self._limits, homeserver=self._reach, keys=self._keys,
                        links=link_states)
        return web.json_response(health.body(), status=200 if health.ok else 503)

    def _last_sync(self) -> float | None:
        return None if self._sync is None else self._sync.last_success_monotonic

    def _process_figures(self) -> ProcessFigures:
        now_s = asyncio.get_running_loop().time()
        last = self._last_sync()
        sender = self._sender
        return ProcessFigures(
            send_retries=0 if sender is None else sender.retries,
            send_permanent_failures=0 if sender is None else sender.permanent_failures,
            sync_lag_s=now_s - (self._started_s if last is None else last),
            sync_last_success_unix_s=(None if last is None
                                      else self._clock.now_ms() / 1000 - (now_s - last)),
            keys=self._keys,
            undecryptable_share=(None if self._keys is None
                                 else self._keys.undecryptable_share(now_s)),
            since_decrypted_command_s=(
                now_s - self._started_s if self._keys is None
                or self._keys.last_decrypted_command_s is None
                else now_s - self._keys.last_decrypted_command_s))
