"""Scheduled reports: the `reports:` section of the configuration, and when each weekly
report falls due.

A weekly report is due every week on `day` at `at`, wall-clock time in `timezone`; it
covers the `period` that ends then. Each due time is a *slot*; the shell
(`bot.reports`) sends a slot once, in the transaction that claims it in the database.
The decisions here are pure functions of the schedule and `now`:

- `slot_at_or_before(now)` is the latest slot that has fallen due, `slot_after(now)` the
  next one; both on the wall clock of the zone, so a report at 08:00 stays at 08:00 across
  a daylight-saving change. On the day clocks skip an hour, a time in the gap comes an
  hour later on the wall (the same instant as before the change); on the day they repeat
  one, the first of the two.
- `missed_slots` are those that fell due between two others (the bot was down through
  more than one): only the latest missed one is sent, late; the shell records and logs
  the older ones as skipped, never drops them silently.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

from liaison.commands.durations import Duration, format_duration
from liaison.commands.model import POST_ID_RE, ROOM_ID_RE, Post, Zone
from liaison.commands.report import MAX_REPORT_DAYS

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")
MAX_MISSED = 520
"""At most this many older missed slots are listed (ten years of weeks)."""

Loc: TypeAlias = tuple[str | int, ...]


class WeeklyReport(BaseModel):
    """One entry of `reports.weekly`: a report into `room` every week."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    room: str
    day: str
    at: str
    timezone: Zone = "UTC"
    period: Duration = timedelta(days=7)
    posts: tuple[str, ...] = ()
    """Whose figures; empty: the posts whose `supervisors_room` is `room`, else all."""

    @field_validator("room")
    @classmethod
    def _check_room(cls, value: str) -> str:
        if not ROOM_ID_RE.match(value):
            raise PydanticCustomError(
                "room_id", "room must be a Matrix room id such as \"!abc123:example.org\"")
        return value

    @field_validator("day", mode="before")
    @classmethod
    def _check_day(cls, value: Any) -> Any:
        if not isinstance(value, str) or value.strip().lower() not in WEEKDAYS:
            raise PydanticCustomError(
                "weekday", "day must be one of {days}", {"days": ", ".join(WEEKDAYS)})
        return value.strip().lower()

    @field_validator("at", mode="before")
    @classmethod
    def _check_at(cls, value: Any) -> Any:
        match = _TIME_RE.match(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise PydanticCustomError(
                "time", "at must be a time of day written \"HH:MM\" (in quotes), like \"08:00\"")
        hours, minutes, seconds = match.groups()
        return f"{int(hours):02d}:{minutes}" + (f":{seconds}" if seconds else "")

    @field_validator("period")
    @classmethod
    def _check_period(cls, value: timedelta) -> timedelta:
        if value > timedelta(days=MAX_REPORT_DAYS):
            raise PydanticCustomError(
                "period", "period may be at most {days}d", {"days": MAX_REPORT_DAYS})
        return value

    @field_validator("posts")
    @classmethod
    def _check_posts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for post_id in value:
            if not POST_ID_RE.match(post_id):
                raise PydanticCustomError(
                    "post_id", "{post} is not a post id like UZ-TERMEZ", {"post": repr(post_id)})
        return value

    @property
    def weekday(self) -> int:
        return WEEKDAYS.index(self.day)

    @property
    def time_of_day(self) -> time:
        return time.fromisoformat(self.at)

    @property
    def period_text(self) -> str:
        """`7d`: how the period is shown (and named in the chart's file)."""
        return format_duration(self.period)

    @property
    def key(self) -> str:
        """The schedule's identity in the database: a changed entry is a new schedule."""
        return json.dumps([self.room, self.day, self.at, self.timezone, self.period_text,
                           list(self.posts)], separators=(",", ":"))

    def slot_at_or_before(self, now_ms: int) -> int:
        """The latest due time at or before `now_ms` (epoch ms)."""
        zone = ZoneInfo(self.timezone)
        local = datetime.fromtimestamp(now_ms / 1000, zone)
        day = local.date() - timedelta(days=(local.weekday() - self.weekday) % 7)
        while (slot := self._on(day, zone)) > now_ms:
            day -= timedelta(days=7)
        return slot

    def slot_after(self, now_ms: int) -> int:
        """The first due time after `now_ms`."""
        zone = ZoneInfo(self.timezone)
        local = datetime.fromtimestamp(now_ms / 1000, zone)
        day = local.date() + timedelta(days=(self.weekday - local.weekday()) % 7)
        while (slot := self._on(day, zone)) <= now_ms:
            day += timedelta(days=7)
        return slot

    def missed_slots(self, *, after_ms: int, before_ms: int) -> list[int]:
        """The due times strictly between `after_ms` and `before_ms`, oldest first (at most
        `MAX_MISSED`, the latest ones)."""
        found: list[int] = []
        slot = self.slot_at_or_before(before_ms - 1)
        while slot > after_ms and len(found) < MAX_MISSED:
            found.append(slot)
            slot = self.slot_at_or_before(slot - 1)
        return found[::-1]

    def since_ms(self, slot_ms: int) -> int:
        """Where the period that ends at `slot_ms` begins, counted on the schedule's wall
        clock (Python subtracts from an aware local time that way): across a daylight
        saving change a week still runs from Monday 08:00 to Monday 08:00, with no hour
        counted twice or left out."""
        local = datetime.fromtimestamp(slot_ms / 1000, ZoneInfo(self.timezone))
        return int((local - self.period).timestamp() * 1000)

    def report_posts(self, posts: Sequence[Post]) -> list[str]:
        """Whose figures the report shows: the listed posts; else those whose supervisors
        meet in this room; else the post whose room it is. Never every post by default:
        whoever is in the room reads it (the configuration refuses an entry that names
        none of these)."""
        if self.posts:
            return list(self.posts)
        supervised = [post.id for post in posts if post.supervisors_room == self.room]
        return supervised or [post.id for post in posts if post.room == self.room]

    def _on(self, day: date, zone: ZoneInfo) -> int:
        # fold=0: a time in a skipped hour reads with the offset before the change (an hour
        # later on the wall), a repeated one is its first occurrence.
        return int(datetime.combine(day, self.time_of_day, tzinfo=zone).timestamp() * 1000)


class ReportsConfig(BaseModel):
    """The `reports:` section: reports the bot posts by itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weekly: tuple[WeeklyReport, ...] = ()


# --- cross-checks against the rest of the file --------------------------------------------


def report_problems(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Post ids in `reports.weekly[].posts` that name no configured post, and entries
    without `posts` whose room is no post's room or supervisors' room (they would show
    nobody's figures, or, if they defaulted to all, everybody's to whoever is in the
    room). On the raw YAML data, like the other cross-checks, so it reports with line
    numbers."""
    reports = data.get("reports")
    if not isinstance(reports, dict):
        return []
    known = [post["id"] for post in _listed(data.get("posts"))
             if isinstance(post, dict) and isinstance(post.get("id"), str)]
    problems: list[tuple[Loc, str]] = []
    rooms = {value for post in _listed(data.get("posts")) if isinstance(post, dict)
             for value in (post.get("room"), post.get("supervisors_room"))
             if isinstance(value, str)}
    for index, entry in enumerate(_listed(reports.get("weekly"))):
        if isinstance(entry, dict) and not entry.get("posts") \
                and isinstance(entry.get("room"), str) and ROOM_ID_RE.match(entry["room"]) \
                and entry["room"] not in rooms:
            problems.append((("reports", "weekly", index, "room"),
                             "this room is neither a post's room nor a supervisors_room: "
                             "list the posts the report covers in posts: [...]"))
    for loc, post_id in _listed_posts(reports.get("weekly")):
        if POST_ID_RE.match(post_id) and post_id not in known:
            close = difflib.get_close_matches(post_id, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "expected a configured post id"
            problems.append((loc, f"unknown post id {post_id!r}; {hint}"))
    return problems


def _listed_posts(weekly: Any) -> Iterator[tuple[Loc, str]]:
    for index, entry in enumerate(_listed(weekly)):
        if isinstance(entry, dict):
            for position, post_id in enumerate(_listed(entry.get("posts"))):
                if isinstance(post_id, str):
                    yield ("reports", "weekly", index, "posts", position), post_id


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
