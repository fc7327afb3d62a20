"""Start-up waits out a homeserver that is not there yet (down, behind a proxy's 502, rate
limiting) and stops at once on an answer that retrying would not change."""

from __future__ import annotations

import errno
import socket
from typing import Any

import pytest

from bot import app
from bot.app import retrying, transient
from bot.rawapi import ApiError, ApiResult
from bot.session import StartupError


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
