"""Durations as officers and operators write them: `90s`, `10m`, `4h`, `2d`, `1h30m`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

_PART_RE = re.compile(r"(\d{1,6})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


MAX_SECONDS = 20_000 * 365 * 86400
"""No duration is read past this (it still fits a timedelta); the commands that take one
check their own, much smaller, limits."""


def parse_duration(text: str) -> timedelta:
    """Parse `90s`, `10m`, `4h`, `2d`, `1w` or combinations such as `1h30m`.

    Raises ValueError with a message meant for a person when the text is not a
    positive duration.
    """
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned:
        raise ValueError("empty duration; write it like 90s, 10m, 4h or 2d")
    position = 0
    seconds = 0
    for match in _PART_RE.finditer(cleaned):
        if match.start() != position:
            break
        seconds += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(cleaned):
        raise ValueError(f"{text!r} is not a duration; write it like 90s, 10m, 4h or 2d")
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{text!r} is too long")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Render a timedelta compactly (`1h30m`, `45s`); the inverse of parse_duration."""
    total = int(delta.total_seconds())
    if total <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _to_duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "duration", "durations are written with a unit, like 90s, 10m, 4h or 2d"
        )
    try:
        return parse_duration(value)
    except ValueError as error:
        raise PydanticCustomError("duration", str(error)) from None


Duration = Annotated[timedelta, BeforeValidator(_to_duration)]
"""A positive timedelta written in YAML as `30s`, `10m`, `4h`, `2d` or `1h30m`."""
