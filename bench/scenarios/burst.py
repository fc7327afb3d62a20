"""Scenario 2: a burst. Five officers post alerts as fast as they can (500 in all, 100
each), every alert routed to two posts; every one of the 1,000 deliveries must arrive
exactly once. The same burst then goes through the minimal relay, on its own rooms, and
the figures are compared: deliveries per second and latency percentiles.

Throughput is deliveries / (last arrival - first send). Latency of a delivery is its
arrival minus the moment its alert was handed to the sender's client. Systems take turns
(minimal relay first) so that neither always runs on a warmer or quieter machine."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from bench.corpus import flow_alert
from bench.procs import CpuMeter, Profile, summarise_collapsed
from bench.scenarios.relay import relayed_case
from bench.stage import Watcher, post_config
from bench.stats import Summary, Target, ratio

SENDERS = 5
SETTLE_S = 3.0
TARGETS = ("UZ-TERMEZ", "TJ-PANJ")


def all_arrived(watcher: Watcher, alerts: int) -> Callable[[], bool]:
    return lambda: len(watcher.arrivals) >= alerts


async def run(ctx: Any) -> dict[str, Any]:
    stage = ctx.stage
    alerts = 100 if ctx.quick else 500
    turns = ctx.repeats or 1
    senders = [await stage.officer(f"s{n}") for n in range(SENDERS)]
    receivers = [await stage.officer(f"r{n}") for n in range(len(TARGETS))]

    # Liaison: a post room per sender, a room per target post.
    origin_rooms = [await stage.room(s, f"origin {n}") for n, s in enumerate(senders)]
    target_rooms = [await stage.room(r, f"target {n}") for n, r in enumerate(receivers)]
    posts = [post_config(f"KZ-ORIGIN{n}", room, neighbours=list(TARGETS))
             for n, room in enumerate(origin_rooms)]
    posts += [post_config(post_id, room) for post_id, room in zip(TARGETS, target_rooms,
                                                                  strict=True)]
    bot = await stage.bot({"posts": posts})
    await stage.bring_in(bot.user_id, [*zip(senders, origin_rooms, strict=True),
                                       *zip(receivers, target_rooms, strict=True)])
    # The minimal relay: the same shape on rooms of its own.
    mini_origin = [await stage.room(s, f"mini origin {n}") for n, s in enumerate(senders)]
    mini_target = [await stage.room(r, f"mini target {n}") for n, r in enumerate(receivers)]
    relay = await stage.minirelay({room: list(mini_target) for room in mini_origin})
    await stage.bring_in_relay(relay, [*zip(senders, mini_origin, strict=True),
                                       *zip(receivers, mini_target, strict=True)])

    async def burst(system: str, turn: int) -> dict[str, Any]:
        liaison = system == "liaison"
        rooms_from = origin_rooms if liaison else mini_origin
        rooms_to = target_rooms if liaison else mini_target
        relay_user = bot.user_id if liaison else relay.user_id
        watchers = [Watcher(r, relay_user, [room]) for r, room in zip(receivers, rooms_to,
                                                                       strict=True)]
        for watcher in watchers:
            watcher.poll()  # skip what arrived in earlier turns
            watcher.arrivals.clear()
            watcher.count = 0
        accept = relayed_case if liaison else None
        sent_at: dict[str, float] = {}

        async def post_all(index: int) -> None:
            officer, room = senders[index], rooms_from[index]
            for number in range(index, alerts, SENDERS):
                tag = f"b{turn}-{system[0]}-{number}"
                sent_at[tag] = time.monotonic()
                await officer.send_text(room, flow_alert(tag, to=",".join(TARGETS)))

        profile = None
        if ctx.profile and liaison and bot.pid is not None:
            profile = Profile(bot.pid, ctx.results / "profile-burst.txt", rate=250)
            await profile.start()
        meter = CpuMeter({"synapse": stage.synapse_pid, "bench": os.getpid(),
                          system: bot.pid if liaison else relay.pid})
        meter.start()
        started = time.monotonic()
        await asyncio.gather(*(post_all(n) for n in range(SENDERS)))
        posted = time.monotonic() - started
        await asyncio.gather(*(w.wait(all_arrived(w, alerts), 120 + alerts, accept)
                               for w in watchers))
        cpu = meter.stop()
        profile_file = await profile.stop() if profile is not None else None
        await asyncio.sleep(SETTLE_S)  # anything sent twice would show up by now
        for watcher in watchers:
            watcher.poll(accept)
        arrivals = [a for w in watchers for copies in w.arrivals.values() for a in copies]
        duplicates = sum(len(copies) - 1 for w in watchers for copies in w.arrivals.values())
        missing = sum(1 for w in watchers for tag in sent_at if tag not in w.arrivals)
        last = max(a.received_at for a in arrivals)
        latencies = [(a.received_at - sent_at[a.tag]) * 1000 for a in arrivals]
        outcome: dict[str, Any] = {
            "deliveries": len(arrivals), "expected": alerts * len(TARGETS),
            "duplicates": duplicates, "missing": missing,
            "posting_s": round(posted, 2),
            "deliveries_per_s": round(len(arrivals) / (last - started), 1),
            "latency_ms": Summary.of(latencies).as_dict(0),
            "cpu": cpu,
        }
        if profile_file is not None:
            outcome["profile"] = {"file": str(profile_file.name),
                                  **summarise_collapsed(profile_file)}
        ctx.progress(f"burst {system} turn {turn}: {outcome['deliveries_per_s']}/s, "
                     f"p99 {outcome['latency_ms']['p99']} ms")
        return outcome

    runs: dict[str, list[dict[str, Any]]] = {"minirelay": [], "liaison": []}
    for turn in range(turns):
        for system in ("minirelay", "liaison"):
            runs[system].append(await burst(system, turn))
            await asyncio.sleep(2)
    best = {system: max(r["deliveries_per_s"] for r in outcomes)
            for system, outcomes in runs.items()}
    median_p99 = {system: sorted(r["latency_ms"]["p99"] for r in outcomes)[len(outcomes) // 2]
                  for system, outcomes in runs.items()}
    exact = all(r["duplicates"] == 0 and r["missing"] == 0 and r["deliveries"] == r["expected"]
                for r in runs["liaison"])
    return {
        "alerts": alerts, "senders": SENDERS, "targets_per_alert": len(TARGETS),
        "turns": turns, "runs": runs,
        "targets": [
            Target("burst deliveries/s vs minimal relay", ratio(best["liaison"],
                                                                 best["minirelay"]),
                   0.8, at_least=True).as_dict(),
            Target("burst: every delivery exactly once (1 = yes)", int(exact), 1,
                   at_least=True).as_dict(),
        ],
        "ratios": {"p99_latency_vs_minimal": ratio(median_p99["liaison"],
                                                   median_p99["minirelay"])},
        "headline": {"deliveries/s liaison / minimal": f"{best['liaison']} / "
                     f"{best['minirelay']}",
                     "p99 latency ms liaison / minimal": f"{median_p99['liaison']} / "
                     f"{median_p99['minirelay']}"},
    }
