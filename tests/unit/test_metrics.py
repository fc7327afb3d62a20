"""`/metrics` and `/healthz`: the figures read from a real database, the health decision
with an injected clock, the listener over real HTTP, and the `metrics:` config section."""

from __future__ import annotations

import asyncio
import socket
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nio import RoomSendError
from prometheus_client.parser import text_string_to_metric_families

from devkit.synapse import free_port
from liaison.bot.health import HealthLimits, assess
from liaison.bot.key_health import KeyHealth
from liaison.bot.metrics import MonitoringListener, ProcessFigures, exposition
from liaison.bot.sender import OutboxSender, SenderSettings
from liaison.bot.session import StartupError
from liaison.commands.chasing import Action, Phase, PlannedStep
from liaison.commands.model import Priority, Tlp
from liaison.config import ConfigError, MetricsConfig, parse_config
from liaison.storage import cases, chasing, inbox, outbox
from liaison.storage.db import Database, read_only
from liaison.storage.metrics import UNDECRYPTABLE_KIND, DeliveryFigures, WorkFigures, work_figures
from liaison.storage.outbox import OutboxStats
from tests.unit.test_sender import ROOM, FixedClock, ScriptedClient

T0 = 1_777_600_000_000
SECOND, MINUTE, HOUR = 1000, 60_000, 3_600_000

NEW = cases.NewCase(
    kind="alert", origin_post="KZ-ZHIBEK", origin_country="KZ", priority=Priority.URGENT,
    tlp=Tlp.AMBER, category="drugs", grading=None, related_ref=None, fields=(),
    text="Suspected heroin.", due_ms=None, forwardable=True, origin_room="!kz:example.org",
    origin_event_id="$alert", origin_sender="@kz:example.org", created_ms=T0,
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "liaison.db")
    yield database
    await database.close()


