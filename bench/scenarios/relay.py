"""Scenario 1: relay latency, from an officer's alert in room A until a second officer has
decrypted the relayed alert in room B, against two floors measured in the same rounds:

- direct: the same officer sends the same words straight into room B;
- minimal relay: `bench.minirelay` (decrypt, copy to room B, nothing else).

The relay's own hop is also reported on the homeserver's clock: the relayed event's
`origin_server_ts` minus the alert's, i.e. sync wake-up, decryption, the relay's work,
encryption and the send, without the officers' clients on either side.

Each round measures all three, in a shuffled order, one at a time, with a short pause
after each so that the next starts from a quiet system."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from bench.corpus import flow_alert, plain_message
from bench.procs import Profile, summarise_collapsed
from bench.stage import Watcher, post_config
from bench.stats import Summary, Target, ratio
from devkit.officer import SeenMessage
from liaison.commands.case_render import CASE_KEY

PAUSE_S = 0.3
TIMEOUT_S = 30.0


def relayed_case(message: SeenMessage) -> bool:
    """A relayed case from Liaison, not a reminder, escalation or answer about one."""
    key = message.content.get(CASE_KEY)
    return isinstance(key, dict) and "about" not in key


def answers_event(message: SeenMessage, event_id: str) -> bool:
    return bool(message.relates_to.get("m.in_reply_to", {}).get("event_id") == event_id)


async def run(ctx: Any) -> dict[str, Any]:
    stage = ctx.stage
    rounds = ctx.repeats or (15 if ctx.quick else 100)
    warmup = 3
    sender, receiver = await stage.officer("kz"), await stage.officer("uz")
    room_a = await stage.room(sender, "KZ post")
    room_b = await stage.room(receiver, "UZ post", [sender])
    mini_a = await stage.room(sender, "KZ post (minirelay)")
    mini_b = await stage.room(receiver, "UZ post (minirelay)")
    bot = await stage.bot({"posts": [
        post_config("KZ-ZHIBEK", room_a, neighbours=["UZ-TERMEZ"]),
        post_config("UZ-TERMEZ", room_b, neighbours=["KZ-ZHIBEK"]),
    ]})
    await stage.bring_in(bot.user_id, [(sender, room_a), (receiver, room_b)])
    relay = await stage.minirelay({mini_a: [mini_b]})
    await stage.bring_in_relay(relay, [(sender, mini_a), (receiver, mini_b)])

    liaison = Watcher(receiver, bot.user_id, [room_b])
    minimal = Watcher(receiver, relay.user_id, [mini_b])
    direct = Watcher(receiver, sender.user_id, [room_b])

    hops: dict[str, list[float]] = {"liaison": [], "minirelay": []}

    def hop(kind: str, room_id: str, event_id: str, relayed_event_id: str) -> float:
        """The relay's own hop on the homeserver's clock: relayed event's origin_server_ts
        minus the alert's (both stamped by Synapse when it accepted each event)."""
        alert = next(m for m in sender.messages(room_id) if m.event_id == event_id)
        copy = next(m for m in receiver.seen if m.event_id == relayed_event_id)
        return float(copy.ts - alert.ts)

    async def one(kind: str, tag: str) -> tuple[float, float | None]:
        started = time.monotonic()
        relay_hop = None
        if kind == "liaison":
            event_id = await sender.send_text(room_a, flow_alert(tag, to="UZ-TERMEZ"))
            await liaison.wait(lambda: tag in liaison.arrivals, TIMEOUT_S, relayed_case)
            arrived = liaison.arrivals[tag][0].received_at
            relay_hop = hop(kind, room_a, event_id, liaison.arrivals[tag][0].event_id)
            # Let the bot finish the rest of its work (its answer to the sender).
            await sender.wait_for(lambda m: answers_event(m, event_id), room_id=room_a,
                                  sender=bot.user_id, timeout=TIMEOUT_S)
        elif kind == "minirelay":
            event_id = await sender.send_text(mini_a, flow_alert(tag, to="UZ-TERMEZ"))
            await minimal.wait(lambda: tag in minimal.arrivals, TIMEOUT_S)
            arrived = minimal.arrivals[tag][0].received_at
            relay_hop = hop(kind, mini_a, event_id, minimal.arrivals[tag][0].event_id)
        else:
            await sender.send_text(room_b, plain_message(tag))
            await direct.wait(lambda: tag in direct.arrivals, TIMEOUT_S)
            arrived = direct.arrivals[tag][0].received_at
        await asyncio.sleep(PAUSE_S)
        return (arrived - started) * 1000, relay_hop

    profile = None
    if ctx.profile and bot.pid is not None:  # the bot only: where its part of the hop goes
        profile = Profile(bot.pid, ctx.profile_path("relay"), rate=1000, gil=ctx.profile_gil)
        await profile.start()
    kinds = ["liaison", "minirelay", "direct"]
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    rng = random.Random(8)
    for number in range(warmup + rounds):
        order = kinds[:]
        rng.shuffle(order)
        for kind in order:
            latency, relay_hop = await one(kind, f"r{number}-{kind}")
            if number >= warmup:
                samples[kind].append(latency)
                if relay_hop is not None:
                    hops[kind].append(relay_hop)
        ctx.progress(f"relay round {number + 1}/{warmup + rounds}")
    profile_file = await profile.stop() if profile is not None else None
    summaries = {kind: Summary.of(values) for kind, values in samples.items()}
    vs_minimal = ratio(summaries["liaison"].p50, summaries["minirelay"].p50)
    vs_direct = ratio(summaries["liaison"].p50, summaries["direct"].p50)
    outcome: dict[str, Any] = {
        "rounds": rounds,
        "latency_ms": {kind: s.as_dict() for kind, s in summaries.items()},
        "relay_hop_ms": {kind: Summary.of(values).as_dict() for kind, values in hops.items()},
        "targets": [
            Target("relay p50 / minimal relay p50", vs_minimal, 1.10).as_dict(),
            Target("relay p50 / direct message p50", vs_direct, 2.3).as_dict(),
        ],
        "ratios": {"p95_vs_minimal": ratio(summaries["liaison"].p95, summaries["minirelay"].p95),
                   "p99_vs_minimal": ratio(summaries["liaison"].p99, summaries["minirelay"].p99),
                   "minimal_vs_direct": ratio(summaries["minirelay"].p50,
                                              summaries["direct"].p50)},
    }
    if profile_file is not None:
        outcome["profile"] = {"file": profile_file.name, **summarise_collapsed(profile_file)}
    return outcome
