"""Flood control: how many commands one person, and one room, may send in a while
(and, with a gate of their own, how many replies and attachments on cases the bot
carries for them into other rooms).

Each limit is a token bucket: `Rate(10, 1 minute)` holds 10 tokens and refills them
evenly over the minute, so a burst of 10 commands goes through and after that one
more every 6 seconds. A command needs a token from its sender's bucket and from its
room's. One that finds either empty is not run: the first such command gets a polite
notice, and the sender's further refused commands stay unanswered until that limit's
window has passed, so a flood of commands never becomes a flood of answers.

Time is the caller's: `FloodGate.admit` takes it in milliseconds, and the router
passes the event's server timestamp, so commands sent while the bot was down are
not mistaken for a flood when it catches up. Nothing here reads a clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from liaison.commands.durations import format_duration, parse_duration
from liaison.commands.localtime import Elapsed
from liaison.commands.render import Notice, render_notice
from liaison.commands.texts import text

MAX_RATE_COUNT = 100_000
MAX_TRACKED_BUCKETS = 10_000
"""Above this many buckets, full (idle) ones are forgotten: a full bucket is a new one."""

_RATE_RE = re.compile(r"\s*(\d{1,6})\s*/\s*(.+?)\s*")


@dataclass(frozen=True)
class Rate:
    """At most `count` commands per `per`: a burst of `count`, then one every per/count."""

    count: int
    per: timedelta

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_RATE_COUNT:
            raise ValueError(f"the count must be between 1 and {MAX_RATE_COUNT}")
        if self.per <= timedelta(0):
            raise ValueError("the period must be longer than zero")

    @classmethod
    def parse(cls, value: str) -> Rate:
        """Read `COUNT/DURATION` (`10/1m`, `30/90s`); ValueError with a readable message."""
        match = _RATE_RE.fullmatch(value)
        if match is None:
            raise ValueError(f"{value!r} is not a rate; write it as COUNT/DURATION, like 10/1m")
        return cls(int(match.group(1)), parse_duration(match.group(2)))

    @property
    def per_ms(self) -> int:
        return int(self.per.total_seconds() * 1000)

    def __str__(self) -> str:
        return f"{self.count}/{format_duration(self.per)}"


@dataclass
class TokenBucket:
    """Tokens for one sender or room; starts full, refills continuously, never overfills."""

    rate: Rate
    tokens: float
    updated_ms: int

    @classmethod
    def full(cls, rate: Rate, now_ms: int) -> TokenBucket:
        return cls(rate, float(rate.count), now_ms)

    def available(self, now_ms: int) -> float:
        """Tokens at `now_ms`; time that runs backwards adds nothing."""
        elapsed = max(0, now_ms - self.updated_ms)
        return min(float(self.rate.count),
                   self.tokens + elapsed * self.rate.count / self.rate.per_ms)

    def refill(self, now_ms: int) -> None:
        self.tokens = self.available(now_ms)
        self.updated_ms = max(self.updated_ms, now_ms)

    def take(self, now_ms: int) -> bool:
        """Spend one token if there is one."""
        self.refill(now_ms)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Scope(StrEnum):
    USER = "user"
    ROOM = "room"


@dataclass(frozen=True)
class FloodVerdict:
    """Whether a command may run; if not, which limit stopped it and whether to say so."""

    admitted: bool
    scope: Scope | None = None
    rate: Rate | None = None
    notify: bool = False


ADMITTED = FloodVerdict(admitted=True)


@dataclass
class FloodGate:
    """The per-user and per-room limits of one bot; a limit of None is no limit."""

    per_user: Rate | None
    per_room: Rate | None
    _buckets: dict[tuple[Scope, str], TokenBucket] = field(default_factory=dict)
    _quiet_until_ms: dict[str, int] = field(default_factory=dict)

    def admit(self, user_id: str, room_id: str, now_ms: int) -> FloodVerdict:
        """Spend a token of the sender's and of the room's bucket, or refuse (spending none)."""
        buckets = [(scope, self._bucket(scope, key, rate, now_ms))
                   for scope, key, rate in ((Scope.USER, user_id, self.per_user),
                                            (Scope.ROOM, room_id, self.per_room))
                   if rate is not None]
        for scope, bucket in buckets:
            if bucket.available(now_ms) < 1:
                return self._refuse(user_id, scope, bucket.rate, now_ms)
        for _, bucket in buckets:
            bucket.take(now_ms)
        return ADMITTED

    def _refuse(self, user_id: str, scope: Scope, rate: Rate, now_ms: int) -> FloodVerdict:
        """Refused; the sender hears of it once per window of the limit that refused."""
        notify = now_ms >= self._quiet_until_ms.get(user_id, now_ms)
        if notify:
            self._quiet_until_ms[user_id] = now_ms + rate.per_ms
        return FloodVerdict(admitted=False, scope=scope, rate=rate, notify=notify)

    def _bucket(self, scope: Scope, key: str, rate: Rate, now_ms: int) -> TokenBucket:
        bucket = self._buckets.get((scope, key))
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_BUCKETS:
                self._forget_idle(now_ms)
            bucket = self._buckets[(scope, key)] = TokenBucket.full(rate, now_ms)
        return bucket

    def _forget_idle(self, now_ms: int) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.available(now_ms) >= bucket.rate.count:
                del self._buckets[key]
        for user_id, until in list(self._quiet_until_ms.items()):
            if until <= now_ms:
                del self._quiet_until_ms[user_id]


def flood_notice(verdict: FloodVerdict, language: str, *, messages: str = "flood") -> Notice:
    """What the sender reads, once per window, when a command (or, with `messages`
    "flood.case", a reply or attachment on a case) is over a limit."""
    if verdict.scope is None or verdict.rate is None:
        raise ValueError("only a refusal has a notice")
    return render_notice(text(f"{messages}.{verdict.scope.value}", language,
                              count=verdict.rate.count, per=Elapsed(verdict.rate.per)),
                         language=language)
