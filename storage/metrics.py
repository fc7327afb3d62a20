"""What `/metrics` reports about the work itself, read from the database at scrape time.

Each figure is one aggregate query over rows that are never deleted (retention removes
content, not rows), so the counts are exact, survive restarts, and nothing has to
remember to count them inside a transaction. Scrapes read through a connection of their
own (`storage.db.read_only`), never the bot's locked one. The queries read small indexes
(migration 0007), except the time to acknowledge: one pass over `deliveries`, about
30 ms at 100,000 deliveries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiosqlite

from liaison.commands.model import Priority
from liaison.commands.notify import OutboxKind
from liaison.storage import outbox
from liaison.storage.db import fetch_one
from liaison.storage.outbox import OutboxStats

PRIORITIES = tuple(priority.value for priority in Priority)
CASE_KINDS = ("alert", "request")
ACK_BUCKETS_S = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)
"""Upper bounds of the time-to-acknowledge histogram, in seconds: from a flash alert
taken at once to a routine request taken the next day (`+Inf` comes on top)."""

UNDECRYPTABLE_KIND = OutboxKind.UNDECRYPTABLE
"""The outbox kind of the notice telling a sender the bot could not read their message
(`bot.undecryptable`)."""


@dataclass(frozen=True)
class DeliveryFigures:
    """Deliveries (one case at one target post): how many were routed, how many
    acknowledged (an answer acknowledges too), and how long from routed to acknowledged,
    as `!report` counts it."""

    routed: int
    acknowledged: int
    ack_within: tuple[int, ...]
    """How many were acknowledged within each bound of `ACK_BUCKETS_S` (cumulative)."""
    ack_sum_ms: int


@dataclass(frozen=True)
class WorkFigures:
    cases: Mapping[tuple[str, str], int]
    """(priority, kind) → cases opened; every pair is present."""
    deliveries: DeliveryFigures
    reminders: int
    """Reminder steps fired."""
    escalations: int
    """Escalation steps fired."""
    outbox: OutboxStats
    undecryptable_waiting: int
    """Messages not decrypted yet whose senders have not been told."""
    undecryptable_notified: int
    """Messages never decrypted: their senders were told."""


async def work_figures(conn: aiosqlite.Connection, *, now_ms: int) -> WorkFigures:
    """Every figure, as of `now_ms` (which only the outbox's oldest age depends on)."""
    reminders, escalations = await _fired_steps(conn)
    return WorkFigures(
        cases=await _cases(conn),
        deliveries=await _deliveries(conn),
        reminders=reminders,
        escalations=escalations,
        outbox=await outbox.stats(conn, now_ms=now_ms),
        undecryptable_waiting=await _count(
            conn, "SELECT COUNT(*) FROM undecryptable_events WHERE notified_ms IS NULL"),
        # A literal, not a parameter: it is what lets SQLite use the partial index.
        undecryptable_notified=await _count(
            conn, f"SELECT COUNT(*) FROM outbox WHERE kind = '{UNDECRYPTABLE_KIND}'"),
    )


async def _cases(conn: aiosqlite.Connection) -> dict[tuple[str, str], int]:
    counts = {(priority, kind): 0 for priority in PRIORITIES for kind in CASE_KINDS}
    rows = await conn.execute_fetchall(
        "SELECT priority, kind, COUNT(*) FROM cases GROUP BY priority, kind")
    for priority, kind, count in rows:
        counts[(str(priority), str(kind))] = int(count)
    return counts


async def _deliveries(conn: aiosqlite.Connection) -> DeliveryFigures:
    within = "".join(f", SUM(took <= {bound * 1000})" for bound in ACK_BUCKETS_S)
    row = await fetch_one(
        conn,
        f"SELECT COUNT(*), SUM(took){within} FROM (SELECT max(0, acknowledged_ms - routed_ms)"
        " AS took FROM deliveries WHERE acknowledged_ms IS NOT NULL)"
    )
    assert row is not None  # an aggregate gives one row, of NULL sums when nothing matched
    acknowledged, sum_ms, *within_counts = (int(value or 0) for value in tuple(row))
    return DeliveryFigures(routed=await _count(conn, "SELECT COUNT(*) FROM deliveries"),
                           acknowledged=acknowledged, ack_sum_ms=sum_ms,
                           ack_within=tuple(within_counts))


async def _fired_steps(conn: aiosqlite.Connection) -> tuple[int, int]:
    """(reminders, escalations) fired."""
    rows = await conn.execute_fetchall(
        "SELECT action, COUNT(*) FROM chase_steps WHERE state = 'fired'"
        " AND action IN ('remind', 'escalate') GROUP BY action")
    fired = {str(action): int(count) for action, count in rows}
    return fired.get("remind", 0), fired.get("escalate", 0)


async def _count(conn: aiosqlite.Connection, sql: str) -> int:
    row = await fetch_one(conn, sql)
    return 0 if row is None else int(row[0])
