"""The monitoring listener of a real bot: `/metrics` counts an alert and its
acknowledgement exactly, and `/healthz` fails while the homeserver is away and recovers
when it is back."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import aiohttp

from devkit.synapse import LocalSynapse, free_port
from liaison.storage.metrics import ACK_BUCKETS_S
from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_case_flow import db_rows, relayed, told
from tests.e2e.test_hostile_input import posts_for
from tests.e2e.test_resilience import left_running, wait_for_log
from tests.unit.test_metrics import scraped

STALLED_AFTER_S = 5


async def fetch(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def scrape(port: int) -> dict[str, float]:
    status, text = await fetch(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, text
    return scraped(text)


async def health_becomes(port: int, status: int, *, timeout: float = 60.0) -> dict[str, Any]:
    """The first `/healthz` body answered with `status`, polling."""
    deadline = time.monotonic() + timeout
    while True:
        answered, body = await fetch(f"http://127.0.0.1:{port}/healthz")
        if answered == status:
            found: dict[str, Any] = json.loads(body)
            return found
        assert time.monotonic() < deadline, f"/healthz still {answered}: {body}"
        await asyncio.sleep(0.25)


async def outbox_drained(port: int, *, timeout: float = 30.0) -> dict[str, float]:
    """A scrape taken once nothing waits in the outbox."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(port)
        if samples["liaison_outbox_pending"] == 0:
            return samples
        assert time.monotonic() < deadline, f"outbox still holds {samples}"
        await asyncio.sleep(0.2)


PROCESS_GAUGES = ("liaison_sync_", "liaison_one_time_keys_on_server",
                  "liaison_seconds_since_decrypted_command", "liaison_undecryptable_share")
"""Series that move with every sync, every officer's new session or every command."""


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The liaison_ series that changed, and by how much (but the process's own gauges,
    which move with every sync)."""
    return {name: after[name] - before[name] for name in after
            if name.startswith("liaison_") and not name.startswith(PROCESS_GAUGES)
            and after[name] != before[name]}


async def test_metrics_count_an_alert_and_its_acknowledgement_and_health_follows_the_homeserver(
    synapse: LocalSynapse, officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    port = free_port()
    posts = await posts_for(officer_factory, bot_factory, config={
        "metrics": {"enabled": True, "port": port, "sync_stalled_after": f"{STALLED_AFTER_S}s"},
        "sync": {"timeout": "1s", "backoff_max": "1s"},
    })
    listening = await wait_for_log(posts.bot, lambda r: r.get("msg") == "metrics listening")
    assert listening["metrics"] == f"http://127.0.0.1:{port}/metrics"
    await health_becomes(port, 200)
    before = await outbox_drained(port)

    answer = await posts.ask(posts.kz, posts.kz_room,
                             "!alert urgent to:UZ-TERMEZ,TJ-PANJ\nWhite Kamaz, 01A123BC")
    assert (answer.body or "").startswith("KZ-0001: Urgent alert sent to:"), answer.body
    await relayed(posts, posts.uz, posts.uz_room, "KZ-0001")
    await relayed(posts, posts.tj, posts.tj_room, "KZ-0001")
    acked = await posts.ask(posts.uz, posts.uz_room, "!ack KZ-0001")
    assert (acked.body or "").startswith("Acknowledged KZ-0001"), acked.body
    await told(posts, posts.kz, posts.kz_room, "KZ-0001", "ack")
    after = await outbox_drained(port)

    [(took_ms,)] = db_rows(posts, "SELECT acknowledged_ms - routed_ms FROM deliveries"
                                  " WHERE acknowledged_ms IS NOT NULL")
    within = [bound for bound in ACK_BUCKETS_S if took_ms <= bound * 1000]
    assert moved(before, after) == {
        "liaison_cases_total{kind=alert,priority=urgent}": 1.0,
        "liaison_deliveries_total": 2.0,
        "liaison_acknowledgements_total": 1.0,
        **{f"liaison_time_to_acknowledge_seconds_bucket{{le={float(bound)}}}": 1.0
           for bound in within},
        "liaison_time_to_acknowledge_seconds_bucket{le=+Inf}": 1.0,
        "liaison_time_to_acknowledge_seconds_count": 1.0,
        "liaison_time_to_acknowledge_seconds_sum": took_ms / 1000,
    }
    assert after["liaison_send_failures_total{kind=permanent}"] == 0.0
    assert after["liaison_escalations_total"] == after["liaison_reminders_total"] == 0.0

    async with left_running(synapse):
        await synapse.stop()
        down = await health_becomes(port, 503)
        assert down["checks"]["sync"]["ok"] is False
        assert down["checks"]["sync"]["reason"].startswith("no sync has succeeded for ")
        assert down["checks"]["outbox"] == {"ok": True, "pending": 0,
                                            "oldest_pending_age_seconds": None}
        stalled = await scrape(port)  # the database still answers
        assert stalled["liaison_sync_lag_seconds"] >= STALLED_AFTER_S
        assert stalled["liaison_deliveries_total"] == after["liaison_deliveries_total"]
        await synapse.start()
    back = await health_becomes(port, 200)
    assert back["ok"] is True
    assert back["checks"]["sync"]["seconds_since_success"] < STALLED_AFTER_S


async def test_a_metrics_port_in_use_refuses_start_up_naming_the_address(
    bot_factory: BotFactory,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bot = await bot_factory(config={"metrics": {"enabled": True, "port": port}},
                                start=False)
        await bot.start(wait_ready=False)
        assert await bot.wait_exit(60) == 3  # start-up refused
    assert (f"liaison: start-up refused: metrics: cannot listen on http://127.0.0.1:{port}: "
            in bot.log_tail()), bot.log_tail()
    assert not bot.ready_file.exists()


async def test_a_wrong_homeserver_url_is_logged_as_an_error_and_healthz_says_why(
    bot_factory: BotFactory,
) -> None:
    """Nothing listens at the configured URL: the bot keeps trying, says so at error level
    after three tries, and `/healthz` fails at once with the URL and the reason."""
    port, nowhere = free_port(), free_port()
    wrong = f"http://127.0.0.1:{nowhere}"
    bot = await bot_factory(config={"homeserver": {"url": wrong},
                                     "metrics": {"enabled": True, "port": port}}, start=False)
    await bot.start(wait_ready=False)
    try:
        for _ in range(600):  # until the process listens (it is importing, then opening)
            try:
                await fetch(f"http://127.0.0.1:{port}/healthz")
                break
            except aiohttp.ClientConnectorError:
                assert bot.running, bot.log_tail()
                await asyncio.sleep(0.1)
        body = await health_becomes(port, 503)
        while body["checks"].get("homeserver", {}).get("ok", True):
            body = await health_becomes(port, 503)
        reason = body["checks"]["homeserver"]["reason"]
        assert reason.startswith(f"cannot reach the homeserver at {wrong} to open the session")
        record = await wait_for_log(bot, lambda r: r.get("level") == "error"
                                    and str(r.get("msg", "")).startswith("cannot reach"))
        assert record["msg"] == (f"cannot reach {wrong} after 3 tries (to open the session); "
                                 "still trying: check homeserver.url and the network")
        assert bot.running  # it keeps trying
    finally:
        await bot.stop()
