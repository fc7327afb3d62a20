"""Every post's own clock: reading the times officers type, showing times to readers.

Posts span UTC+3 to UTC+6, Afghanistan at +4:30. A time an officer types
(`due: 18:00`, `due: tomorrow 09:00`, `eta: 18:30`) is read in the sender post's
zone; a time the bot shows is in the reading post's zone with its UTC offset, and
the origin's wall clock beside it when the two offsets differ at that instant.
Dates follow the reader's locale (Babel): ISO dates in English, `01.05.2026` in
Russian, `1 مايو 2026` in Arabic; the clock is always 24-hour.

Pure functions: the caller passes `now` and the zones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_date

from liaison.commands.errors import CommandError
from liaison.commands.model import LANGUAGES
from liaison.commands.texts import DAY_WORDS, TIME_FIELD_KEYS, fold_word, text

_DATE_PATTERNS = {"en": "yyyy-MM-dd", "ru": "dd.MM.yyyy", "ar": "d MMMM y"}
"""English keeps ISO dates: its readers come from every locale, and 05/01 is ambiguous."""

CLOCK_RE = re.compile(r"(\d{1,2}):(\d{2})")
_DAY_WORDS = {fold_word(word): days for days, words in DAY_WORDS.items() for word in words}
_TIME_FIELD_KEYS = frozenset(fold_word(key) for key in TIME_FIELD_KEYS)
_DATE_CLOCK_RE = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{1,2}):(\d{2})")


def _local(ms: int, timezone: str) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(timezone))


def utc_offset(moment: datetime) -> str:
    """`+05:00`, `+04:30`, `-03:00`."""
    offset = moment.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _language(language: str) -> str:
    return language if language in LANGUAGES else "en"


def format_date_in(moment: datetime, language: str) -> str:
    language = _language(language)
    return format_date(moment.date(), _DATE_PATTERNS[language], locale=language)


def format_time(ms: int, timezone: str, language: str = "en") -> str:
    """`2026-05-01 15:30 +05:00` (en), `01.05.2026 15:30 UTC+05:00` (ru): the reader's
    wall clock with its offset."""
    local = _local(ms, timezone)
    return text("time.format", language, date=format_date_in(local, language),
                clock=f"{local:%H:%M}", offset=utc_offset(local))


def format_clock(ms: int, timezone: str, language: str = "en") -> str:
    """`15:30 +05:00`: the wall clock and offset without the date."""
    local = _local(ms, timezone)
    return text("time.clock", language, clock=f"{local:%H:%M}", offset=utc_offset(local))


def offsets_differ(ms: int, one: str, other: str) -> bool:
    return _local(ms, one).utcoffset() != _local(ms, other).utcoffset()


def format_time_for(ms: int, timezone: str, language: str = "en", *,
                    origin_timezone: str | None = None) -> str:
    """The reader's time; with the origin's beside it when their offsets differ then
    (the origin's date only when it is another day there)."""
    shown = format_time(ms, timezone, language)
    if origin_timezone is None or not offsets_differ(ms, timezone, origin_timezone):
        return shown
    there = _local(ms, origin_timezone)
    origin = (format_time(ms, origin_timezone, language)
              if there.date() != _local(ms, timezone).date()
              else format_clock(ms, origin_timezone, language))
    return text("time.beside", language, time=shown, origin=origin)


@dataclass(frozen=True)
class Moment:
    """A time as a template value, shown in the reader's language (see `commands.texts`)."""

    ms: int
    timezone: str
    origin_timezone: str | None = None

    def localized(self, language: str) -> str:
        return format_time_for(self.ms, self.timezone, language,
                               origin_timezone=self.origin_timezone)

    def __str__(self) -> str:
        return self.localized("en")


_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_elapsed(delta: timedelta, language: str = "en") -> str:
    """A duration for the reader: `1h30m` in English (as officers type it), `1 ч 30 мин`,
    `1 س 30 د`."""
    total = max(0, int(delta.total_seconds()))
    parts = []
    for unit, size in _UNITS:
        count, total = divmod(total, size)
        if count:
            parts.append(text(f"unit.{unit}", language, n=count))
    return text("unit.join", language).join(parts or [text("unit.s", language, n=0)])


@dataclass(frozen=True)
class Elapsed:
    """A duration as a template value, shown in the reader's language."""

    delta: timedelta

    def localized(self, language: str) -> str:
        return format_elapsed(self.delta, language)

    def __str__(self) -> str:
        return self.localized("en")


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --- reading typed times ------------------------------------------------------------------


def wall_clock(day: date, hour: int, minute: int, tz: ZoneInfo, typed: str) -> datetime:
    """The instant a wall-clock time names in `tz`. Raises CommandError when the clocks skip
    it (a DST gap) or pass it twice (the hour repeated when they go back), and ValueError
    for an hour or minute out of range."""
    naive = datetime.combine(day, time(hour, minute))
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        raise CommandError.of("error.due_nonexistent", value=typed, tz=tz.key)
    if first.utcoffset() != second.utcoffset():
        example = f"{day.isoformat()}T{hour:02d}:{minute:02d}{utc_offset(first)}"
        raise CommandError.of("error.due_ambiguous", value=typed, tz=tz.key, example=example)
    return first


def read_day_clock(value: str, *, now: datetime, tz: ZoneInfo) -> datetime | None:
    """`18:30` (today), `tomorrow 09:00` / `завтра 09:00` / `غدا 09:00`, `today 18:00`, in
    `tz`; None when the value is not written that way. Raises CommandError for a time the
    clocks skip or repeat, ValueError for 25:00."""
    words = value.split()
    days = 0
    if len(words) == 2 and fold_word(words[0]) in _DAY_WORDS:
        days = _DAY_WORDS[fold_word(words[0])]
        words = words[1:]
    if len(words) != 1:
        return None
    clock = CLOCK_RE.fullmatch(words[0])
    if clock is None:
        return None
    day = now.astimezone(tz).date() + timedelta(days=days)
    return wall_clock(day, int(clock[1]), int(clock[2]), tz, value)


def starts_day_clock(word: str) -> bool:
    """Whether `word` is `tomorrow`/`завтра`/`غدا`/`today`, which a clock time follows."""
    return fold_word(word) in _DAY_WORDS


def is_time_field(key: str) -> bool:
    """Whether a case field holds a time of day to convert for each reader (`eta`)."""
    return fold_word(key) in _TIME_FIELD_KEYS


def field_time_ms(value: str, *, created_ms: int, timezone: str) -> int | None:
    """The instant an `eta:` value names, read in the origin's zone on the day the case
    was sent (`18:30`, `tomorrow 06:00`, `2026-05-02 06:00`); None when it names none
    (free text such as `about an hour`, or a time the clocks skip or repeat)."""
    tz = ZoneInfo(timezone)
    created = datetime.fromtimestamp(created_ms / 1000, UTC)
    cleaned = " ".join(value.split())
    try:
        dated = _DATE_CLOCK_RE.fullmatch(cleaned)
        if dated is not None:
            day = date.fromisoformat(dated[1])
            return to_ms(wall_clock(day, int(dated[2]), int(dated[3]), tz, value))
        moment = read_day_clock(cleaned, now=created, tz=tz)
    except (CommandError, ValueError):
        return None
    return None if moment is None else to_ms(moment)
