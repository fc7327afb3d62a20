"""A homeserver outage in the middle of a chase: the deadlines still hold, nothing doubles."""

from __future__ import annotations

import asyncio
import sqlite3

from devkit.synapse import LocalSynapse
from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_chasing import ANSWER_TIMEOUT_S, about, chase_steps, flash_policy, two_posts


async def test_chase_steps_due_during_a_homeserver_outage_arrive_once_when_it_returns(
    synapse: LocalSynapse, officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    policy = flash_policy(acknowledge_within="3s", remind_every="2s", reminders=2,
                          escalate=[{"after": "30s", "to": ["target-supervisors"]}])
    chase = await two_posts(officer_factory, bot_factory, policy)
    bot, uz = chase.bot, chase.uz
    await chase.ask(chase.kz, chase.kz_room, "!alert flash to:UZ-TERMEZ\nGrey Hilux at the bridge")
    await uz.wait_for(lambda m: "KZ-0001" in (m.body or ""), room_id=chase.uz_room,
                      sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)  # the relayed alert

    await synapse.stop()  # both reminders (at 3 s and 5 s) fall due while it is away
    try:
        await asyncio.sleep(7)
        database = sqlite3.connect(f"file:{bot.data_dir / 'liaison.db'}?mode=ro", uri=True)
        try:
            fired = database.execute(
                "SELECT COUNT(*) FROM chase_steps WHERE state = 'fired'").fetchone()[0]
        finally:
            database.close()
        assert fired >= 1  # the deadlines held: steps fired on time, queued in the outbox
    finally:
        await synapse.start()

    for step in ("ack.remind.1", "ack.remind.2"):
        await uz.wait_for(about("KZ-0001", "reminder", step), room_id=chase.uz_room,
                          sender=bot.user_id, timeout=60)
    await chase.ask(uz, chase.uz_room, "!ack KZ-0001")
    await chase.ask(uz, chase.uz_room, "!ping")  # a barrier: anything queued has gone out
    assert chase_steps(uz, chase.uz_room, bot, "reminder") == ["ack.remind.1", "ack.remind.2"]
