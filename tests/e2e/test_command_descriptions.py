"""The bot's commands as room state for clients (MSC4391, MSC4332): published once the bot
may write state in a post room, matching `!help`, and an MSC4391 invocation is obeyed."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from devkit.synapse import LocalSynapse, SynapseAdminError
from liaison.commands.command_descriptions import (
    MSC4332_COMMANDS,
    MSC4391_COMMAND,
    MSC4391_DESCRIPTION,
    state_key,
)
from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_chasing import ANSWER_TIMEOUT_S, post
from tests.e2e.test_notifications import ask

COMMANDS = ("help", "ping", "alert", "request", "ack", "update", "close", "cancel", "status",
            "pending", "snooze", "escalations", "report", "lang", "delay", "refuse", "permit",
            "check", "links", "unlink", "posts")


async def test_commands_are_published_as_state_matching_help_and_an_invocation_is_obeyed(
    synapse: LocalSynapse, officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz = await officer_factory("kz")
    room_id = await kz.create_room("post")
    bot = await bot_factory(config={"posts": [post("KZ-ZHIBEK", room_id, language="ru")]})
    await kz.invite(room_id, bot.user_id)
    await kz.wait_until_joined(room_id, bot.user_id)
    token = kz.client.access_token

    async def state(kind: str, key: str) -> dict[str, Any] | None:
        try:
            return await synapse.request(
                "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{kind}/"
                       f"{quote(key, safe='')}", token=token)
        except SynapseAdminError:
            return None

    # Without the power to send state nothing is published.
    await ask(kz, room_id, bot.user_id, "!ping")
    assert await state(MSC4332_COMMANDS, bot.user_id) is None

    levels = await synapse.request(
        "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.power_levels/",
        token=token)
    levels["users"][bot.user_id] = 50
    await synapse.request(
        "PUT", f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.power_levels/",
        levels, token=token)
    found = None
    for _ in range(int(ANSWER_TIMEOUT_S * 10)):  # the bot looks every few seconds
        found = await state(MSC4332_COMMANDS, bot.user_id)
        if found is not None:
            break
        await asyncio.sleep(0.1)
    assert found is not None, bot.log_tail()
    assert found["sigil"] == "!"
    assert [command["syntax"].split()[0] for command in found["commands"]] == list(COMMANDS)

    help_answer = await ask(kz, room_id, bot.user_id, "!help")
    help_lines = (help_answer.body or "").split("\n")
    for name in COMMANDS:
        described = await state(MSC4391_DESCRIPTION, state_key(name, bot.user_id))
        assert described is not None and described["command"] == name, name
        summary = described["description"]["m.text"][0]
        assert summary["lang"] == "ru"  # the room reads Russian
        # The same declaration as !help: its line for the command ends with this summary.
        assert any(line.startswith(f"!{name}") and line.endswith(" — " + summary["body"])
                   for line in help_lines), (name, summary, help_lines)

    # A client that knows the descriptions sends the command as data, body of its choosing.
    event_id = await kz.send_raw(room_id, "m.room.message", {
        "msgtype": "m.text", "body": f"{bot.user_id} ping",
        "m.mentions": {"user_ids": [bot.user_id]},
        MSC4391_COMMAND: {"command": "ping", "arguments": {}}})
    pong = await kz.wait_for(
        lambda m: m.relates_to.get("m.in_reply_to", {}).get("event_id") == event_id,
        room_id=room_id, sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    assert (pong.body or "").startswith("pong"), pong.describe()
