"""Scenario 5: commands parsed per second on one core, for alerts and requests as
officers type them in English, Russian and Arabic (`bench.corpus`).

"Parsed" means what the bot does with a message body before routing: split off the
command word (`split_command`), resolve it and its aliases (`CommandRegistry.resolve`)
and parse the case (`parse_case`) into a validated `CaseDraft`."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bench.corpus import CORPUS
from bench.stats import Summary, Target
from liaison.commands.parser import parse_case
from liaison.commands.registry import split_command
from liaison.handlers import default_registry

TARGET_PER_S = 20_000


def parse_one(registry: Any, body: str, now: datetime, tz: ZoneInfo) -> Any:
    split = split_command(body)
    assert split is not None, body
    word, args, lines = split
    spec = registry.resolve(word)
    return parse_case(spec.name, args, lines, now=now, tz=tz)


def measure(bodies: list[str], seconds: float) -> float:
    """Commands per second, parsing `bodies` round-robin for about `seconds`."""
    registry = default_registry()
    now, tz = datetime(2026, 5, 1, 12, 0, tzinfo=UTC), ZoneInfo("Asia/Tashkent")
    for body in bodies:  # warm caches (zoneinfo, regexes, pydantic) and check the corpus
        parse_one(registry, body, now, tz)
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for body in bodies:
            parse_one(registry, body, now, tz)
        done += len(bodies)
    return done / elapsed


def pin_to_one_core() -> int | None:
    try:
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return core
    except (AttributeError, OSError):
        return None


async def run(ctx: Any) -> dict[str, Any]:
    seconds = 1.0 if ctx.quick else 3.0
    repeats = 3 if ctx.quick else 5
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    core = pin_to_one_core()
    try:
        per_language = {lang: [measure(bodies, seconds / 2) for _ in range(repeats)]
                        for lang, bodies in CORPUS.items()}
        mixed = [measure([b for bodies in CORPUS.values() for b in bodies], seconds)
                 for _ in range(repeats)]
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
    summary = Summary.of(mixed)
    return {
        "core": core,
        "corpus": {lang: len(bodies) for lang, bodies in CORPUS.items()},
        "per_second_mixed": summary.as_dict(0),
        "per_second_by_language": {lang: round(Summary.of(v).p50) for lang, v
                                   in per_language.items()},
        "targets": [Target("parser commands/s (median of runs, mixed corpus)",
                           round(summary.p50), TARGET_PER_S, at_least=True).as_dict()],
    }
