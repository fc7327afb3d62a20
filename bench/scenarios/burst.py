"""Scenario 2: a burst. Five officers post alerts as fast as they can (500 in all, 100
each), every alert routed to two posts; every one of the 1,000 deliveries must arrive
exactly once. The same burst then goes through the minimal relay, on its own rooms, and
the figures are compared: throughput, latency percentiles, and cost (CPU seconds per
1,000 deliveries, resident memory).

Throughput is deliveries / (last arrival - first send). Liaison also answers every alert
in the sender's room (product behaviour the minimal relay lacks), so its throughput target
counts those answers as events it must write: (deliveries + answers) / (last of either -
first send); deliveries alone are reported too. Its CPU is measured until its last
answer arrived. Latency of a delivery is its
arrival minus the moment its alert was handed to the sender's client. Systems take turns
(minimal relay first) so that neither always runs on a warmer or quieter machine."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from bench.corpus import flow_alert
from bench.procs import (
    CpuMeter,
    Profile,
    main_thread_cpu_seconds,
    rss_mib,
    summarise_collapsed,
)
from bench.scenarios.relay import relayed_case
from bench.stage import Watcher, poll_until, post_config
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
        alert_ids: set[str] = set()

        async def post_all(index: int) -> None:
            officer, room = senders[index], rooms_from[index]
            for number in range(index, alerts, SENDERS):
                tag = f"b{turn}-{system[0]}-{number}"
                sent_at[tag] = time.monotonic()
                alert_ids.add(await officer.send_text(room, flow_alert(tag,
                                                                       to=",".join(TARGETS))))

        def answers() -> list[float]:
            """Arrival times of the answers to this turn's alerts, in the senders' rooms
            (Liaison's; the minimal relay's only with `--minirelay-answers`)."""
            return [m.received_at for officer, room in zip(senders, rooms_from, strict=True)
                    for m in officer.seen
                    if m.room_id == room and m.sender == relay_user
                    and m.relates_to.get("m.in_reply_to", {}).get("event_id") in alert_ids]

        profile = None
        if ctx.profile and liaison and bot.pid is not None:
            profile = Profile(bot.pid, ctx.profile_path("burst"), rate=250, gil=ctx.profile_gil)
            await profile.start()
        meter = CpuMeter({**stage.homeserver_pids(), "bench": os.getpid(),
                          system: bot.pid if liaison else relay.pid})
        meter.start()
        own_pid = bot.pid if liaison else relay.pid
        loop_cpu_start = main_thread_cpu_seconds(own_pid) if own_pid is not None else None
        started = time.monotonic()
        await asyncio.gather(*(post_all(n) for n in range(SENDERS)))
        posted = time.monotonic() - started
        await asyncio.gather(*(w.wait(all_arrived(w, alerts), 120 + alerts, accept)
                               for w in watchers))
        if liaison or stage.minirelay_answers:
            await poll_until(lambda: len(answers()) >= alerts, timeout=120 + alerts)
        cpu = meter.stop()
        loop_cpu_end = main_thread_cpu_seconds(own_pid) if own_pid is not None else None
        if loop_cpu_start is not None and loop_cpu_end is not None:
            cpu[f"{system}_main_thread_cpu_s"] = round(loop_cpu_end - loop_cpu_start, 2)
        pid = bot.pid if liaison else relay.pid
        rss = rss_mib(pid) if pid is not None else None
        profile_file = await profile.stop() if profile is not None else None
        await asyncio.sleep(SETTLE_S)  # anything sent twice would show up by now
        for watcher in watchers:
            watcher.poll(accept)
        arrivals = [a for w in watchers for copies in w.arrivals.values() for a in copies]
        duplicates = sum(len(copies) - 1 for w in watchers for copies in w.arrivals.values())
        missing = sum(1 for w in watchers for tag in sent_at if tag not in w.arrivals)
        last = max(a.received_at for a in arrivals)
        answered = answers()
        last_event = max([last, *answered])
        latencies = [(a.received_at - sent_at[a.tag]) * 1000 for a in arrivals]
        own_cpu = cpu.get(f"{system}_cpu_s", 0.0)
        outcome: dict[str, Any] = {
            "deliveries": len(arrivals), "expected": alerts * len(TARGETS),
            "duplicates": duplicates, "missing": missing, "answers": len(answered),
            "posting_s": round(posted, 2),
            "deliveries_per_s": round(len(arrivals) / (last - started), 1),
            "events_per_s": round((len(arrivals) + len(answered)) / (last_event - started), 1),
            "latency_ms": Summary.of(latencies).as_dict(0),
            "cpu": cpu,
            "cpu_s_per_1000_deliveries": round(own_cpu / len(arrivals) * 1000, 2),
            "rss_mib": rss,
        }
        if profile_file is not None:
            outcome["profile"] = {"file": str(profile_file.name),
                                  **summarise_collapsed(profile_file)}
        ctx.progress(f"burst {system} turn {turn}: {outcome['deliveries_per_s']} deliveries/s, "
                     f"{outcome['events_per_s']} events/s, p99 {outcome['latency_ms']['p99']} "
                     f"ms, {outcome['cpu_s_per_1000_deliveries']} CPU s per 1000, "
                     f"{rss} MiB")
        return outcome

    runs: dict[str, list[dict[str, Any]]] = {"minirelay": [], "liaison": []}
    for turn in range(turns):
        for system in ("minirelay", "liaison"):
            runs[system].append(await burst(system, turn))
            await asyncio.sleep(2)
    best = {system: max(r["deliveries_per_s"] for r in outcomes)
            for system, outcomes in runs.items()}
    best_events = {system: max(r["events_per_s"] for r in outcomes)
                   for system, outcomes in runs.items()}

    def median(system: str, key: str) -> float:
        values = sorted(float(r[key]) for r in runs[system])
        return values[len(values) // 2]

    median_p99 = {system: sorted(r["latency_ms"]["p99"] for r in outcomes)[len(outcomes) // 2]
                  for system, outcomes in runs.items()}
    cost = {system: median(system, "cpu_s_per_1000_deliveries") for system in runs}
    rss = {system: median(system, "rss_mib") for system in runs}
    exact = all(r["duplicates"] == 0 and r["missing"] == 0 and r["deliveries"] == r["expected"]
                for r in runs["liaison"])
    return {
        "alerts": alerts, "senders": SENDERS, "targets_per_alert": len(TARGETS),
        "turns": turns, "runs": runs,
        "targets": [
            Target("burst events written/s vs minimal relay (deliveries + answers)",
                   ratio(best_events["liaison"], best_events["minirelay"]), 0.9,
                   at_least=True).as_dict(),
            {"name": "burst deliveries/s vs minimal relay (reported)",
             "value": ratio(best["liaison"], best["minirelay"]), "target": "", "met": None},
            Target("burst: every delivery exactly once (1 = yes)", int(exact), 1,
                   at_least=True).as_dict(),
            Target("cost: CPU s per 1,000 deliveries, Liaison / minimal relay",
                   ratio(cost["liaison"], cost["minirelay"]), 2).as_dict(),
            {"name": "cost: RSS after the burst, Liaison / minimal relay (reported)",
             "value": ratio(rss["liaison"], rss["minirelay"]), "target": "", "met": None},
        ],
        "ratios": {"p99_latency_vs_minimal": ratio(median_p99["liaison"],
                                                   median_p99["minirelay"])},
        "headline": {"deliveries/s liaison / minimal": f"{best['liaison']} / "
                     f"{best['minirelay']}",
                     "events written/s liaison / minimal": f"{best_events['liaison']} / "
                     f"{best_events['minirelay']}",
                     "p99 latency ms liaison / minimal": f"{median_p99['liaison']} / "
                     f"{median_p99['minirelay']}",
                     "CPU s per 1,000 deliveries liaison / minimal": f"{cost['liaison']} / "
                     f"{cost['minirelay']}",
                     "RSS MiB after the burst liaison / minimal": f"{rss['liaison']} / "
                     f"{rss['minirelay']}"},
    }
