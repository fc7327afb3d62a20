"""Scenario 5: the scale of one bot. Two bots, one configured with 5 posts, one with 500
(50 with --quick, to stay within its 10 minutes), each post an encrypted room with the
same 5 officers in it (an officer account in many rooms is what a regional centre looks
like; 5 accounts rather than 2,500 keeps the set-up within minutes).

Measured, alternating between the two bots:
- relay p50: an alert in post 0 relayed to post 1 (both rooms with 5 officers), while
  the bot is joined to 5 or to 500 rooms;
- start to ready (the ready file) and to answering `!ping`, and resident memory once
  settled, over repeated restarts on the same data directory.

Each bot's first start (joining every room it was invited to) is reported too."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nio import RoomCreateResponse, RoomPreset

from bench.corpus import flow_alert
from bench.procs import BenchBot
from bench.scenarios.relay import answers_event, relayed_case
from bench.stage import Watcher, post_config
from bench.stats import Summary, Target, ratio
from devkit.officer import Officer

OFFICERS = 5
SMALL = 5
CONCURRENCY = 8
PAUSE_S = 0.3
TIMEOUT_S = 60.0
SETTLE_S = 5.0
MEGOLM = "m.megolm.v1.aes-sha2"


async def bounded(calls: Sequence[Callable[[], Awaitable[Any]]], limit: int = CONCURRENCY
                  ) -> list[Any]:
    """Run `calls` with at most `limit` in flight (room set-up at scale, without flooding
    a 2-core machine)."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()
    return list(await asyncio.gather(*(one(call) for call in calls)))


async def post_rooms(owner: Officer, members: Sequence[Officer], label: str,
                     count: int) -> list[str]:
    """`count` encrypted rooms created by `owner` with `members` invited and joined,
    through the client API directly (no waiting for each room to sync)."""
    initial_state = [
        {"type": "m.room.history_visibility", "state_key": "",
         "content": {"history_visibility": "shared"}},
        {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}},
    ]

    async def create(number: int) -> str:
        response = await owner.client.room_create(
            name=f"{label} {number:03d}", preset=RoomPreset.private_chat,
            invite=[m.user_id for m in members], initial_state=initial_state)
        if not isinstance(response, RoomCreateResponse):
            raise RuntimeError(f"room_create: {response}")
        return str(response.room_id)

    rooms: list[str] = await bounded([lambda n=n: create(n) for n in range(count)])

    async def join(member: Officer, room_id: str) -> None:
        response = await member.client.join(room_id)
        if not hasattr(response, "room_id"):
            raise RuntimeError(f"join {room_id}: {response}")
    await bounded([lambda m=m, r=r: join(m, r) for m in members for r in rooms])
    return rooms


def posts_for(rooms: Sequence[str]) -> list[dict[str, Any]]:
    """Post n in room n; post 0 (KZ) and post 1 (UZ) are neighbours, the relay pair."""
    ids = [f"{'KZ' if n % 2 == 0 else 'UZ'}-P{n:03d}" for n in range(len(rooms))]
    return [post_config(post_id, room,
                        neighbours=[ids[1 - n]] if n < 2 else [])
            for n, (post_id, room) in enumerate(zip(ids, rooms, strict=True))]


