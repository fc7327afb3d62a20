"""Retention with an injected clock: finished cases lose their content once their time is
up, keep what statistics need, and the audit log says so; nothing else is touched."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from liaison.bot.retention import Retention
from liaison.config import parse_config
from liaison.storage import audit, cases
from liaison.storage.db import Database
from tests.unit.test_case_commands import (
    ALERT,
    CONFIG,
    KZ,
    KZ_ROOM,
    TJ_ROOM,
    UZ,
    UZ_ROOM,
    Bot,
    registry_with_cases,
)

KEEP = timedelta(days=90)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    database = await Database.open(tmp_path / "liaison.db")
    yield Bot(database, parse_config(json.dumps(CONFIG)), registry_with_cases())
    await database.close()


def retention(bot: Bot) -> Retention:
    return Retention(bot.db, bot.clock, KEEP)


async def worked_cases(bot: Bot) -> None:
    """KZ-0001 acknowledged, updated and closed; KZ-0002 cancelled; KZ-0003 left open."""
    await bot.say(KZ_ROOM, KZ, ALERT)
    await bot.send_all()
    await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")
    await bot.say(KZ_ROOM, KZ, "!update KZ-0001 Driver changed at Termez")
    await bot.say(KZ_ROOM, KZ, "!close KZ-0001 Seized 40 kg at the bridge")
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ\nWatch the night train")
    await bot.say(KZ_ROOM, KZ, "!cancel KZ-0002")
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ\nStill looking")
    await bot.send_all()


async def stored_text(bot: Bot) -> str:
    """Everything the database holds about cases and messages, as one string."""
    async with bot.db.read() as conn:
        tables = [await conn.execute_fetchall(f"SELECT * FROM {table}")
                  for table in ("cases", "timeline", "outbox", "audit_log")]
    return json.dumps([[list(row) for row in rows] for rows in tables], ensure_ascii=False)


async def test_nothing_is_purged_before_its_time(bot: Bot) -> None:
    await worked_cases(bot)
    bot.later(int(KEEP.total_seconds() // 60) - 1)
    assert await retention(bot).purge() == []
    assert "Seized 40 kg" in await stored_text(bot)


async def test_finished_cases_lose_their_content_and_keep_their_statistics(bot: Bot) -> None:
    await worked_cases(bot)
    async with bot.db.read() as conn:
        before = await cases.case_by_ref(conn, "KZ-0001")
        assert before is not None
        deliveries_before = await cases.deliveries(conn, before.id)
    bot.later(int(KEEP.total_seconds() // 60))

    assert await retention(bot).purge() == ["KZ-0001", "KZ-0002"]

    stored = await stored_text(bot)
    for content in ("Suspected heroin", "Kamaz", "Hairatan", "Driver changed", "Seized 40 kg",
                    "Watch the night train", "B2"):
        assert content not in stored, content
    assert "Still looking" in stored  # the open case keeps everything
    async with bot.db.read() as conn:
        after = await cases.case_by_ref(conn, "KZ-0001")
        assert after is not None
        assert (after.text, after.fields, after.grading, after.outcome) == ("", (), None, None)
        assert (after.state, after.priority, after.tlp, after.category, after.closed_by,
                after.created_ms, after.closed_ms, after.origin_post) == (
            before.state, before.priority, before.tlp, before.category, before.closed_by,
            before.created_ms, before.closed_ms, before.origin_post)
        assert await cases.deliveries(conn, after.id) == deliveries_before
        kinds = [entry.kind for entry in await cases.timeline(conn, after.id)]
        assert kinds == ["created", "routed", "routed", "acknowledged", "updated", "closed",
                         "purged"]
        purged = [entry for entry in await audit.entries(conn) if entry.action == "purged"]
        rows = await conn.execute_fetchall(
            "SELECT ref, purged_ms FROM cases WHERE purged_ms IS NOT NULL ORDER BY ref")
    assert [(entry.case_ref, entry.actor) for entry in purged] == [
        ("KZ-0001", audit.LIAISON), ("KZ-0002", audit.LIAISON), (None, audit.LIAISON)]
    assert purged[2].detail["messages"] >= 1  # the answers to the officers' commands
    assert purged[0].detail["messages"] >= 3 and purged[0].detail["timeline_details"] == 2
    assert [tuple(row) for row in rows] == [("KZ-0001", bot.clock.now_ms()),
                                            ("KZ-0002", bot.clock.now_ms())]


async def test_a_purge_happens_once_and_the_chain_still_verifies(bot: Bot) -> None:
    await worked_cases(bot)
    bot.later(int(KEEP.total_seconds() // 60))
    await retention(bot).purge()
    bot.later(60)
    assert await retention(bot).purge() == []
    async with bot.db.read() as conn:
        actions = [entry.action for entry in await audit.entries(conn)]
        check = await audit.verify(conn)
    assert actions.count("purged") == 3  # two cases, then the old answers once
    assert check.ok


async def test_old_messages_of_no_case_lose_their_content_but_pending_ones_wait(
    bot: Bot
) -> None:
    status = await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ\nLook out")
    await bot.send_all()
    async with bot.db.transaction() as conn:  # a pending answer that never got out
        await conn.execute(
            "INSERT INTO outbox (room_id, event_type, content, txn_id, next_attempt_ms,"
            " created_ms) VALUES (?, 'm.room.message', '{\"body\":\"waiting\"}', 'txn-w', 0,"
            " ?)", (TJ_ROOM, bot.clock.now_ms()))
    bot.later(int(KEEP.total_seconds() // 60))
    assert await retention(bot).purge() == []
    async with bot.db.read() as conn:
        rows = await conn.execute_fetchall("SELECT state, content FROM outbox ORDER BY id")
    assert {(state, content) for state, content in rows if state == "sent"} == {("sent", "{}")}
    assert ("pending", '{"body":"waiting"}') in [tuple(row) for row in rows]
    assert status.text.startswith("KZ-0001")
    assert "Look out" in await stored_text(bot)  # the open case itself is kept


async def test_retention_off_keeps_everything(bot: Bot) -> None:
    await worked_cases(bot)
    bot.later(10 * 365 * 24 * 60)
    assert await Retention(bot.db, bot.clock, None).purge() == []
    assert "Seized 40 kg" in await stored_text(bot)
