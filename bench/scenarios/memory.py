"""Scenario 6: memory over time. One bot routes alerts from four officers (each in its own
post room, each alert to one of two target posts), through Synapse like any other alert.
Resident memory (VmRSS) is read once the bot is idle after 100 cases, at intermediate
checkpoints, and after N cases: nothing should grow without bound.

N is 10,000 as the issue asks (a quarter of an hour through Synapse on two shared
cores); `--quick` routes 600 and `--memory-cases N` chooses."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.corpus import flow_alert
from bench.seed import DATABASE_FILE
from bench.stage import poll_until, post_config
from bench.stats import Target, ratio
from devkit.officer import Officer

SENDERS = 4
TARGETS = ("UZ-TERMEZ", "TJ-PANJ")
WINDOW = 15
"""A sender waits while more than this many of its alerts are unanswered, so the bot is
never asked to catch up on more than a sync's timeline can hold."""
BASELINE = 100
ANSWER_WAIT_S = 60.0
"""How long an alert may stay unanswered before it counts as lost (and the run goes on)."""


def progress(data_dir: Path) -> tuple[int, int]:
    """(cases stored, outbox messages still pending), read-only."""
    uri = f"file:{data_dir / DATABASE_FILE}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as conn:
        cases = conn.execute("SELECT COUNT(*) FROM cases").fetchone()[0]
        pending = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'"
                               ).fetchone()[0]
    return int(cases), int(pending)


class Answers:
    """How many messages from the bot an officer has seen in one room (incremental)."""

    def __init__(self, officer: Officer, room_id: str, bot: str) -> None:
        self.officer, self.room_id, self.bot = officer, room_id, bot
        self.count = 0
        self._next = 0

    def poll(self) -> int:
        seen = self.officer.seen
        for message in seen[self._next:]:
            if message.room_id == self.room_id and message.sender == self.bot:
                self.count += 1
        self._next = len(seen)
        return self.count

    def within(self, answered: int) -> Callable[[], bool]:
        """A check: at least `answered` answers seen."""
        return lambda: self.poll() >= answered


async def run(ctx: Any) -> dict[str, Any]:
    stage = ctx.stage
    total = ctx.memory_cases or (600 if ctx.quick else 10_000)
    checkpoints = sorted({BASELINE, total // 4, total // 2, 3 * total // 4, total})
    senders = [await stage.officer(f"m{n}") for n in range(SENDERS)]
    owner = await stage.officer("mtarget")
    origin_rooms = [await stage.room(s, f"origin {n}") for n, s in enumerate(senders)]
    target_rooms = [await stage.room(owner, f"target {n}") for n in range(len(TARGETS))]
    bot = await stage.bot({"posts": [
        *(post_config(f"KZ-ORIGIN{n}", room, neighbours=[TARGETS[0]])
          for n, room in enumerate(origin_rooms)),
        *(post_config(pid, room) for pid, room in zip(TARGETS, target_rooms, strict=True))]})
    await stage.bring_in(bot.user_id, [*zip(senders, origin_rooms, strict=True),
                                       *((owner, room) for room in target_rooms)])
    await stage.stop_officer(owner)  # the relayed alerts need no reader here
    answers = [Answers(s, room, bot.user_id) for s, room in zip(senders, origin_rooms,
                                                                 strict=True)]
    sent = 0
    rss: dict[str, float | None] = {}
    started = time.monotonic()

    async def post(index: int, upto: int) -> None:
        nonlocal sent
        officer, room = senders[index], origin_rooms[index]
        mine = 0
        while sent < upto:
            number = sent
            sent += 1
            await officer.send_text(room, flow_alert(f"m{number}", to=TARGETS[number % 2]))
            mine += 1
            try:
                await poll_until(answers[index].within(mine - WINDOW), timeout=ANSWER_WAIT_S)
            except TimeoutError:  # alerts the bot never answered: counted below
                return
        with contextlib.suppress(TimeoutError):
            await poll_until(answers[index].within(mine), timeout=ANSWER_WAIT_S)

    for checkpoint in checkpoints:
        await asyncio.gather(*(post(n, checkpoint) for n in range(SENDERS)))
        stable_since, seen_cases = time.monotonic(), -1
        while True:
            cases, pending = await asyncio.to_thread(progress, bot.data_dir)
            if cases != seen_cases:
                stable_since, seen_cases = time.monotonic(), cases
            if pending == 0 and (cases >= checkpoint
                                 or time.monotonic() - stable_since > ANSWER_WAIT_S):
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(3.0)  # idle: let the chase round and the sender finish
        rss[str(cases)] = bot.rss_mib()
        ctx.progress(f"memory: {cases} cases routed, RSS {rss[str(cases)]} MiB, "
                     f"{time.monotonic() - started:.0f} s")
    first, last = next(iter(rss.values())), list(rss.values())[-1]
    assert first is not None and last is not None
    stored, _ = await asyncio.to_thread(progress, bot.data_dir)
    return {
        "cases": total, "alerts_sent": sent, "cases_stored": stored,
        "alerts_lost": sent - stored,
        "rss_mib_by_cases": rss, "peak_rss_mib": bot.peak_rss_mib(),
        "alerts_per_s": round(total / (time.monotonic() - started), 1),
        "targets": [Target(f"RSS after {total} cases / after {BASELINE}", ratio(last, first),
                           1.5).as_dict(),
                    Target("memory run: alerts the bot never acted on", sent - stored,
                           0).as_dict()],
        "notes": [f"N = {total} cases routed through Synapse (the issue asks for 10,000; "
                  "use --memory-cases 10000)"] if total < 10_000 else [],
    }
