"""A post's quiet hours: a daily window in its own time zone when routine chases wait.

`22:00-06:00` runs across midnight; `12:00-13:00` does not. The window is read in
the post's IANA time zone on the day in question, so it follows daylight-saving
changes. Pure: no clock, the instant is passed in as epoch milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class QuietHours:
    """A daily window `start`–`end` (local wall-clock times); `start` is inside, `end` is not."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """Read `22:00-06:00`; raise ValueError with a message for the operator otherwise."""
        match = _WINDOW_RE.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a time window; write it like 22:00-06:00")
        hours_start, minutes_start, hours_end, minutes_end = (int(part) for part in
                                                              match.groups())
        if hours_start > 23 or hours_end > 23 or minutes_start > 59 or minutes_end > 59:
            raise ValueError(f"{text!r} has a time that does not exist; use 00:00 to 23:59")
        start, end = time(hours_start, minutes_start), time(hours_end, minutes_end)
        if start == end:
            raise ValueError(f"{text!r} starts and ends at the same time; give a real window")
        return cls(start, end)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start

    def contains(self, local: time) -> bool:
        """Whether a wall-clock time falls inside the window."""
        if self.crosses_midnight:
            return local >= self.start or local < self.end
        return self.start <= local < self.end

    def is_quiet(self, ms: int, timezone: str) -> bool:
        return self.contains(_local(ms, timezone).time())

    def defer(self, ms: int, timezone: str) -> int:
        """`ms` itself when it is outside the window, else the instant the window ends."""
        local = _local(ms, timezone)
        if not self.contains(local.time()):
            return ms
        end_day = local.date()
        if self.crosses_midnight and local.time() >= self.start:
            end_day += timedelta(days=1)
        end = datetime.combine(end_day, self.end, tzinfo=ZoneInfo(timezone))
        # On the night the clocks go back, the same wall-clock time happens twice: a moment
        # in the second pass ends at the window's end in the second pass.
        for candidate in (end, end.replace(fold=1)):
            end_ms = _ms(candidate)
            if end_ms > ms:
                return end_ms
        return _ms(end.replace(fold=1)) + int(timedelta(days=1).total_seconds() * 1000)


def _local(ms: int, timezone: str) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(timezone))


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
