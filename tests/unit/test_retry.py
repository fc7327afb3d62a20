"""The sender's retry decision (`commands.retry`), without a client."""

from __future__ import annotations

import pytest

from liaison.commands.retry import PERMANENT_AFTER_ATTEMPTS, retry_delay_ms

BACKOFF = {"backoff_initial_ms": 500, "backoff_max_ms": 60_000}


@pytest.mark.parametrize(("attempts", "expected"), [
    (1, 500), (2, 1_000), (3, 2_000), (7, 32_000), (8, 60_000), (40, 60_000)])
def test_backoff_doubles_up_to_its_cap(attempts: int, expected: int) -> None:
    assert retry_delay_ms(attempts, permanent=False, retry_after_ms=None, max_attempts=None,
                          **BACKOFF) == expected


def test_the_homeservers_retry_after_is_honoured_but_not_below_a_floor() -> None:
    assert retry_delay_ms(1, permanent=False, retry_after_ms=7_000, max_attempts=None,
                          **BACKOFF) == 7_000
    assert retry_delay_ms(1, permanent=False, retry_after_ms=0, max_attempts=None,
                          **BACKOFF) == 100


def test_a_permanent_error_is_given_up_after_its_attempts_only() -> None:
    last = PERMANENT_AFTER_ATTEMPTS
    assert retry_delay_ms(last - 1, permanent=True, retry_after_ms=None, max_attempts=None,
                          **BACKOFF) is not None
    assert retry_delay_ms(last, permanent=True, retry_after_ms=None, max_attempts=None,
                          **BACKOFF) is None
    assert retry_delay_ms(last, permanent=False, retry_after_ms=None, max_attempts=None,
                          **BACKOFF) is not None  # a transient one is tried on


def test_max_attempts_gives_up_on_any_error() -> None:
    assert retry_delay_ms(3, permanent=False, retry_after_ms=None, max_attempts=3,
                          **BACKOFF) is None
    assert retry_delay_ms(2, permanent=False, retry_after_ms=5, max_attempts=3,
                          **BACKOFF) == 100