async def run(ctx: Any) -> dict[str, Any]:
    stage = ctx.stage
    large = 50 if ctx.quick else 500
    rounds = ctx.repeats or (8 if ctx.quick else 40)
    starts = 2 if ctx.quick else 3
    officers = [await stage.officer(f"o{n}") for n in range(OFFICERS)]
    sender, receiver = officers[0], officers[1]
    sizes = {"small": SMALL, "large": large}
    rooms: dict[str, list[str]] = {}
    bots: dict[str, BenchBot] = {}
    first_start: dict[str, dict[str, float]] = {}
    for name, count in sizes.items():
        started = time.monotonic()
        rooms[name] = await post_rooms(sender, officers[1:], f"{name} post", count)
        made = time.monotonic() - started
        ctx.progress(f"scale: {count} rooms with {OFFICERS} officers in {made:.0f}s")
        started = time.monotonic()
        bots[name] = await stage.bot({"posts": posts_for(rooms[name])},
                                     name=f"liaison-{name}")
        ready = time.monotonic() - started
        await bounded([lambda r=r, b=bots[name]: sender.invite(r, b.user_id)
                       for r in rooms[name]])
        wanted = set(rooms[name])
        joined: set[str] = set()
        deadline = time.monotonic() + 60 + count
        while not wanted <= joined:
            if time.monotonic() > deadline:
                raise TimeoutError(f"bot joined {len(joined & wanted)} of {count} rooms")
            await asyncio.sleep(1.0)
            joined = await stage.synapse.joined_rooms(bots[name].user_id)
        first_start[name] = {"rooms_s": round(made, 1), "ready_s": round(ready, 2),
                             "joined_all_s": round(time.monotonic() - started, 1)}
        await sender.wait_until_joined(rooms[name][0], bots[name].user_id, timeout=120)
        await receiver.wait_until_joined(rooms[name][1], bots[name].user_id, timeout=120)
        ctx.progress(f"scale: bot {name} in {count} rooms: {first_start[name]}")

    for officer in officers[2:]:  # members with devices; nobody reads for them
        await stage.stop_officer(officer)

    watchers = {name: Watcher(receiver, bot.user_id, [rooms[name][1]])
                for name, bot in bots.items()}

    async def relay_once(name: str, tag: str) -> float:
        started = time.monotonic()
        event_id = await sender.send_text(rooms[name][0], flow_alert(tag, to="UZ-P001"))
        watcher = watchers[name]
        await watcher.wait(lambda: tag in watcher.arrivals, TIMEOUT_S, relayed_case)
        arrived = watcher.arrivals[tag][0].received_at
        await sender.wait_for(lambda m: answers_event(m, event_id), room_id=rooms[name][0],
                              sender=bots[name].user_id, timeout=TIMEOUT_S)
        await asyncio.sleep(PAUSE_S)
        return (arrived - started) * 1000

    warmup = 3
    latency: dict[str, list[float]] = {name: [] for name in sizes}
    rng = random.Random(21)
    for number in range(warmup + rounds):
        order = list(sizes)
        rng.shuffle(order)
        for name in order:
            value = await relay_once(name, f"s{number}-{name}")
            if number >= warmup:
                latency[name].append(value)
        if (number + 1) % 10 == 0:
            ctx.progress(f"scale relay round {number + 1}/{warmup + rounds}")
    relay = {name: Summary.of(values) for name, values in latency.items()}

    async def start_once(name: str) -> dict[str, Any]:
        bot = bots[name]
        await bot.stop()
        started = time.monotonic()
        await bot.start(wait_ready=False)
        await bot.wait_ready(timeout=600)
        ready_s = time.monotonic() - started
        event_id = await sender.send_text(rooms[name][0], "!ping")
        await sender.wait_for(lambda m: answers_event(m, event_id), room_id=rooms[name][0],
                              sender=bot.user_id, timeout=600)
        serving_s = time.monotonic() - started
        await asyncio.sleep(SETTLE_S)
        outcome = {"ready_s": round(ready_s, 2), "serving_s": round(serving_s, 2),
                   "rss_settled_mib": bot.rss_mib(), "rss_peak_mib": bot.peak_rss_mib()}
        ctx.progress(f"scale start {name}: {outcome}")
        return outcome

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sizes}
    for _ in range(starts):
        for name in sizes:
            runs[name].append(await start_once(name))

    def median(name: str, key: str) -> float:
        values = sorted(float(run[key]) for run in runs[name])
        return values[len(values) // 2]

    factor = large // SMALL
    return {
        "posts": sizes, "officers_per_room": OFFICERS, "rounds": rounds, "starts": runs,
        "first_start": first_start,
        "relay_ms": {name: summary.as_dict() for name, summary in relay.items()},
        "targets": [
            Target(f"start to ready, {large} posts / {SMALL} ({factor}x the rooms)",
                   ratio(median("large", "ready_s"), median("small", "ready_s")),
                   10).as_dict(),
            Target(f"RSS settled, {large} posts / {SMALL}",
                   ratio(median("large", "rss_settled_mib"),
                         median("small", "rss_settled_mib")), 3).as_dict(),
            Target(f"relay p50, bot in {large} rooms / in {SMALL}",
                   ratio(relay["large"].p50, relay["small"].p50), 1.2).as_dict(),
        ],
        "ratios": {"serving_large_vs_small": ratio(median("large", "serving_s"),
                                                   median("small", "serving_s"))},
        "headline": {
            f"ready s ({SMALL} / {large} posts)": f"{median('small', 'ready_s')} / "
                                                 f"{median('large', 'ready_s')}",
            f"answers !ping after s ({SMALL} / {large})": f"{median('small', 'serving_s')} / "
                                                        f"{median('large', 'serving_s')}",
            f"RSS settled MiB ({SMALL} / {large})": f"{median('small', 'rss_settled_mib')} / "
                                                   f"{median('large', 'rss_settled_mib')}",
            f"relay p50 ms ({SMALL} / {large} rooms)": f"{relay['small'].p50:.0f} / "
                                                      f"{relay['large'].p50:.0f}",
            f"first start: joined all rooms after s ({SMALL} / {large})":
                f"{first_start['small']['joined_all_s']} / "
                f"{first_start['large']['joined_all_s']}",
        },
    }