def scraped(text: str) -> dict[str, float]:
    """Every sample of an exposition: `name{label=value,...}` → value (labels sorted)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def liaison_only(samples: dict[str, float]) -> dict[str, float]:
    return {name: value for name, value in samples.items() if name.startswith("liaison_")}


async def relay(conn: Any, case: cases.Case, post: str, *, sent: bool) -> cases.Delivery:
    """Queue a relayed case and record its delivery, as `!alert` does; `sent`: and the
    homeserver took it."""
    message = await outbox.enqueue(conn, room_id=f"!{post.lower()}:example.org",
                                   event_type="m.room.message", content={"body": case.ref},
                                   now_ms=case.created_ms, kind="case-relay",
                                   case_ref=case.ref)
    if sent:
        await outbox.mark_sent(conn, message.id, event_id=f"${case.ref}-{post}",
                               now_ms=case.created_ms + 100)
    return await cases.add_delivery(conn, case.id, post=post, room_id=message.room_id,
                                    relay_txn_id=message.txn_id, now_ms=case.created_ms)


async def a_day_of_work(db: Database) -> None:
    """Three cases, four deliveries, three of them taken (45 s, 10 min, just over 2 h),
    one reminder and one escalation fired, two messages queued, one message that could
    not be decrypted and was answered, and one still waiting for its key."""
    async with db.transaction() as conn:
        urgent = await cases.create_case(conn, NEW)
        to_uz = await relay(conn, urgent, "UZ-TERMEZ", sent=True)
        to_tj = await relay(conn, urgent, "TJ-PANJ", sent=True)
        flash = await cases.create_case(conn, replace(
            NEW, priority=Priority.FLASH, origin_event_id="$flash", created_ms=T0 + SECOND))
        flash_to_uz = await relay(conn, flash, "UZ-TERMEZ", sent=True)
        request = await cases.create_case(conn, replace(
            NEW, kind="request", priority=Priority.ROUTINE, origin_event_id="$request",
            created_ms=T0 + 2 * SECOND))
        request_to_tj = await relay(conn, request, "TJ-PANJ", sent=False)

        assert await cases.acknowledge(conn, to_uz, by="@uz:example.org",
                                       now_ms=T0 + 45 * SECOND)
        assert await cases.acknowledge(conn, flash_to_uz, by="@uz:example.org",
                                       now_ms=T0 + SECOND + 10 * MINUTE)
        assert await cases.mark_answered(conn, request_to_tj, by="@tj:example.org",
                                         now_ms=T0 + 2 * SECOND + 2 * HOUR + 1)

        await chasing.save_plan(conn, to_tj.id, [
            PlannedStep("ack.remind.1", Phase.ACK, Action.REMIND, T0 + 10 * MINUTE),
            PlannedStep("ack.escalate.1", Phase.ACK, Action.ESCALATE, T0 + 15 * MINUTE),
            PlannedStep("ack.escalate.2", Phase.ACK, Action.ESCALATE, T0 + 30 * MINUTE),
        ], now_ms=T0)
        await chasing.save_plan(conn, flash_to_uz.id, [
            PlannedStep("ack.remind.1", Phase.ACK, Action.REMIND, T0 + 5 * MINUTE)],
            now_ms=T0)
        planned = {(step.delivery.delivery_id, step.step.key): step.id
                   for step in await chasing.pending_steps(conn)}
        for key in ("ack.remind.1", "ack.escalate.1"):
            assert await chasing.mark_fired(conn, planned[(to_tj.id, key)],
                                            now_ms=T0 + 20 * MINUTE, late=False, sent=[])
        await chasing.stop_steps(conn, [planned[(flash_to_uz.id, "ack.remind.1")]],
                                 now_ms=T0 + 11 * MINUTE)

        for number in (1, 2):
            await inbox.save_undecryptable(
                conn, event_id=f"$secret{number}", room_id="!kz:example.org",
                sender="@kz:example.org", session_id="s", source={}, received_ms=T0)
        await inbox.mark_notified(conn, "$secret1", now_ms=T0 + 3 * SECOND)
        await outbox.enqueue(conn, room_id="!kz:example.org", event_type="m.room.message",
                             content={"body": "could not read"}, now_ms=T0 + 3 * SECOND,
                             kind=UNDECRYPTABLE_KIND)


PROCESS = ProcessFigures(send_retries=3, send_permanent_failures=1, sync_lag_s=2.5,
                         sync_last_success_unix_s=1_777_600_057.5)


# --- the figures ------------------------------------------------------------------------


async def test_a_scrape_counts_exactly_what_the_database_holds(db: Database) -> None:
    await a_day_of_work(db)
    async with read_only(db.path) as conn:
        work = await work_figures(conn, now_ms=T0 + MINUTE)

    assert liaison_only(scraped(exposition(work, PROCESS).decode())) == {
        "liaison_cases_total{kind=alert,priority=flash}": 1.0,
        "liaison_cases_total{kind=request,priority=flash}": 0.0,
        "liaison_cases_total{kind=alert,priority=urgent}": 1.0,
        "liaison_cases_total{kind=request,priority=urgent}": 0.0,
        "liaison_cases_total{kind=alert,priority=routine}": 0.0,
        "liaison_cases_total{kind=request,priority=routine}": 1.0,
        "liaison_deliveries_total": 4.0,
        "liaison_acknowledgements_total": 3.0,
        "liaison_time_to_acknowledge_seconds_bucket{le=30.0}": 0.0,
        "liaison_time_to_acknowledge_seconds_bucket{le=60.0}": 1.0,
        "liaison_time_to_acknowledge_seconds_bucket{le=120.0}": 1.0,
        "liaison_time_to_acknowledge_seconds_bucket{le=300.0}": 1.0,
        "liaison_time_to_acknowledge_seconds_bucket{le=600.0}": 2.0,
        "liaison_time_to_acknowledge_seconds_bucket{le=900.0}": 2.0,
        "liaison_time_to_acknowledge_seconds_bucket{le=1800.0}": 2.0,
        "liaison_time_to_acknowledge_seconds_bucket{le=3600.0}": 2.0,
        "liaison_time_to_acknowledge_seconds_bucket{le=7200.0}": 2.0,
        "liaison_time_to_acknowledge_seconds_bucket{le=14400.0}": 3.0,
        "liaison_time_to_acknowledge_seconds_bucket{le=28800.0}": 3.0,
        "liaison_time_to_acknowledge_seconds_bucket{le=86400.0}": 3.0,
        "liaison_time_to_acknowledge_seconds_bucket{le=+Inf}": 3.0,
        "liaison_time_to_acknowledge_seconds_count": 3.0,
        "liaison_time_to_acknowledge_seconds_sum": 45 + 600 + 7200.001,
        "liaison_reminders_total": 1.0,
        "liaison_escalations_total": 1.0,
        # The unsent relay (queued at T0 + 2 s) and the notice about the unreadable message.
        "liaison_outbox_pending": 2.0,
        "liaison_outbox_oldest_pending_age_seconds": 58.0,
        "liaison_send_failures_total{kind=retry}": 3.0,
        "liaison_send_failures_total{kind=permanent}": 1.0,
        "liaison_undecryptable_waiting": 1.0,
        "liaison_undecryptable_notified_total": 1.0,
        "liaison_sync_lag_seconds": 2.5,
        "liaison_sync_last_success_timestamp_seconds": 1_777_600_057.5,
    }


async def test_an_empty_database_reports_every_series_at_zero(db: Database) -> None:
    async with read_only(db.path) as conn:
        work = await work_figures(conn, now_ms=T0)
    never_synced = ProcessFigures(0, 0, sync_lag_s=4.0, sync_last_success_unix_s=None)
    samples = liaison_only(scraped(exposition(work, never_synced).decode()))

    assert len([name for name in samples if name.startswith("liaison_cases_total")]) == 6
    assert {name: value for name, value in samples.items() if value != 0} == {
        "liaison_sync_lag_seconds": 4.0}
    assert samples["liaison_time_to_acknowledge_seconds_bucket{le=+Inf}"] == 0.0
    assert samples["liaison_sync_last_success_timestamp_seconds"] == 0.0


async def test_the_exposition_also_describes_the_process(db: Database) -> None:
    async with read_only(db.path) as conn:
        work = await work_figures(conn, now_ms=T0)
    samples = scraped(exposition(work, PROCESS).decode())
    assert samples["process_resident_memory_bytes"] > 0


async def test_the_outbox_worker_counts_retries_and_messages_given_up_on(
    tmp_path: Path,
) -> None:
    database = await Database.open(tmp_path / "db.sqlite")
    clock = FixedClock(T0)
    client = ScriptedClient([RoomSendError("Forbidden", "M_FORBIDDEN"),
                             RoomSendError("Forbidden", "M_FORBIDDEN")])
    sender = OutboxSender(database, client, clock,  # type: ignore[arg-type]
                          SenderSettings(max_attempts=2))
    async with database.transaction() as conn:
        await outbox.enqueue(conn, room_id=ROOM, event_type="m.room.message",
                             content={"body": "hello"}, now_ms=clock.ms)
    try:
        counted = []
        for _ in range(2):
            clock.ms += HOUR
            async with database.read() as conn:
                (message,) = await outbox.next_batch(conn, now_ms=clock.ms, limit=4)
            await sender._send(message)
            counted.append((sender.retries, sender.permanent_failures))
        assert counted == [(1, 0), (1, 1)]
    finally:
        await database.close()


# --- health -----------------------------------------------------------------------------

LIMITS = HealthLimits(sync_stalled_after_s=300, outbox_stuck_after_s=600)
EMPTY = OutboxStats(pending=0, failed=0, oldest_pending_age_ms=None)
EMPTY_CHECK = {"ok": True, "pending": 0, "oldest_pending_age_seconds": None}


def test_a_bot_that_syncs_and_sends_is_healthy() -> None:
    health = assess(now_s=1000.0, started_s=10.0, last_sync_s=990.5,
                    outbox=OutboxStats(pending=2, failed=7, oldest_pending_age_ms=1500),
                    limits=LIMITS)
    assert health.ok
    assert health.body() == {"ok": True, "checks": {
        "sync": {"ok": True, "seconds_since_success": 9.5},
        "outbox": {"ok": True, "pending": 2, "oldest_pending_age_seconds": 1.5}}}


def test_before_the_first_sync_the_bot_is_healthy_only_until_the_stall_limit() -> None:
    starting = assess(now_s=309.0, started_s=10.0, last_sync_s=None, outbox=EMPTY,
                      limits=LIMITS)
    stalled = assess(now_s=310.0, started_s=10.0, last_sync_s=None, outbox=EMPTY,
                     limits=LIMITS)
    assert starting.body() == {"ok": True, "checks": {
        "sync": {"ok": True, "seconds_since_success": None}, "outbox": EMPTY_CHECK}}
    assert stalled.body() == {"ok": False, "checks": {
        "sync": {"ok": False, "seconds_since_success": None,
                 "reason": "no sync has succeeded since the start 5m ago (limit 5m)"},
        "outbox": EMPTY_CHECK}}


def test_a_stalled_sync_is_unhealthy_and_recovers_with_the_next_sync() -> None:
    at_limit = assess(now_s=1300.0, started_s=0.0, last_sync_s=1000.0, outbox=EMPTY,
                      limits=LIMITS)
    later = assess(now_s=1421.0, started_s=0.0, last_sync_s=1000.0, outbox=EMPTY,
                   limits=LIMITS)
    recovered = assess(now_s=1422.0, started_s=0.0, last_sync_s=1421.75, outbox=EMPTY,
                       limits=LIMITS)
    assert at_limit.checks["sync"] == {
        "ok": False, "seconds_since_success": 300.0,
        "reason": "no sync has succeeded for 5m (limit 5m)"}
    assert not at_limit.ok
    assert later.body() == {"ok": False, "checks": {
        "sync": {"ok": False, "seconds_since_success": 421.0,
                 "reason": "no sync has succeeded for 7m1s (limit 5m)"},
        "outbox": EMPTY_CHECK}}
    assert recovered.ok
    assert recovered.checks["sync"] == {"ok": True, "seconds_since_success": 0.25}


def test_an_outbox_whose_oldest_message_waits_too_long_is_unhealthy() -> None:
    fine = assess(now_s=1000.0, started_s=0.0, last_sync_s=999.0, limits=LIMITS,
                  outbox=OutboxStats(pending=3, failed=0, oldest_pending_age_ms=599_999))
    stuck = assess(now_s=1000.0, started_s=0.0, last_sync_s=999.0, limits=LIMITS,
                   outbox=OutboxStats(pending=3, failed=0, oldest_pending_age_ms=750_000))
    # Just restarted with the last run's queue: it has the limit's time to drain first.
    restarted = assess(now_s=1000.0, started_s=900.0, last_sync_s=999.0, limits=LIMITS,
                       outbox=OutboxStats(pending=3, failed=0, oldest_pending_age_ms=750_000))
    assert fine.ok and restarted.ok
    assert stuck.body() == {"ok": False, "checks": {
        "sync": {"ok": True, "seconds_since_success": 1.0},
        "outbox": {"ok": False, "pending": 3, "oldest_pending_age_seconds": 750.0,
                   "reason": "the oldest of 3 queued messages has waited 12m30s "
                             "(limit 10m)"}}}


def test_an_unreadable_outbox_is_unhealthy() -> None:
    health = assess(now_s=100.0, started_s=0.0, last_sync_s=99.0, outbox=None, limits=LIMITS)
    assert health.body() == {"ok": False, "checks": {
        "sync": {"ok": True, "seconds_since_success": 1.0},
        "outbox": {"ok": False, "reason": "the outbox could not be read from the database"}}}


# --- the listener -----------------------------------------------------------------------


@dataclass
class FakeSync:
    last_success_monotonic: float | None = None


@dataclass
class FakeSender:
    retries: int = 0
    permanent_failures: int = 0


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_the_listener_serves_metrics_and_health_until_stopped(db: Database) -> None:
    await a_day_of_work(db)
    port = free_port()
    sync, sender = FakeSync(), FakeSender(retries=2)
    listener = MonitoringListener(
        MetricsConfig(enabled=True, port=port, sync_stalled_after=timedelta(seconds=5)),
        database=db.path, clock=FixedClock(T0 + MINUTE), sync=sync, sender=sender)
    await listener.start()
    try:
        status, content_type, text = await get(f"http://127.0.0.1:{port}/metrics")
        assert (status, content_type.split(";")[0]) == (200, "text/plain")
        samples = scraped(text)
        assert samples["liaison_deliveries_total"] == 4.0
        assert samples["liaison_send_failures_total{kind=retry}"] == 2.0
        assert samples["liaison_sync_last_success_timestamp_seconds"] == 0.0

        status, _, body = await get(f"http://127.0.0.1:{port}/healthz")
        assert (status, body) == (200, '{"ok": true, "checks": {"sync": {"ok": true, '
                                       '"seconds_since_success": null}, "outbox": {"ok": true,'
                                       ' "pending": 2, "oldest_pending_age_seconds": 58.0}}}')

        sync.last_success_monotonic = asyncio.get_running_loop().time() - 6
        status, _, body = await get(f"http://127.0.0.1:{port}/healthz")
        assert status == 503 and '"reason": "no sync has succeeded for 6s (limit 5s)"' in body

        sync.last_success_monotonic = asyncio.get_running_loop().time()
        status, _, _ = await get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
    finally:
        await listener.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(f"http://127.0.0.1:{port}/healthz")


async def test_a_port_in_use_stops_start_up_naming_the_address(db: Database) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listener = MonitoringListener(MetricsConfig(enabled=True, port=port),
                                      database=db.path, clock=FixedClock(T0), sync=FakeSync(),
                                      sender=FakeSender())
        with pytest.raises(StartupError, match=rf"metrics: cannot listen on "
                                               rf"http://127\.0\.0\.1:{port}: "):
            await listener.start()


# --- configuration ----------------------------------------------------------------------

BASE = textwrap.dedent("""\
    homeserver:
      url: https://matrix.liaison.example
    bot:
      user_id: "@liaison:liaison.example"
      password: {env: TEST_LIAISON_PASSWORD}
      pickle_key: {env: TEST_LIAISON_PICKLE_KEY}
    data_dir: data
    trust:
      policy: tofu
    """)


def test_metrics_are_off_by_default_and_would_listen_on_loopback() -> None:
    config = parse_config(BASE, source="config.yaml")
    assert config.metrics == MetricsConfig(
        enabled=False, host="127.0.0.1", port=9464,
        sync_stalled_after=timedelta(minutes=5), outbox_stuck_after=timedelta(minutes=10))
    assert config.warnings == []


def test_a_listener_on_every_interface_is_warned_about_with_its_line() -> None:
    config = parse_config(BASE + "metrics:\n  enabled: true\n  host: 0.0.0.0\n  port: 9100\n"
                                 "  sync_stalled_after: 90s\n", source="config.yaml")
    assert (config.metrics.host, config.metrics.port) == ("0.0.0.0", 9100)
    assert config.metrics.sync_stalled_after == timedelta(seconds=90)
    assert config.warnings == [
        "config.yaml:12: metrics.host: 0.0.0.0 is not a loopback address: /metrics and "
        "/healthz (no authentication) are reachable from other machines; firewall the port "
        "or use 127.0.0.1"]


def test_a_disabled_listener_is_not_warned_about() -> None:
    config = parse_config(BASE + "metrics:\n  host: 0.0.0.0\n", source="config.yaml")
    assert config.warnings == []


def test_a_stall_limit_within_the_sync_long_poll_is_warned_about() -> None:
    config = parse_config(BASE + "sync:\n  timeout: 30s\nmetrics:\n  enabled: true\n"
                                 "  host: ::1\n  sync_stalled_after: 30s\n",
                          source="config.yaml")
    assert config.warnings == [
        "config.yaml:15: metrics.sync_stalled_after: sync_stalled_after is not longer than "
        "sync.timeout: /healthz will fail between quiet syncs"]


def test_a_bad_host_port_or_duration_is_an_error_naming_its_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + "metrics:\n  host: metrics host\n  port: 70000\n"
                            "  outbox_stuck_after: 10\n", source="config.yaml")
    assert str(caught.value).splitlines() == [
        "config.yaml:11: metrics.host: metrics host is not an IP address or host name, "
        "like 127.0.0.1",
        "config.yaml:12: metrics.port: Input should be less than or equal to 65535",
        "config.yaml:13: metrics.outbox_stuck_after: durations are written with a unit, "
        "like 90s, 10m, 4h or 2d",
    ]


# --- the bot's own keys ------------------------------------------------------------------


def test_a_refused_key_upload_makes_the_bot_unhealthy_until_an_upload_is_accepted() -> None:
    keys = KeyHealth()
    keys.upload_succeeded(50)
    fine = assess(now_s=100.0, started_s=0.0, last_sync_s=99.0, outbox=EMPTY, limits=LIMITS,
                  keys=keys)
    refusal = "400 One time key signed_curve25519:AAAAAAAAADs already exists"
    keys.upload_failed(refusal, refused=True)
    deaf = assess(now_s=100.0, started_s=0.0, last_sync_s=99.0, outbox=EMPTY, limits=LIMITS,
                  keys=keys)
    keys.upload_failed("ClientConnectionError: refused", refused=False)  # an outage: no change
    keys.upload_succeeded(49)
    recovered = assess(now_s=100.0, started_s=0.0, last_sync_s=99.0, outbox=EMPTY,
                       limits=LIMITS, keys=keys)

    assert fine.ok and fine.checks["keys"] == {
        "ok": True, "upload_failures": 0, "claim_failures": 0, "one_time_keys_on_server": 50}
    assert not deaf.ok
    assert deaf.checks["keys"] == {
        "ok": False, "upload_failures": 1, "claim_failures": 0, "one_time_keys_on_server": 50,
        "reason": f"the homeserver refused the bot's one-time keys ({refusal}); new devices "
                  "cannot open sessions with it"}
    assert recovered.ok and recovered.checks["keys"]["upload_failures"] == 2


def test_key_upload_and_claim_failures_are_scraped() -> None:
    keys = KeyHealth()
    keys.upload_succeeded(42)
    keys.upload_failed("400 One time key signed_curve25519:AAAAAAAAADs already exists",
                       refused=True)
    keys.claim_failed("KeysClaimError: 502")
    process = replace(PROCESS, keys=keys)
    work = WorkFigures(cases={}, deliveries=DeliveryFigures(0, 0, (0,) * 12, 0), reminders=0,
                       escalations=0, outbox=EMPTY, undecryptable_waiting=0,
                       undecryptable_notified=0)

    figures = liaison_only(scraped(exposition(work, process).decode()))

    assert figures["liaison_key_upload_failures_total"] == 1.0
    assert figures["liaison_key_upload_refused"] == 1.0
    assert figures["liaison_key_claim_failures_total"] == 1.0
    assert figures["liaison_one_time_keys_on_server"] == 42.0


def test_the_share_of_unreadable_messages_is_taken_over_the_window() -> None:
    keys = KeyHealth(decryption_window_s=900)
    assert keys.undecryptable_share(0.0) is None
    keys.note_event(10.0, decrypted=True, command=True)
    keys.note_event(20.0, decrypted=False, command=False)
    keys.note_event(30.0, decrypted=False, command=False)
    keys.note_event(40.0, decrypted=True, command=False)
    assert keys.undecryptable_share(40.0) == 0.5
    assert keys.last_decrypted_command_s == 10.0
    assert keys.undecryptable_share(925.0) == 1 / 2  # the first one left the window
    assert keys.undecryptable_share(2000.0) is None

    process = replace(PROCESS, keys=keys, undecryptable_share=0.5,
                      since_decrypted_command_s=30.0)
    work = WorkFigures(cases={}, deliveries=DeliveryFigures(0, 0, (0,) * 12, 0), reminders=0,
                       escalations=0, outbox=EMPTY, undecryptable_waiting=0,
                       undecryptable_notified=0)
    figures = liaison_only(scraped(exposition(work, process).decode()))
    assert figures["liaison_undecryptable_share"] == 0.5
    assert figures["liaison_seconds_since_decrypted_command"] == 30.0
