"""Across borders for real: the bot on one homeserver, partner posts on another, the two
federating over loopback (`devkit.federation.SynapsePair`). Every message is read as the
officers decrypted it, each on their own server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from devkit.botprocess import BotProcess
from devkit.federation import SynapsePair
from devkit.officer import Officer
from devkit.synapse import LocalSynapse, SynapseAdminError
from tests.e2e.conftest import BotFactory, OfficerOnFactory
from tests.e2e.test_case_flow import in_thread, relayed, told
from tests.e2e.test_cases import ALERT, Posts, post

WAIT_S = 60.0


@dataclass
class Border:
    """KZ and TJ posts on the bot's (home) server, UZ-TERMEZ on the partner's."""

    posts: Posts
    pair: SynapsePair

    @property
    def bot(self) -> BotProcess:
        return self.posts.bot


async def eventually(check: Callable[[], Awaitable[Any]], what: str,
                     timeout: float = WAIT_S) -> Any:
    """Poll `check` until it returns something truthy (for what no client event shows)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


async def membership(server: LocalSynapse, officer: Officer, room_id: str, user_id: str) -> str:
    """`user_id`'s membership in `room_id` as `officer`'s server knows it ("" if none)."""
    path = f"/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{user_id}"
    try:
        state = await server.request("GET", path, token=officer.client.access_token)
    except SynapseAdminError as error:
        if error.errcode == "M_NOT_FOUND":
            return ""
        raise
    return str(state.get("membership", ""))


async def border(pair: SynapsePair, officer_on: OfficerOnFactory, bot_factory: BotFactory,
                 config: dict[str, Any] | None = None) -> Border:
    """The bot on `home` serves KZ-ZHIBEK and TJ-PANJ (home) and UZ-TERMEZ (partner); it
    accepts invites from its own server and from the UZ officer only."""
    kz = await officer_on(pair.home, "kz")
    tj = await officer_on(pair.home, "tj")
    uz = await officer_on(pair.partner, "uz")
    rooms = {officer: await officer.create_room("post") for officer in (kz, uz, tj)}
    bot = await bot_factory(config={
        "access": {"allowed_inviters": {"users": [uz.user_id],
                                        "servers": [pair.home.server_name]}},
        "posts": [
            post("KZ-ZHIBEK", rooms[kz], "Asia/Almaty", ["UZ-TERMEZ"]),
            post("UZ-TERMEZ", rooms[uz], "Asia/Tashkent", ["KZ-ZHIBEK", "TJ-PANJ"]),
            post("TJ-PANJ", rooms[tj], "Asia/Dushanbe", ["UZ-TERMEZ"]),
        ],
        **(config or {}),
    })
    for officer, room_id in rooms.items():
        await officer.invite(room_id, bot.user_id)
    for officer, room_id in rooms.items():
        await officer.wait_until_joined(room_id, bot.user_id, timeout=WAIT_S)
    return Border(Posts(bot, kz, uz, tj, rooms[kz], rooms[uz], rooms[tj]), pair)


async def test_a_case_crosses_the_border_and_is_worked_both_ways(
    synapse_pair: SynapsePair, officer_on_factory: OfficerOnFactory,
    home_bot_factory: BotFactory,
) -> None:
    # The bot joined UZ's room, created on the partner's server, on the UZ officer's invite
    # (`border` waited for it); a stranger on the same partner server is declined.
    world = await border(synapse_pair, officer_on_factory, home_bot_factory)
    posts, bot = world.posts, world.bot
    kz, uz, tj = posts.kz, posts.uz, posts.tj
    stranger = await officer_on_factory(synapse_pair.partner, "stranger")
    lounge = await stranger.create_room("lounge", invite=[bot.user_id])
    assert await eventually(
        lambda: _is(membership(synapse_pair.partner, stranger, lounge, bot.user_id), "leave"),
        "the bot to decline the stranger's invite")

    sent_at = time.monotonic()
    alert_id = await kz.send_text(posts.kz_room, ALERT)
    uz_case = await relayed(posts, uz, posts.uz_room, "KZ-0001")
    tj_case = await relayed(posts, tj, posts.tj_room, "KZ-0001")
    assert uz_case.body is not None and "plate 01A123BC" in uz_case.body, uz_case.describe()
    across, at_home = uz_case.received_at - sent_at, tj_case.received_at - sent_at
    print(f"relay latency: across federation {across:.2f}s, same server {at_home:.2f}s, "
          f"ratio {across / at_home:.2f}")

    # UZ acknowledges with a reaction; KZ is told in the case's thread.
    await uz.react(posts.uz_room, uz_case.event_id, "👍")
    ack = await told(posts, kz, posts.kz_room, "KZ-0001", "ack")
    assert "Termez (UZ-TERMEZ) acknowledged KZ-0001" in (ack.body or ""), ack.body
    assert uz.user_id in (ack.body or "") and in_thread(ack, alert_id)

    # UZ (partner server) replies in the relayed case's thread: KZ reads it in its thread.
    await uz.send_text(posts.uz_room, "Truck seen at the bridge", thread_root=uz_case.event_id)
    reply = await told(posts, kz, posts.kz_room, "KZ-0001", "reply")
    assert f"Reply from Termez (UZ-TERMEZ) on KZ-0001 ({uz.user_id})" in (reply.body or "")
    assert (reply.body or "").endswith("Truck seen at the bridge") and in_thread(reply, alert_id)

    # KZ answers in its thread: UZ reads it across the border, in the relayed case's thread.
    await kz.send_text(posts.kz_room, "Stop it at the bridge", thread_root=alert_id)
    carried = await told(posts, uz, posts.uz_room, "KZ-0001", "reply")
    assert (carried.body or "").endswith("Stop it at the bridge")
    assert in_thread(carried, uz_case.event_id)

    status = await posts.ask(kz, posts.kz_room, "!status KZ-0001")
    assert "Termez (UZ-TERMEZ): acknowledged" in (status.body or ""), status.body
    assert uz.user_id in (status.body or "")


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected
