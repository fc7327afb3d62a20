"""Start-up waits out a homeserver that is not there yet (down, behind a proxy's 502, rate
limiting) and stops at once on an answer that retrying would not change."""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

import pytest

from liaison.bot import app
from liaison.bot.app import retrying, transient
from liaison.bot.health import HealthLimits, HomeserverReach, assess
from liaison.bot.rawapi import ApiError, ApiResult
from liaison.bot.session import StartupError
from liaison.storage.outbox import OutboxStats


def api_error(status: int) -> ApiError:
    return ApiError("keys/query", ApiResult(status, {"errcode": "M_UNKNOWN"}))


@pytest.mark.parametrize(("error", "expected"), [
    (ConnectionRefusedError(), True),
    (TimeoutError(), True),
    (api_error(502), True),
    (api_error(429), True),
    (api_error(403), False),
    (api_error(400), False),
    (OSError(errno.EHOSTUNREACH, "No route to host"), True),
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), True),
    (PermissionError(errno.EACCES, "Permission denied", "/var/lib/liaison/cross-signing.json"),
     False),
    (OSError(errno.ENOSPC, "No space left on device"), False),
    (StartupError("the crypto store is missing"), False),
    (ValueError("bug"), False),
])
def test_what_counts_as_the_homeserver_not_being_there(error: Exception, expected: bool) -> None:
    assert transient(error) is expected


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr(app.asyncio, "sleep", sleep)
    return delays


async def test_a_step_is_retried_with_growing_delays_until_it_succeeds(
    slept: list[float],
) -> None:
    failures: list[Exception] = [ConnectionRefusedError(), api_error(502), api_error(503)]

    async def step() -> str:
        if failures:
            raise failures.pop(0)
        return "signed"

    assert await retrying("check cross-signing", step) == "signed"
    assert slept == [1.0, 2.0, 4.0]


async def test_an_answer_is_not_retried_and_attempts_bound_the_wait(slept: list[float]) -> None:
    calls: list[int] = []

    async def refused() -> Any:
        calls.append(1)
        raise api_error(403)

    with pytest.raises(ApiError):
        await retrying("check cross-signing", refused)
    assert (calls, slept) == ([1], [])

    async def down() -> Any:
        raise ConnectionRefusedError()

    with pytest.raises(StartupError, match="cannot reach the homeserver"):
        await retrying("open the session", down, attempts=3)
    assert slept == [1.0, 2.0]


async def test_an_unreachable_homeserver_is_an_error_after_three_tries_and_healthz_says_why(
    slept: list[float], caplog: pytest.LogCaptureFixture,
) -> None:
    reach = HomeserverReach("https://matrix.wrong.example")
    failures = 6

    async def down() -> str:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionRefusedError(111, "Connect call failed")
        return "open"

    health_while_down: list[dict[str, Any]] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)
        health_while_down.append(reach.check())

    app.asyncio.sleep = sleep  # type: ignore[assignment]  # restored by the fixture
    with caplog.at_level(logging.WARNING, logger="liaison.bot.app"):
        assert await retrying("open the session", down, reach=reach) == "open"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "cannot reach https://matrix.wrong.example after 3 tries (to open the session); "
        "still trying: check homeserver.url and the network"]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 5
    assert health_while_down[0]["ok"] is False
    assert health_while_down[-1] == {
        "ok": False, "failures": 6,
        "reason": "cannot reach the homeserver at https://matrix.wrong.example to open the "
                  "session (6 tries so far): ConnectionRefusedError: [Errno 111] Connect "
                  "call failed"}
    assert reach.check() == {"ok": True} and reach.reached


def test_healthz_fails_at_once_while_start_up_cannot_reach_the_homeserver() -> None:
    reach = HomeserverReach("http://127.0.0.1:1")
    reach.failed("open the session", "ClientConnectorError: refused")
    health = assess(now_s=12.0, started_s=10.0, last_sync_s=None,
                    outbox=OutboxStats(pending=0, failed=0, oldest_pending_age_ms=None),
                    limits=HealthLimits(sync_stalled_after_s=300, outbox_stuck_after_s=300),
                    homeserver=reach)
    assert not health.ok
    assert health.checks["sync"]["ok"]  # only 2 s since the start: not stalled yet
    assert "cannot reach the homeserver at http://127.0.0.1:1" in (
        health.checks["homeserver"]["reason"])
