"""Durations typed by officers and operators: a typo or an attack never becomes a crash."""

from __future__ import annotations

from datetime import timedelta

import pytest

from liaison.commands.durations import MAX_SECONDS, parse_duration


def test_a_duration_is_read_in_its_units() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("2w") == timedelta(days=14)


@pytest.mark.parametrize("text", ["999999w" * 200, "999999w" * 2])
def test_an_absurdly_long_duration_is_a_plain_refusal(text: str) -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration(text)


def test_the_longest_duration_still_fits() -> None:
    assert parse_duration("999999w") < timedelta(seconds=MAX_SECONDS)
