"""Scenario 4: many open cases. Two bots with the same configuration (ten post rooms
each, their own accounts and rooms) are started alternately: one on an empty database,
one on a database seeded with 100,000 open deliveries with pending chase steps. For each
start: time from process start to ready (the bot's ready file: first sync done), time
until it answers a `!ping` (serving: the ready file is written before the first chase
round, so a bot can say "ready" long before it answers anyone), and resident memory
(VmRSS once settled, VmHWM peak). Then 1,000 steps are made to fall due within one
minute and the bot is started; lateness is fired time (from the database) minus due
time. The same 1,000 steps on the otherwise empty database are the floor."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from bench.procs import BenchBot, Profile, summarise_collapsed
from bench.scenarios.relay import answers_event
from bench.seed import DATABASE_FILE, bring_due, seed_open_deliveries
from bench.stage import post_config
from bench.stats import Summary, Target, ratio
from liaison.config import load_config

POSTS = ("KZ-ZHIBEK", "KZ-SHYMKENT", "UZ-TERMEZ", "UZ-DUSTLIK", "TJ-PANJ", "TJ-DUSHANBE",
         "KG-DOSTUK", "TM-SERHETABAT", "AF-HAIRATAN", "AF-TORGHUNDI")
SETTLE_S = 5.0


def fired_steps(data_dir: Path, ids: list[int]) -> list[tuple[int, int, int, int]]:
    """(id, due_ms, done_ms, late) of the steps among `ids` that have fired (read-only)."""
    uri = f"file:{data_dir / DATABASE_FILE}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as conn:
        rows = conn.execute(
            f"SELECT id, due_ms, done_ms, late FROM chase_steps WHERE state = 'fired'"
            f" AND id IN ({','.join(map(str, ids))})").fetchall()
    return [tuple(row) for row in rows]


async def run(ctx: Any) -> dict[str, Any]:
    stage = ctx.stage
    deliveries = 10_000 if ctx.quick else 100_000
    due_steps = 300 if ctx.quick else 1_000
    starts = ctx.repeats or (2 if ctx.quick else 3)
    owner = await stage.officer("owner")
    bots: dict[str, BenchBot] = {}
    rooms: dict[str, list[str]] = {}
    for name in ("empty", "seeded"):
        rooms[name] = [await stage.room(owner, f"{name} {post}") for post in POSTS]
        bots[name] = await stage.bot({"posts": [
            post_config(post, room, neighbours=[POSTS[(n + 1) % len(POSTS)]])
            for n, (post, room) in enumerate(zip(POSTS, rooms[name], strict=True))]},
            name=f"liaison-{name}")
        await stage.bring_in(bots[name].user_id, [(owner, room) for room in rooms[name]])
        await bots[name].stop()
    config = load_config(bots["seeded"].config_path, check_secrets=False)
    ctx.progress(f"seeding {deliveries} open deliveries")
    seeded = await seed_open_deliveries(bots["seeded"].data_dir, config, deliveries=deliveries)
    ctx.progress(f"seeded in {seeded['seconds']} s")
    db_mib = round((bots["seeded"].data_dir / DATABASE_FILE).stat().st_size / 2**20, 1)

    async def start_once(name: str, profile_as: str | None = None) -> dict[str, Any]:
        bot = bots[name]
        started = time.monotonic()
        await bot.start(wait_ready=False)
        assert bot.pid is not None
        profile = None
        if profile_as is not None:
            profile = Profile(bot.pid, ctx.profile_path(profile_as), rate=100, gil=ctx.profile_gil)
            await profile.start()
        await bot.wait_ready(timeout=600)
        ready_s = time.monotonic() - started
        rss_ready = bot.rss_mib()
        event_id = await owner.send_text(rooms[name][0], "!ping")
        await owner.wait_for(lambda m: answers_event(m, event_id), room_id=rooms[name][0],
                             sender=bot.user_id, timeout=600)
        serving_s = time.monotonic() - started
        await asyncio.sleep(SETTLE_S)
        outcome: dict[str, Any] = {"ready_s": round(ready_s, 2), "serving_s": round(serving_s, 2),
                   "rss_ready_mib": rss_ready, "rss_settled_mib": bot.rss_mib(),
                   "rss_peak_mib": bot.peak_rss_mib()}
        if profile is not None:
            profile_file = await profile.stop()
            if profile_file is not None:
                outcome["profile"] = {"file": profile_file.name,
                                      **summarise_collapsed(profile_file)}
        await bot.stop()
        ctx.progress(f"start {name}: {outcome}")
        return outcome

    runs: dict[str, list[dict[str, Any]]] = {"empty": [], "seeded": []}
    for number in range(starts):
        for name in ("empty", "seeded"):
            profile_as = "opencases-start" if ctx.profile and name == "seeded" and \
                number == 0 else None
            runs[name].append(await start_once(name, profile_as))

    def median(name: str, key: str) -> float:
        values = sorted(float(run[key]) for run in runs[name])
        return values[len(values) // 2]

    # The floor for lateness: the same steps on a database holding only them.
    await seed_open_deliveries(bots["empty"].data_dir, config.model_copy(update={
        "posts": load_config(bots["empty"].config_path, check_secrets=False).posts}),
        deliveries=due_steps)
    await stage.stop_officer(owner)  # nobody needs to read the reminders
    lateness = {name: await fire_due(ctx, bots[name], due_steps, median(name, "serving_s"),
                                     profile=ctx.profile and name == "seeded")
                for name in ("empty", "seeded")}
    seeded_p99 = lateness["seeded"]["lateness_ms"]["p99"] / 1000
    label = f"{deliveries // 1000}k"
    return {
        "deliveries": seeded["deliveries"], "seeding_s": seeded["seconds"],
        "database_mib": db_mib, "starts": runs, "lateness": lateness,
        "targets": [
            Target(f"start to ready, {label} open / empty", ratio(median("seeded", "ready_s"),
                                                               median("empty", "ready_s")),
                   3).as_dict(),
            Target(f"start to answering !ping, {label} open / empty (ready as meant)",
                   ratio(median("seeded", "serving_s"), median("empty", "serving_s")),
                   3).as_dict(),
            Target(f"RSS settled, {label} open / empty", ratio(median("seeded", "rss_settled_mib"),
                                                           median("empty", "rss_settled_mib")),
                   2).as_dict(),
            Target(f"{due_steps} steps due in one minute: p99 lateness (s)",
                   round(seeded_p99, 3), 1).as_dict(),
        ],
        "ratios": {
            "serving_seeded_vs_empty": ratio(median("seeded", "serving_s"),
                                             median("empty", "serving_s")),
            "rss_peak_seeded_vs_empty": ratio(median("seeded", "rss_peak_mib"),
                                              median("empty", "rss_peak_mib")),
        },
        "headline": {
            "ready s (empty / 100k)": f"{median('empty', 'ready_s')} / "
                                      f"{median('seeded', 'ready_s')}",
            "answers !ping after s (empty / 100k)": f"{median('empty', 'serving_s')} / "
                                                    f"{median('seeded', 'serving_s')}",
            "RSS settled MiB (empty / 100k)": f"{median('empty', 'rss_settled_mib')} / "
                                              f"{median('seeded', 'rss_settled_mib')}",
            "RSS peak MiB (empty / 100k)": f"{median('empty', 'rss_peak_mib')} / "
                                           f"{median('seeded', 'rss_peak_mib')}",
            "lateness p99 ms (floor / 100k)": f"{lateness['empty']['lateness_ms']['p99']} / "
                                              f"{lateness['seeded']['lateness_ms']['p99']}",
        },
    }


async def fire_due(ctx: Any, bot: BenchBot, steps: int, serving_s: float, *,
                   profile: bool) -> dict[str, Any]:
    """Bring `steps` reminders due within one minute that starts once the bot has had
    time to start and settle, start it, and wait until all have fired."""
    lead_s = max(15.0, 2 * serving_s + 10)
    window_start_ms = time.time_ns() // 1_000_000 + int(lead_s * 1000)
    ids = await bring_due(bot.data_dir, steps=steps, window_start_ms=window_start_ms)
    await bot.start(wait_ready=True, timeout=600)
    assert bot.pid is not None
    sampler = Profile(bot.pid, ctx.profile_path("opencases-firing"), rate=100,
                      gil=ctx.profile_gil) if profile else None
    deadline = time.monotonic() + lead_s + 60 + 300
    fired: list[tuple[int, int, int, int]] = []
    profiling = False
    while time.monotonic() < deadline:
        if sampler is not None and not profiling and \
                time.time_ns() // 1_000_000 > window_start_ms - 2000:
            profiling = await sampler.start()
        fired = await asyncio.to_thread(fired_steps, bot.data_dir, ids)
        if len(fired) >= len(ids):
            break
        await asyncio.sleep(1.0)
    rss = bot.rss_mib()
    outcome: dict[str, Any] = {"steps": len(ids), "fired": len(fired), "lead_s": lead_s,
                               "rss_after_mib": rss}
    if profiling and sampler is not None:
        profile_file = await sampler.stop()
        if profile_file is not None:
            outcome["profile"] = {"file": profile_file.name,
                                  **summarise_collapsed(profile_file)}
    await bot.stop()
    late = [max(0, done - due) for _, due, done, _ in fired]
    outcome["lateness_ms"] = Summary.of(late).as_dict(0) if late else None
    outcome["marked_late"] = sum(1 for *_, flag in fired if flag)
    ctx.progress(f"lateness {bot.user_id}: {outcome['lateness_ms']}")
    return outcome
