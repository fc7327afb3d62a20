"""`liaison stats`: the figures of `!report` in the terminal.

Read from a read-only snapshot of the database (safe while the bot runs, no secrets
needed) and computed by the same code as `!report` (`storage.chasing.post_reports`);
this module only lays them out — an aligned table with human durations, or JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from liaison.commands.chase_policy import ChasePolicies
from liaison.commands.chase_render import elapsed
from liaison.commands.report import PostReport
from liaison.storage.chasing import post_reports
from liaison.storage.db import (
    latest_version,
    load_migrations,
    read_only,
    refuse_newer_schema,
    schema_version_of,
)
from liaison.storage.export import iso

NONE = "-"
"""A time that cannot be given (nothing acknowledged or answered)."""

COLUMNS = ("post", "sent", "received", "acked", "ack median", "ack p90", "requests",
           "answered", "answer median", "answer p90", "overdue", "escalations")


class SchemaTooOld(RuntimeError):
    """The database predates this Liaison's schema: the bot upgrades it when it starts."""


@dataclass(frozen=True)
class Stats:
    period: str
    """As typed and normalised: `7d`, `1d12h`."""
    since_ms: int
    until_ms: int
    posts: list[PostReport]


async def read_stats(database: Path, posts: Sequence[str], *, policies: ChasePolicies,
                     period: str, since_ms: int, until_ms: int) -> Stats:
    """The figures of `posts` over the period, from the database at `database`."""
    migrations = load_migrations()
    latest = latest_version(migrations)
    async with read_only(database) as conn:
        found = await schema_version_of(conn)
        refuse_newer_schema(found, migrations)
        if found < latest:
            raise SchemaTooOld(
                f"the database at {database} has schema {found}, this Liaison reads "
                f"{latest}: start `liaison run` once to upgrade it")
        reports = await post_reports(conn, posts, policies=policies, since_ms=since_ms,
                                     now_ms=until_ms)
    return Stats(period, since_ms, until_ms, reports)


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(ms: int | None) -> str:
    return NONE if ms is None else elapsed(ms)


def _row(report: PostReport) -> tuple[str, ...]:
    return (report.post, str(report.sent), str(report.received), str(report.acknowledged),
            _duration(report.ack_median_ms), _duration(report.ack_p90_ms),
            str(report.requests), str(report.answered), _duration(report.answer_median_ms),
            _duration(report.answer_p90_ms), str(report.overdue), str(report.escalations))


def stats_table(stats: Stats) -> str:
    """A title line, then one aligned row per post: the post id left, figures right."""
    rows = [COLUMNS, *(_row(report) for report in stats.posts)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    lines = [f"Report for the last {stats.period} ({_time(stats.since_ms)} to "
             f"{_time(stats.until_ms)})"]
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    for report in stats.posts:  # the on-time share per post and deadline class
        lines += [f"{report.post} {figure.deadline_class}: answered on time "
                  f"{figure.on_time} of {figure.answered}" for figure in report.on_time]
    return "\n".join(lines) + "\n"


def stats_json(stats: Stats) -> str:
    """Everything, times in milliseconds (null where there is none), instants in ISO 8601."""
    return json.dumps({
        "period": stats.period, "since": iso(stats.since_ms), "until": iso(stats.until_ms),
        "posts": [asdict(report) for report in stats.posts],
    }, indent=2, ensure_ascii=False) + "\n"
