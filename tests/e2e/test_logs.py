"""The bot's JSON log against a real homeserver: each line about an alert names the case
and the room, and none holds what the officers wrote."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from devkit.botprocess import BotProcess
from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_cases import ALERT, Posts, about_case, posts_for

FREE_TEXT = ("Suspected heroin", "white Kamaz", "01A123BC", "Hairatan")
"""Pieces of `ALERT` that are the officer's own words."""


async def log_line(bot: BotProcess, predicate: Callable[[dict[str, Any]], bool],
                   timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [record for record in bot.log_records() if predicate(record)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no such log line:\n{bot.log_tail()}")
        await asyncio.sleep(0.1)


async def posts_logging_json(officer_factory: OfficerFactory,
                             bot_factory: BotFactory) -> Posts:
    """KZ, UZ and TJ officers in their posts' encrypted rooms, the bot logging JSON."""
    return await posts_for(officer_factory, bot_factory,
                           {"logging": {"format": "json", "level": "INFO"}})


async def test_log_lines_about_an_alert_name_its_case_and_room_but_not_its_text(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    posts = await posts_logging_json(officer_factory, bot_factory)
    bot = posts.bot
    sent = await posts.ask(posts.kz, posts.kz_room, ALERT)
    assert (sent.body or "").startswith("KZ-0001: Urgent alert sent to:"), sent.body
    relayed = await posts.uz.wait_for(lambda m: about_case(m, "KZ-0001"),
                                      room_id=posts.uz_room, sender=bot.user_id)
    await posts.uz.react(posts.uz_room, relayed.event_id, "👍")
    await posts.kz.wait_for(lambda m: about_case(m, "KZ-0001", "ack"), room_id=posts.kz_room,
                            sender=bot.user_id)

    routed = await log_line(bot, lambda r: r.get("msg") == "command handled"
                            and r.get("room_id") == posts.kz_room)
    assert (routed["level"], routed["command"], routed["outcome"], routed["case_ref"]) == (
        "info", "alert", "done", "KZ-0001")
    assert routed["event_id"].startswith("$")
    acked = await log_line(bot, lambda r: r.get("msg") == "case event handled")
    assert (acked["room_id"], acked["case_ref"]) == (posts.uz_room, "KZ-0001")

    log = bot.log_path.read_text(encoding="utf-8")
    leaked = [line for line in log.splitlines() if any(text in line for text in FREE_TEXT)]
    assert not leaked, leaked
