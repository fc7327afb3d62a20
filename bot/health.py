"""`/healthz`: is the bot keeping up? Decided here from figures the shell reads, with
`now` passed in: no I/O, no clock.

Four things make the bot unhealthy: no sync has succeeded for `sync_stalled_after` (nor,
before the first one, since the bot started), the oldest message in the outbox has
waited longer than `outbox_stuck_after`, the homeserver refused the bot's last upload
of one-time keys (new devices then cannot open sessions with it: it is going deaf), or
start-up cannot reach the homeserver (said at once, with the reason — a wrong URL, a
refused connection — rather than only after `sync_stalled_after`). Each recovers by
itself: the next successful sync, the outbox draining, an accepted upload, or the
homeserver answering makes the bot healthy again.

With links (`docs/links.md`), each link is a check of its own: unhealthy while the
oldest protocol event queued for its room has waited longer than `outbox_stuck_after`,
or while the partner's published identity is not the pinned one (the link is refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from liaison.bot.key_health import KeyHealth
from liaison.commands.durations import format_duration
from liaison.storage.outbox import OutboxStats


@dataclass(frozen=True)
class HealthLimits:
    sync_stalled_after_s: float
    outbox_stuck_after_s: float


@dataclass
class HomeserverReach:
    """Start-up's view of the homeserver, kept by `bot.app.retrying`: how many tries in a
    row failed, the last error and at which step; `reached` once a step succeeded."""

    url: str
    failures: int = 0
    error: str | None = None
    step: str | None = None
    reached: bool = False

    def failed(self, step: str, error: str) -> None:
        self.failures += 1
        self.step, self.error = step, error

    def succeeded(self) -> None:
        self.failures, self.error, self.step, self.reached = 0, None, None, True

    def check(self) -> dict[str, Any]:
        if not self.failures:
            return {"ok": True}
        return {"ok": False, "failures": self.failures,
                "reason": f"cannot reach the homeserver at {self.url} to {self.step} "
                          f"({self.failures} tries so far): {self.error}"}


@dataclass(frozen=True)
class LinkState:
    """What `/healthz` knows of one link: its queue (unsent outbox rows to its room) and
    an identity problem the bot found (None: none found)."""

    name: str
    pending: int
    oldest_pending_age_ms: int | None
    identity_problem: str | None = None


@dataclass(frozen=True)
class Health:
    ok: bool
    checks: dict[str, dict[str, Any]]

    def body(self) -> dict[str, Any]:
        """The JSON answer: `{"ok": true, "checks": {"sync": {...}, "outbox": {...}}}`;
        a failing check says why in its `reason`."""
        return {"ok": self.ok, "checks": self.checks}


def assess(*, now_s: float, started_s: float, last_sync_s: float | None,
           outbox: OutboxStats | None, limits: HealthLimits,
           homeserver: HomeserverReach | None = None,
           keys: KeyHealth | None = None,
           links: tuple[LinkState, ...] = ()) -> Health:
    """Health at `now_s` (monotonic seconds, like `started_s` and `last_sync_s`, the end
    of the last successful sync or None); `outbox` is None when it could not be read;
    `homeserver`: start-up's tries to reach it; `keys` are the figures of the bot's own
    key uploads and claims."""
    checks = {"sync": _sync(now_s, started_s, last_sync_s, limits.sync_stalled_after_s),
              "outbox": _outbox(outbox, limits.outbox_stuck_after_s, up_s=now_s - started_s)}
    if homeserver is not None:
        checks["homeserver"] = homeserver.check()
    if keys is not None:  # the running bot always knows; a bare check has no key figures
        checks["keys"] = _keys(keys)
    for link in links:
        checks[f"link:{link.name}"] = _link(link, limits.outbox_stuck_after_s,
                                            up_s=now_s - started_s)
    return Health(ok=all(check["ok"] for check in checks.values()), checks=checks)


def _sync(now_s: float, started_s: float, last_sync_s: float | None,
          limit_s: float) -> dict[str, Any]:
    if last_sync_s is None:
        waited = now_s - started_s
        check: dict[str, Any] = {"ok": waited < limit_s, "seconds_since_success": None}
        if not check["ok"]:
            check["reason"] = (f"no sync has succeeded since the start {_span(waited)} ago "
                               f"(limit {_span(limit_s)})")
        return check
    since = now_s - last_sync_s
    check = {"ok": since < limit_s, "seconds_since_success": round(since, 3)}
    if not check["ok"]:
        check["reason"] = f"no sync has succeeded for {_span(since)} (limit {_span(limit_s)})"
    return check


def _outbox(stats: OutboxStats | None, limit_s: float, *, up_s: float) -> dict[str, Any]:
    """Stuck when the oldest queued message has waited `limit_s` while this process ran:
    after a restart the queue left by the last run has that long to drain first."""
    if stats is None:
        return {"ok": False, "reason": "the outbox could not be read from the database"}
    age_s = None if stats.oldest_pending_age_ms is None else stats.oldest_pending_age_ms / 1000
    check: dict[str, Any] = {"ok": age_s is None or min(age_s, up_s) < limit_s,
                             "pending": stats.pending, "oldest_pending_age_seconds": age_s}
    if not check["ok"]:
        check["reason"] = (f"the oldest of {stats.pending} queued messages has waited "
                           f"{_span(age_s or 0)} (limit {_span(limit_s)})")
    return check


def _link(link: LinkState, limit_s: float, *, up_s: float) -> dict[str, Any]:
    """Stuck like the outbox (measured while this process ran), per link; refused while
    the partner's identity is not the pinned one."""
    age_s = None if link.oldest_pending_age_ms is None else link.oldest_pending_age_ms / 1000
    stuck = age_s is not None and min(age_s, up_s) >= limit_s
    check: dict[str, Any] = {"ok": not stuck and link.identity_problem is None,
                             "pending": link.pending, "oldest_pending_age_seconds": age_s}
    reasons = []
    if stuck:
        reasons.append(f"the oldest of {link.pending} protocol events queued for the "
                       f"partner has waited {_span(age_s or 0)} (limit {_span(limit_s)})")
    if link.identity_problem is not None:
        reasons.append(f"link refused: {link.identity_problem}")
    if reasons:
        check["reason"] = "; ".join(reasons)
    return check


def _keys(keys: KeyHealth) -> dict[str, Any]:
    """Unhealthy while the homeserver refuses the bot's one-time keys (an answer, not an
    outage: waiting does not fix it)."""
    check: dict[str, Any] = {"ok": keys.upload_rejected is None,
                             "upload_failures": keys.upload_failures,
                             "claim_failures": keys.claim_failures,
                             "one_time_keys_on_server": keys.one_time_keys_on_server}
    if keys.upload_rejected is not None:
        check["reason"] = (f"the homeserver refused the bot's one-time keys "
                           f"({keys.upload_rejected}); new devices cannot open sessions "
                           "with it")
    return check


def _span(seconds: float) -> str:
    """`1m30s`, in whole seconds."""
    return format_duration(timedelta(seconds=int(seconds)))
