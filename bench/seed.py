"""Open cases written straight into a stopped bot's database, through the storage layer
(`storage.cases`, `storage.outbox`, `storage.chasing`) exactly as the bot would have
stored them after routing: case, relayed message (marked sent), delivery, planned chase."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from liaison.commands.case_render import render_relayed_case
from liaison.commands.chasing import ChaseSubject, plan_delivery
from liaison.commands.model import Post, Priority, Tlp
from liaison.commands.notify import OutboxKind
from liaison.commands.parser import CaseKind
from liaison.commands.records import NewCase
from liaison.config import Config
from liaison.handlers.cases import case_content
from liaison.storage import cases, chasing, outbox
from liaison.storage.db import Database

DATABASE_FILE = "liaison.db"
SEED_SENDER = "@seed-officer:localhost"


async def seed_open_deliveries(data_dir: Path, config: Config, *, deliveries: int,
                               targets_per_case: int = 2, now_ms: int | None = None,
                               batch: int = 250, seed: int = 8) -> dict[str, Any]:
    """Store `deliveries` open deliveries (cases of `targets_per_case` each) with their
    chase planned, routed within the last minute so that nothing is due for an hour:
    urgent (2 reminders, 2 escalations) and routine alerts, a fifth of them requests
    (whose answer phase adds steps)."""
    rng = random.Random(seed)
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    posts: Sequence[Post] = config.posts
    by_id = {post.id: post for post in posts}
    policies = config.chasing.policies
    db = await Database.open(data_dir / DATABASE_FILE)
    started = time.monotonic()
    stored = 0
    try:
        while stored < deliveries:
            async with db.transaction() as conn:
                for _ in range(batch):
                    if stored >= deliveries:
                        break
                    origin, *targets = rng.sample(list(posts), targets_per_case + 1)
                    kind: CaseKind = "request" if rng.random() < 0.2 else "alert"
                    priority = Priority.URGENT if rng.random() < 0.7 else Priority.ROUTINE
                    routed_ms = now_ms - rng.randint(0, 60_000)
                    case = await cases.create_case(conn, NewCase(
                        kind=kind, origin_post=origin.id, origin_country=origin.country,
                        priority=priority, tlp=Tlp.AMBER, category="drugs", grading="B2",
                        related_ref=None,
                        fields=(("vehicle", f"white Kamaz, plate {rng.randint(10, 99)}A"
                                            f"{rng.randint(100, 999)}BC"),
                                ("route", "Hairatan -> Termez")),
                        text="Suspected heroin in a cement load.", due_ms=None,
                        forwardable=True, origin_room=origin.room,
                        origin_event_id=f"$seed-{stored}", origin_sender=SEED_SENDER,
                        created_ms=routed_ms))
                    for target in targets:
                        notice = render_relayed_case(case, target=target, posts=by_id)
                        message = await outbox.enqueue(
                            conn, room_id=target.room, event_type="m.room.message",
                            content=case_content(notice, case), now_ms=routed_ms,
                            kind=OutboxKind.CASE_RELAY, case_ref=case.ref)
                        await outbox.mark_sent(conn, message.id, now_ms=routed_ms,
                                               event_id=f"$seed-{stored}-{target.id}")
                        delivery = await cases.add_delivery(
                            conn, case.id, post=target.id, room_id=target.room,
                            relay_txn_id=message.txn_id, now_ms=routed_ms)
                        subject = ChaseSubject(kind=kind, priority=priority,
                                               routed_ms=routed_ms, due_ms=None,
                                               acknowledged_ms=None, answered_ms=None,
                                               case_state="open")
                        await chasing.save_plan(conn, delivery.id,
                                                plan_delivery(subject, target, policies),
                                                now_ms=routed_ms)
                        stored += 1
    finally:
        await db.close()
    return {"deliveries": stored, "seconds": round(time.monotonic() - started, 1)}


async def bring_due(data_dir: Path, *, steps: int, window_start_ms: int,
                    window_ms: int = 60_000) -> list[int]:
    """Move the first reminder of `steps` open deliveries so that they fall due spread
    evenly over one minute from `window_start_ms` (`storage.chasing.reschedule`, as a
    snooze would). Returns the step ids."""
    db = await Database.open(data_dir / DATABASE_FILE)
    try:
        async with db.read() as conn:
            rows = await conn.execute_fetchall(
                "SELECT id FROM chase_steps WHERE state = 'pending' AND step = 'ack.remind.1'"
                " ORDER BY id LIMIT ?", (steps,))
        ids = [int(row[0]) for row in rows]
        due = {step_id: window_start_ms + index * window_ms // max(1, len(ids))
               for index, step_id in enumerate(ids)}
        async with db.transaction() as conn:
            await chasing.reschedule(conn, due)
    finally:
        await db.close()
    return ids
