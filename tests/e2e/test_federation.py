"""Across borders for real: the bot on one homeserver, partner posts on another, the two
federating over loopback (`devkit.federation.SynapsePair`). Every message is read as the
officers decrypted it, each on their own server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devkit.botprocess import BotProcess
from devkit.element import ElementOfficer, Isolation, node_available
from devkit.federation import SynapsePair
from devkit.officer import Officer
from devkit.synapse import LocalSynapse
from liaison.bot.crosssigning import ensure_cross_signed
from tests.e2e.conftest import BotFactory, OfficerOnFactory, unique
from tests.e2e.test_case_flow import in_thread, relayed, told
from tests.e2e.test_cases import ALERT, Posts, about_case, post
from tests.e2e.test_chasing import about
from tests.e2e.test_element import answers

WAIT_S = 60.0
INVITE_FAILED = "could not invite the supervisor to the direct room; will retry"


@asynccontextmanager
async def running_again(server: LocalSynapse) -> AsyncIterator[None]:
    """The pair is shared by the session: `server` runs again whatever happens here."""
    try:
        yield
    finally:
        if not server.running:
            await server.start()


async def wait_for_log(bot: BotProcess, predicate: Callable[[dict[str, Any]], bool], *,
                       count: int = 1, timeout: float = WAIT_S) -> None:
    """Until the bot has logged `count` records matching `predicate`."""
    async def enough() -> bool:
        return sum(1 for record in bot.log_records() if predicate(record)) >= count
    await eventually(enough, f"{count} bot log records:\n{bot.log_tail()}", timeout)


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


async def border(pair: SynapsePair, officer_on: OfficerOnFactory, bot_factory: BotFactory,
                 config: dict[str, Any] | None = None, *,
                 uz_boss: Officer | None = None) -> Border:
    """The bot on `home` serves KZ-ZHIBEK and TJ-PANJ (home) and UZ-TERMEZ (partner); it
    accepts invites from its own server and from the UZ officer only. `uz_boss`, if given,
    supervises UZ-TERMEZ (no supervisors' room: direct messages)."""
    kz = await officer_on(pair.home, "kz")
    tj = await officer_on(pair.home, "tj")
    uz = await officer_on(pair.partner, "uz")
    rooms = {officer: await officer.create_room("post") for officer in (kz, uz, tj)}
    termez = post("UZ-TERMEZ", rooms[uz], "Asia/Tashkent", ["KZ-ZHIBEK", "TJ-PANJ"])
    if uz_boss is not None:
        termez.update(duty_officers=[uz.user_id], supervisors=[uz_boss.user_id])
    bot = await bot_factory(config={
        "access": {"allowed_inviters": {"users": [uz.user_id],
                                        "servers": [pair.home.server_name]}},
        "posts": [
            post("KZ-ZHIBEK", rooms[kz], "Asia/Almaty", ["UZ-TERMEZ"]),
            termez,
            post("TJ-PANJ", rooms[tj], "Asia/Dushanbe", ["UZ-TERMEZ"]),
        ],
        **(config or {}),
    })
    for officer, room_id in rooms.items():
        await officer.invite(room_id, bot.user_id)
    for officer, room_id in rooms.items():
        await officer.wait_until_joined(room_id, bot.user_id, timeout=WAIT_S)
    posts = Posts(bot, kz, uz, tj, rooms[kz], rooms[uz], rooms[tj])
    # The partner's server may show the bot joined before the bot's own sync has brought
    # the room in (a case routed meanwhile is refused: "not in the post's room"); an
    # answer in UZ's room shows the bot has it.
    await posts.ask(uz, rooms[uz], "!ping")
    return Border(posts, pair)


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
    await wait_for_log(bot, lambda r: r.get("msg") == "declined invite"
                       and r.get("room_id") == lounge)
    # (Not asserted: that the stranger's server shows the bot as gone. The bot declines
    # within milliseconds; when that beats the inviting server's own record of the invite,
    # its make_leave answers 403 and Synapse only rejects locally, so the invite stays
    # pending on the stranger's side. Nothing reaches the bot from that room either way.)
    assert lounge not in await synapse_pair.home.joined_rooms(bot.user_id)

    sent_at = time.monotonic()
    alert_id = await kz.send_text(posts.kz_room, ALERT)
    uz_case = await relayed(posts, uz, posts.uz_room, "KZ-0001")
    tj_case = await relayed(posts, tj, posts.tj_room, "KZ-0001")
    assert uz_case.body is not None and "plate 01A123BC" in uz_case.body, uz_case.describe()
    across, at_home = uz_case.received_at - sent_at, tj_case.received_at - sent_at
    print(f"relay latency: across federation {across:.2f}s, same server {at_home:.2f}s, "
          f"ratio {across / at_home:.2f}")

    # Sent is not seen: KZ's !status says "seen" once UZ's client, on the partner's
    # server, sends a read receipt on the relayed case.
    status = await posts.ask(kz, posts.kz_room, "!status KZ-0001")
    assert "Termez (UZ-TERMEZ): sent " in (status.body or ""), status.body
    assert "seen" not in (status.body or "")
    await uz.read(posts.uz_room, uz_case.event_id)
    status = await eventually(lambda: _status_saying(posts, f"seen at Termez (UZ-TERMEZ) "
                                                            f"({uz.user_id})"), "seen")
    assert ", not acknowledged" in status and f"by {uz.user_id}" in status, status

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


async def _status_saying(posts: Posts, needle: str) -> str | None:
    """KZ's `!status KZ-0001` if it says `needle` (asked again by `eventually`)."""
    status = await posts.ask(posts.kz, posts.kz_room, "!status KZ-0001")
    return status.body if needle in (status.body or "") else None


def escalating_soon(**chasing: Any) -> dict[str, Any]:
    """A flash policy that escalates to the target's supervisors 3 s after the case."""
    return {"chasing": {
        "check_every": "1s", **chasing,
        "policies": {"flash": {
            "acknowledge_within": "2s", "remind_every": "1m", "reminders": 0,
            "escalate": [{"after": "3s", "to": ["target-supervisors"]}],
            "answer": {"within": "1h", "remind_every": "1h", "reminders": 0, "escalate": []},
        }}}}


async def joined_at(officer: Officer, room_id: str) -> int:
    """The server time of `officer`'s own join event in `room_id`."""
    joined = await officer.wait_for(
        lambda m: m.type == "m.room.member" and m.content.get("membership") == "join"
        and m.sender == officer.user_id, room_id=room_id)
    return joined.ts


async def test_an_escalation_to_a_remote_supervisor_waits_until_they_join_and_arrives_by_sync(
    synapse_pair: SynapsePair, officer_on_factory: OfficerOnFactory,
    home_bot_factory: BotFactory,
) -> None:
    boss = await officer_on_factory(synapse_pair.partner, "uzboss")
    world = await border(synapse_pair, officer_on_factory, home_bot_factory,
                         escalating_soon(direct_room_wait="2m"), uz_boss=boss)
    posts, bot = world.posts, world.bot
    await posts.ask(posts.kz, posts.kz_room, "!alert flash to:UZ-TERMEZ\nWatch the bridge.")

    # The bot opens a direct room and invites the supervisor, who joins only a while later:
    # meanwhile the escalation is held, not sent to a room their server is not in.
    dm = await boss.wait_for_invite(timeout=WAIT_S)
    await asyncio.sleep(4)  # a supervisor who takes their time
    await boss.join(dm)
    escalation = await boss.wait_for(about("KZ-0001", "escalation"), room_id=dm,
                                     sender=bot.user_id, timeout=WAIT_S)

    # It came through /sync (the only way this client reads a room), decrypted, after the
    # join, mentioning the supervisor; exactly one.
    assert escalation.encrypted and not escalation.undecrypted, escalation.describe()
    assert escalation.ts >= await joined_at(boss, dm)
    assert (escalation.body or "").startswith("TLP:GREEN Escalation: KZ-0001"), escalation.body
    assert escalation.content["m.mentions"] == {"user_ids": [boss.user_id]}
    await posts.ask(posts.uz, posts.uz_room, "!ack KZ-0001")
    await boss.wait_for(about("KZ-0001", "taken"), room_id=dm, sender=bot.user_id)
    assert len([m for m in boss.messages(dm) if about("KZ-0001", "escalation")(m)]) == 1
    status = await posts.ask(posts.kz, posts.kz_room, "!status KZ-0001")
    assert "did not join" not in (status.body or ""), status.body


async def test_a_partner_outage_loses_no_relay_duplicates_none_and_leaves_no_orphan_room(
    synapse_pair: SynapsePair, officer_on_factory: OfficerOnFactory,
    home_bot_factory: BotFactory,
) -> None:
    partner = synapse_pair.partner
    boss = await officer_on_factory(partner, "uzboss")
    world = await border(synapse_pair, officer_on_factory, home_bot_factory,
                         escalating_soon(direct_room_wait="5m"), uz_boss=boss)
    posts, bot = world.posts, world.bot
    served = {posts.kz_room, posts.uz_room, posts.tj_room}
    assert await synapse_pair.home.joined_rooms(bot.user_id) == served
    # UZ is a post the bot has talked to before (`border` pinged it): the bot holds an Olm
    # session with the UZ officer's device, so what it encrypts during the outage is
    # readable once it arrives.

    async with running_again(partner):
        await partner.stop()
        # While the partner's server is down: a case for UZ (the bot's server accepts the
        # relay and holds it for the partner), and its escalation falls due, so the bot
        # opens the supervisor's direct room; the invite cannot reach the partner.
        await posts.ask(posts.kz, posts.kz_room,
                        "!alert flash to:UZ-TERMEZ\nvehicle: white Kamaz\nWatch the bridge.")
        for _ in range(2):  # the invite failed, and failed again on retry
            await wait_for_log(bot, lambda r: r.get("msg") == INVITE_FAILED, count=_ + 1)
        await partner.start()

    # The partner's traffic ends its back-off at the bot's server (instead of waiting it
    # out), and what was held for it arrives: the relayed case once, then the invite to
    # the direct room opened before the outage, where the escalation comes after the join.
    await posts.uz.send_text(posts.uz_room, "Back online")
    relayed_case = await posts.uz.wait_for(lambda m: about_case(m, "KZ-0001"),
                                           room_id=posts.uz_room, sender=bot.user_id,
                                           timeout=WAIT_S)
    assert relayed_case.encrypted and not relayed_case.undecrypted, relayed_case.describe()
    assert "white Kamaz" in (relayed_case.body or ""), relayed_case.describe()
    dm = await boss.accept_invite(timeout=WAIT_S)
    escalation = await boss.wait_for(about("KZ-0001", "escalation"), room_id=dm,
                                     sender=bot.user_id, timeout=WAIT_S)
    assert escalation.encrypted and not escalation.undecrypted, escalation.describe()

    await posts.ask(posts.uz, posts.uz_room, "!ping")  # anything queued for UZ has arrived
    cases = [m for m in posts.uz.messages(posts.uz_room, sender=bot.user_id)
             if about_case(m, "KZ-0001")]
    assert len(cases) == 1, [m.describe() for m in cases]
    # One direct room, the one the supervisor joined: none left behind per failed attempt.
    assert await synapse_pair.home.joined_rooms(bot.user_id) == served | {dm}


@pytest.mark.parametrize(("isolation", "policy"), [("all", "tofu"), ("signed", "cross-signed")])
async def test_an_element_officer_on_the_partner_server_works_a_case_across_the_border(
    synapse_pair: SynapsePair, officer_on_factory: OfficerOnFactory,
    home_bot_factory: BotFactory, tmp_path: Path, isolation: Isolation, policy: str,
) -> None:
    reason = node_available()
    assert reason is None, reason
    kz = await officer_on_factory(synapse_pair.home, "kz")
    if policy == "cross-signed":  # a nio officer gets keys from the bot only then
        await ensure_cross_signed(kz.client, tmp_path / "kz-keys.json",
                                  f"devkit-{kz.user_id[1:].split(':')[0]}")
    uz = await ElementOfficer.create(synapse_pair.partner, unique("uz-element"),
                                     tmp_path / "element", isolation=isolation)
    try:
        kz_room = await kz.create_room("KZ post")
        uz_room = await uz.create_room("UZ post")
        bot = await home_bot_factory(config={
            "access": {"allowed_inviters": {"users": [uz.user_id],
                                            "servers": [synapse_pair.home.server_name]}},
            "posts": [post("KZ-ZHIBEK", kz_room, "Asia/Almaty", ["UZ-TERMEZ"]),
                      post("UZ-TERMEZ", uz_room, "Asia/Tashkent", ["KZ-ZHIBEK"])],
            "trust": {"policy": policy},
        })
        await kz.invite(kz_room, bot.user_id)
        await uz.invite(uz_room, bot.user_id)
        await kz.wait_until_joined(kz_room, bot.user_id)
        await uz.wait_until_joined(uz_room, bot.user_id, timeout=WAIT_S)
        ping = await uz.send_text(uz_room, "!ping")  # the bot's own sync has the room too
        await uz.wait_for(lambda m: answers(m, ping), room_id=uz_room, sender=bot.user_id,
                          timeout=WAIT_S)

        # Element on the partner's server sees the bot's device signed by its owner.
        status = await uz.device_status(bot.user_id, str(bot.device_id))
        assert status["known"] and status["signed_by_owner"], status

        # An alert from KZ reaches Element across the border, decrypted, no shield.
        await kz.send_text(kz_room, "!alert urgent to:UZ-TERMEZ\nvehicle: white Kamaz\n"
                                    "Suspected heroin in a cement load.")
        relayed_case = await uz.wait_for(lambda m: "white Kamaz" in (m.body or ""),
                                         room_id=uz_room, sender=bot.user_id, timeout=WAIT_S)
        assert relayed_case.encrypted and "KZ-0001" in (relayed_case.body or "")
        assert relayed_case.shield_colour == "NONE", relayed_case.describe()

        # Element's thread reply goes back to KZ (and acknowledges the case).
        await uz.send_text(uz_room, "Seen at the Termez bridge, 14:05",
                           thread_root=relayed_case.event_id)
        reply = await kz.wait_for(lambda m: "Termez bridge" in (m.body or ""),
                                  room_id=kz_room, sender=bot.user_id, timeout=WAIT_S)
        assert reply.encrypted and "KZ-0001" in (reply.body or ""), reply.describe()
        undecrypted = [m.describe() for m in await uz.messages(uz_room)
                       if m.sender == bot.user_id and m.decryption_failure]
        assert undecrypted == []
    finally:
        await uz.stop()
        print(f"--- log of the Element officer ---\n{uz.log_path.read_text()[-4000:]}")


async def test_a_remote_officers_new_device_is_noticed_and_reads_the_next_relay(
    synapse_pair: SynapsePair, officer_on_factory: OfficerOnFactory,
    home_bot_factory: BotFactory, tmp_path: Path,
) -> None:
    world = await border(synapse_pair, officer_on_factory, home_bot_factory)
    posts, bot = world.posts, world.bot

    # The UZ officer logs in on a second phone, on the partner's server.
    localpart = posts.uz.user_id[1:].split(":")[0]
    phone = await Officer.create(synapse_pair.partner, localpart, tmp_path / "second-phone")
    await phone.start()
    try:
        notice = await posts.uz.wait_for(
            lambda m: phone.device_id in (m.body or ""), room_id=posts.uz_room,
            sender=bot.user_id, timeout=WAIT_S)
        assert "new device" in (notice.body or ""), notice.describe()
        await posts.kz.send_text(posts.kz_room, ALERT)
        on_phone = await phone.wait_for(lambda m: about_case(m, "KZ-0001"),
                                        room_id=posts.uz_room, sender=bot.user_id,
                                        timeout=WAIT_S)
        assert on_phone.encrypted and not on_phone.undecrypted, on_phone.describe()
        assert "plate 01A123BC" in (on_phone.body or "")
    finally:
        await phone.stop()


async def test_the_bots_own_server_down_and_back_delivers_what_the_partner_sent_meanwhile(
    synapse_pair: SynapsePair, officer_on_factory: OfficerOnFactory,
    home_bot_factory: BotFactory,
) -> None:
    world = await border(synapse_pair, officer_on_factory, home_bot_factory)
    posts, bot = world.posts, world.bot
    home = synapse_pair.home
    async with running_again(home):
        await home.stop()
        # UZ's alert is taken by the partner's server and held for the bot's server.
        await posts.uz.send_text(posts.uz_room, "!alert urgent to:KZ-ZHIBEK\n"
                                                "convoy of three trucks, heading north")
        await home.start()
    incoming = await posts.kz.wait_for(lambda m: "convoy of three trucks" in (m.body or ""),
                                       room_id=posts.kz_room, sender=bot.user_id,
                                       timeout=WAIT_S)
    assert incoming.encrypted and "UZ-0001" in (incoming.body or ""), incoming.describe()
    await posts.ask(posts.kz, posts.kz_room, "!ping")  # anything more has arrived by now
    assert len([m for m in posts.kz.messages(posts.kz_room, sender=bot.user_id)
                if "convoy of three trucks" in (m.body or "")]) == 1
