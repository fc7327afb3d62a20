"""The chase against a real database with an injected clock: what is queued for which
room and when, what stops it, what a crash or a restart does, and the supervisors'
commands `!snooze`, `!escalations` and `!report`."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.bot.chaser import Chaser
from liaison.bot.clock import Clock
from liaison.commands.case_render import CASE_KEY
from liaison.commands.chasing import plan_delivery
from liaison.commands.registry import CommandRegistry
from liaison.commands.render import Notice
from liaison.config import Config, parse_config
from liaison.handlers import default_registry
from liaison.storage import cases, chasing, outbox
from liaison.storage.db import Database
from tests.unit.commandrun import run_command

NOW = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)

KZ_ROOM = "!kz-zhibek:liaison.example"
UZ_ROOM = "!uz-termez:liaison.example"
CARICC_ROOM = "!caricc:liaison.example"
TJ_ROOM = "!tj-panj:liaison.example"
TJ_SUP_ROOM = "!tj-supervisors:liaison.example"
OTHER_ROOM = "!somewhere:liaison.example"


def dm(user_id: str) -> str:
    """The direct room of `user_id` with the bot (as `FakeDestinations` opens them)."""
    return f"!dm-{user_id[1:].split(':')[0]}:liaison.example"

KZ = "@aigerim:liaison.example"
KZ_BOSS = "@kz-boss:liaison.example"
UZ = "@bekzod:liaison.example"
UZ_DUTY = "@uz-duty:liaison.example"
UZ_BOSS = "@uz-boss:liaison.example"
TJ = "@farhod:liaison.example"
TJ_BOSS = "@tj-boss:liaison.example"
CARICC_DUTY = "@caricc-duty:liaison.example"
ADMIN = "@admin:liaison.example"


def post(post_id: str, room: str, timezone: str = "UTC", **extra: Any) -> dict[str, Any]:
    return {"id": post_id, "names": {"en": post_id.split("-")[1].title()},
            "country": post_id[:2], "agency": extra.pop("agency", "border"), "room": room,
            "timezone": timezone, **extra}


CONFIG: dict[str, Any] = {
    "homeserver": {"url": "https://matrix.liaison.example"},
    "bot": {"user_id": "@liaison:liaison.example", "password": {"env": "X"},
            "pickle_key": {"env": "Y"}},
    "data_dir": "data",
    "trust": {"policy": "tofu"},
    "access": {"admins": [ADMIN]},
    "posts": [
        post("KZ-ZHIBEK", KZ_ROOM, neighbours=["UZ-TERMEZ"], supervisors=[KZ_BOSS]),
        post("UZ-TERMEZ", UZ_ROOM, "Asia/Tashkent", neighbours=["KZ-ZHIBEK"],
             duty_officers=[UZ_DUTY, UZ], supervisors=[UZ_BOSS]),
        post("TJ-PANJ", TJ_ROOM, "Asia/Dushanbe", supervisors=[TJ_BOSS],
             supervisors_room=TJ_SUP_ROOM, quiet_hours="22:00-06:00"),
        post("KZ-CARICC", CARICC_ROOM, "Asia/Almaty", agency="regional-centre",
             duty_officers=[CARICC_DUTY]),
    ],
    "chasing": {"regional_centre": "KZ-CARICC"},
}
JOINED = frozenset({KZ_ROOM, UZ_ROOM, CARICC_ROOM, TJ_ROOM, TJ_SUP_ROOM, OTHER_ROOM})


class FixedClock(Clock):
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at

    def now_ms(self) -> int:
        return int(self.at.timestamp() * 1000)


@dataclass
class FakeDestinations:
    """Direct rooms open one round after they are asked for, as after a real sync."""

    joined: frozenset[str] = JOINED
    opened: dict[str, str] = field(default_factory=dict)
    ready: set[str] = field(default_factory=set)
    never_join: set[str] = field(default_factory=set)
    """Supervisors who never join the direct room the bot opens for them."""
    rooms: dict[str, frozenset[str]] = field(default_factory=dict)
    """Members of other rooms, where a test says who is in them."""

    def joined_rooms(self) -> frozenset[str]:
        return self.joined

    def members(self, room_id: str) -> frozenset[str] | None:
        """A direct room holds the bot and the supervisor it was opened for."""
        for user_id, opened in self.opened.items():
            if opened == room_id:
                return frozenset({user_id, "@liaison:liaison.example"})
        return self.rooms.get(room_id)

    async def direct_room(self, user_id: str) -> str | None:
        if user_id in self.never_join:
            return None
        if user_id in self.ready:
            return self.opened[user_id]
        self.opened[user_id] = f"!dm-{user_id[1:].split(':')[0]}:liaison.example"
        self.ready.add(user_id)
        return None


@dataclass
class Bot:
    db: Database
    config: Config
    registry: CommandRegistry = field(default_factory=default_registry)
    clock: FixedClock = field(default_factory=lambda: FixedClock(NOW))
    destinations: FakeDestinations = field(default_factory=FakeDestinations)
    events: int = 0
    chaser: Chaser | None = None

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """A new Chaser, as a restarted process would make (it starts now)."""
        self.chaser = Chaser(self.db, self.clock, self.config, destinations=self.destinations,
                             wake_sender=lambda: None)

    async def say(self, room_id: str, sender: str, body: str) -> Notice:
        self.events += 1
        return await run_command(
            self.db, self.config, self.clock, self.registry, room_id=room_id, sender=sender,
            body=body, event_id=f"$event{self.events}", at=self.clock.at,
            joined=JOINED | {dm(user) for user in (UZ_BOSS, TJ_BOSS, KZ_BOSS, ADMIN)},
            members={dm(user): frozenset({user, "@liaison:liaison.example"})
                     for user in (UZ_BOSS, TJ_BOSS, KZ_BOSS, ADMIN)})

    async def tick(self) -> int | None:
        assert self.chaser is not None
        return await self.chaser.tick()

    async def at(self, minutes: float) -> None:
        """Move the clock to `minutes` after NOW and run a chase round."""
        self.clock.at = NOW + timedelta(minutes=minutes)
        await self.tick()

    async def chased(self, room_id: str | None = None) -> list[outbox.OutboxMessage]:
        """Chase messages queued so far (reminders, escalations, taken), oldest first."""
        async with self.db.read() as conn:
            rows = await conn.execute_fetchall(
                "SELECT id FROM outbox WHERE kind LIKE 'chase-%' ORDER BY id")
            messages = [await outbox.get(conn, row[0]) for row in rows]
        return [m for m in messages if m is not None and room_id in (None, m.room_id)]

    async def send_all(self) -> None:
        async with self.db.transaction() as conn:
            rows = await conn.execute_fetchall("SELECT id FROM outbox WHERE state = 'pending'")
            for row in rows:
                await outbox.mark_sent(conn, row[0], event_id=f"$sent{row[0]}",
                                       now_ms=self.clock.now_ms())

    async def timeline(self, ref: str) -> list[cases.TimelineEntry]:
        async with self.db.read() as conn:
            case = await cases.case_by_ref(conn, ref)
            assert case is not None
            return await cases.timeline(conn, case.id)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    database = await Database.open(tmp_path / "liaison.db")
    yield Bot(database, parse_config(json.dumps(CONFIG)))
    await database.close()


def steps(messages: list[outbox.OutboxMessage]) -> list[tuple[str, str]]:
    """(about, step) of each chase message."""
    return [(m.content[CASE_KEY]["about"], m.content[CASE_KEY].get("step", ""))
            for m in messages]


FLASH = "!alert flash to:UZ-TERMEZ\nvehicle: white Kamaz\nSuspected heroin."


# --- reminders and escalations ------------------------------------------------------------


async def test_unacknowledged_flash_alert_is_reminded_then_escalated_to_supervisors(
        bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.send_all()
    await bot.at(9)
    assert await bot.chased() == []

    await bot.at(10)
    [reminder] = await bot.chased()
    assert reminder.room_id == UZ_ROOM and reminder.kind == "chase-remind"
    assert reminder.content["m.mentions"] == {"user_ids": [UZ_DUTY, UZ]}
    assert reminder.content["m.relates_to"]["m.in_reply_to"]["event_id"].startswith("$sent")
    body = reminder.content["body"]
    assert body.startswith("TLP:GREEN Reminder: KZ-0001, Flash alert from Zhibek (KZ-ZHIBEK)")
    assert "vehicle: white Kamaz" in body and "Acknowledge with !ack KZ-0001" in body
    assert "Late" not in body

    # At 15 minutes: the second reminder, and the escalation waits one round for the
    # supervisor's direct room to open.
    await bot.at(15)
    assert steps(await bot.chased()) == [("reminder", "ack.remind.1"),
                                         ("reminder", "ack.remind.2")]
    await bot.at(15.05)
    escalation = (await bot.chased())[-1]
    assert escalation.room_id == "!dm-uz-boss:liaison.example"
    assert escalation.content["m.mentions"] == {"user_ids": [UZ_BOSS]}
    assert escalation.content["body"].startswith(
        "TLP:GREEN Escalation: KZ-0001, Flash alert from Zhibek (KZ-ZHIBEK) to Termez "
        "(UZ-TERMEZ), has not been acknowledged 15m after it was sent")
    assert "vehicle: white Kamaz" in escalation.content["body"]

    # At 30 minutes the origin's supervisors and the regional centre; the centre reads
    # the reference and the posts, not the content.
    await bot.at(30)
    await bot.at(30.05)
    last = await bot.chased()
    assert steps(last) == [("reminder", "ack.remind.1"), ("reminder", "ack.remind.2"),
                           ("escalation", "ack.escalate.1"), ("reminder", "ack.remind.3"),
                           ("reminder", "ack.remind.4"), ("escalation", "ack.escalate.2"),
                           ("escalation", "ack.escalate.2")]
    centre = [m for m in last if m.room_id == CARICC_ROOM]
    assert len(centre) == 1 and "white Kamaz" not in centre[0].content["body"]
    assert centre[0].content["m.mentions"] == {"user_ids": [CARICC_DUTY]}
    kinds = [entry.kind for entry in await bot.timeline("KZ-0001")]
    assert kinds.count("reminded") == 4 and kinds.count("escalated") == 2


async def test_a_reminder_suggests_a_snooze_the_policy_accepts_and_rings(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.send_all()
    await bot.at(10)
    [reminder] = await bot.chased()
    # The default flash policy allows at most 10m: the reminder must not suggest 30m.
    assert "!snooze KZ-0001 10m" in reminder.content["body"], reminder.content["body"]
    assert "30m" not in reminder.content["body"]
    assert reminder.content["msgtype"] == "m.text"  # it rings the duty officers
    answer = await bot.say(UZ_ROOM, UZ, "!snooze KZ-0001 10m")
    assert answer.text == "Reminders for KZ-0001 wait until 2026-05-01 15:20 +05:00."


async def test_acknowledging_stops_everything_left_and_tells_the_supervisors(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.at(15)
    await bot.at(16)
    before = await bot.chased()
    assert steps(before)[-1] == ("escalation", "ack.escalate.1")

    await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")
    await bot.at(16.1)
    taken = (await bot.chased())[len(before):]
    assert [(m.room_id, m.kind) for m in taken] == [("!dm-uz-boss:liaison.example",
                                                      "chase-taken")]
    assert taken[0].content["body"] == (
        f"TLP:GREEN KZ-0001: Termez (UZ-TERMEZ) acknowledged it ({UZ}, 2026-05-01 15:16 "
        "+05:00). Nothing more to do.")
    for minutes in (20, 25, 30, 300):
        await bot.at(minutes)
    assert len(await bot.chased()) == len(before) + 1
    async with bot.db.read() as conn:
        assert await chasing.next_due_ms(conn) is None


async def test_a_request_acknowledged_but_not_answered_is_chased_for_the_answer(
        bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!request flash to:UZ-TERMEZ due:45m\nWho owns 01A123BC?")
    await bot.at(5)
    await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")
    for minutes in (10, 15, 44):
        await bot.at(minutes)
    assert await bot.chased() == []
    await bot.at(45)
    [reminder] = await bot.chased()
    assert reminder.room_id == UZ_ROOM
    assert reminder.content["body"].startswith(
        "TLP:GREEN Reminder: KZ-0001, Flash request from Zhibek (KZ-ZHIBEK), needs an answer; "
        "it was due 2026-05-01 15:45 +05:00 (sender's time 10:45 +00:00).")
    await bot.say(KZ_ROOM, KZ, "!close KZ-0001 found him")
    for minutes in (60, 75, 200):
        await bot.at(minutes)
    assert len(await bot.chased()) == 1


async def test_a_step_that_fell_due_while_the_bot_was_down_fires_once_marked_late(
        bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.at(1)
    bot.clock.at = NOW + timedelta(minutes=21)  # down from 1 to 21 minutes
    bot.restart()
    await bot.tick()
    await bot.tick()
    sent = await bot.chased()
    assert steps(sent) == [("reminder", "ack.remind.1"), ("reminder", "ack.remind.2"),
                           ("reminder", "ack.remind.3"), ("escalation", "ack.escalate.1")]
    assert all("(Late: this was due" in m.content["body"] for m in sent)
    assert all(entry.detail["late"] for entry in await bot.timeline("KZ-0001")
               if entry.kind in ("reminded", "escalated"))
    await bot.tick()
    assert len(await bot.chased()) == 4


async def test_routine_steps_wait_out_the_target_post_quiet_hours(bot: Bot) -> None:
    # 10:00 UTC is 15:00 in Dushanbe; 24h later the reminder falls at 15:00 (not quiet).
    bot.clock.at = datetime(2026, 5, 1, 18, 0, tzinfo=UTC)  # 23:00 in Dushanbe
    await bot.say(KZ_ROOM, KZ, "!alert routine to:TJ-PANJ\nRoutine notice")
    await bot.tick()
    async with bot.db.read() as conn:
        pending = await chasing.pending_steps(conn)
    due = {record.step.key: datetime.fromtimestamp(record.step.due_ms / 1000, UTC)
           for record in pending}
    # 24h later is 23:00 in Dushanbe: quiet until 06:00 (01:00 UTC).
    assert due["ack.remind.1"] == datetime(2026, 5, 3, 1, 0, tzinfo=UTC)
    # Supervisors with a room the bot is in are told there, all of them at once.
    bot.clock.at = datetime(2026, 5, 4, 1, 0, tzinfo=UTC)
    await bot.tick()
    escalation = (await bot.chased())[-1]
    assert (escalation.room_id, escalation.content["m.mentions"]) == (
        TJ_SUP_ROOM, {"user_ids": [TJ_BOSS]})


# --- crashes ------------------------------------------------------------------------------


class Crash(Exception):
    pass


@given(crashes=st.lists(st.booleans(), min_size=1, max_size=40),
       minutes=st.lists(st.integers(0, 40), min_size=1, max_size=12))
@settings(max_examples=25, deadline=None)
def test_a_crash_at_any_point_of_a_round_never_loses_or_repeats_a_step(
        crashes: list[bool], minutes: list[int]) -> None:
    """Every firing may die before it commits; rounds run at random times, then to the
    end. Each step's messages are queued exactly once."""
    asyncio.run(_crash_scenario(crashes, sorted(minutes)))


async def _crash_scenario(crashes: list[bool], minutes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        database = await Database.open(Path(workdir) / "liaison.db")
        try:
            bot = Bot(database, parse_config(json.dumps(CONFIG)))
            bot.destinations.ready = {UZ_BOSS, KZ_BOSS}
            bot.destinations.opened = {UZ_BOSS: "!dm-uz:x", KZ_BOSS: "!dm-kz:x"}
            await bot.say(KZ_ROOM, KZ, FLASH)
            original = chasing.mark_fired
            verdicts = iter(crashes)

            async def dying_mark_fired(*args: Any, **kwargs: Any) -> bool:
                if next(verdicts, False):
                    raise Crash("power cut")
                return await original(*args, **kwargs)

            chasing.mark_fired = dying_mark_fired  # type: ignore[assignment]
            try:
                for minute in [*minutes, 60, 61, 62]:
                    bot.clock.at = NOW + timedelta(minutes=minute)
                    bot.restart()
                    try:
                        await bot.tick()
                    except Crash:
                        pass
            finally:
                chasing.mark_fired = original  # type: ignore[assignment]
            for _ in range(len(crashes)):
                await bot.tick()
            sent = steps(await bot.chased())
            assert sorted(sent) == sorted([
                ("reminder", "ack.remind.1"), ("reminder", "ack.remind.2"),
                ("reminder", "ack.remind.3"), ("reminder", "ack.remind.4"),
                ("escalation", "ack.escalate.1"), ("escalation", "ack.escalate.2"),
                ("escalation", "ack.escalate.2")])
        finally:
            await database.close()


# --- !snooze ------------------------------------------------------------------------------


async def test_the_target_post_snoozes_its_chase_within_the_policy_bound(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, FLASH)
    bot.clock.at = NOW + timedelta(minutes=2)
    answer = await bot.say(UZ_ROOM, UZ, "!snooze KZ-0001 10m")
    # The first reminder (due at 10m) moves to 12m; the rest keep their spacing.
    assert answer.text == "Reminders for KZ-0001 wait until 2026-05-01 15:12 +05:00."
    await bot.at(11)
    assert await bot.chased() == []
    await bot.at(12)
    assert steps(await bot.chased()) == [("reminder", "ack.remind.1")]
    kinds = [entry.kind for entry in await bot.timeline("KZ-0001")]
    assert "snoozed" in kinds


@pytest.mark.parametrize(("room", "sender", "body", "expected"), [
    (UZ_ROOM, UZ, "!snooze KZ-0001 11m", "A flash case can be snoozed for at most 10m at a time."),
    (KZ_ROOM, KZ, "!snooze KZ-0001 5m", "KZ-0001 was sent by your post; only the posts it went "
                                         "to can snooze it."),
    (TJ_ROOM, TJ, "!snooze KZ-0001 5m", "There is no case KZ-0001 that your post can see."),
    (UZ_ROOM, UZ, "!snooze KZ-0001", "Give the case and how long, e.g. !snooze KZ-0042 30m."),
    (UZ_ROOM, UZ, "!snooze KZ-0001 soon", "soon is not a duration; write it like 30m, 2h or 1d."),
    (TJ_SUP_ROOM, UZ, "!snooze KZ-0001 5m", "This room is not a post's room"),
    (OTHER_ROOM, UZ, "!snooze KZ-0001 5m", "I do not serve this room"),
])
async def test_bad_snoozes_are_refused_and_change_nothing(
        bot: Bot, room: str, sender: str, body: str, expected: str) -> None:
    await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.tick()
    async with bot.db.read() as conn:
        before = [(r.step.key, r.step.due_ms) for r in await chasing.pending_steps(conn)]
    answer = await bot.say(room, sender, body)
    assert answer.text.startswith(expected), answer.text
    async with bot.db.read() as conn:
        assert [(r.step.key, r.step.due_ms) for r in await chasing.pending_steps(conn)] == before


async def test_nothing_to_snooze_once_acknowledged(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")
    answer = await bot.say(UZ_ROOM, UZ, "!snooze KZ-0001 5m")
    assert answer.text == "KZ-0001 is not being chased at your post; there is nothing to snooze."


# --- !escalations and !report -------------------------------------------------------------


async def test_escalations_lists_open_escalations_for_the_supervisors_posts(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.at(15)
    await bot.at(15.1)
    listed = await bot.say(dm(UZ_BOSS), UZ_BOSS, "!escalations")
    assert listed.text.splitlines() == [
        "Open escalations for your posts:",
        "• TLP:GREEN KZ-0001 Flash alert from Zhibek (KZ-ZHIBEK) to Termez (UZ-TERMEZ): not "
        "acknowledged; escalated 2026-05-01 15:15 +05:00"]
    assert (await bot.say(dm(TJ_BOSS), TJ_BOSS, "!escalations")).text == (
        "No open escalations for your posts.")
    refused = await bot.say(UZ_ROOM, UZ, "!escalations")
    assert refused.text == "!escalations is only for supervisors."
    await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")
    assert (await bot.say(dm(UZ_BOSS), UZ_BOSS, "!escalations")).text == (
        "No open escalations for your posts.")


async def test_report_counts_cases_and_response_times_per_post(bot: Bot) -> None:
    # UZ receives three alerts and a request: acknowledged after 2m and 6m, one never;
    # the request acknowledged after 1m. KZ sends all four.
    await bot.say(KZ_ROOM, KZ, FLASH)                                     # KZ-0001
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ\nSecond")      # KZ-0002
    await bot.say(KZ_ROOM, KZ, "!alert flash to:UZ-TERMEZ\nThird")        # KZ-0003
    await bot.say(KZ_ROOM, KZ, "!request urgent to:UZ-TERMEZ due:4h\nQ")  # KZ-0004
    await bot.at(1)
    await bot.say(UZ_ROOM, UZ, "!ack KZ-0004")
    await bot.at(2)
    await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")
    await bot.at(6)
    await bot.say(UZ_ROOM, UZ, "!ack KZ-0002")
    await bot.at(20)
    await bot.at(20.1)
    report = await bot.say(dm(UZ_BOSS), UZ_BOSS, "!report")
    assert report.text.splitlines() == [
        "Report for the last 7d (2026-04-24 15:20 +05:00 to 2026-05-01 15:20 +05:00):",
        "Termez (UZ-TERMEZ)",
        "• Cases sent 0, received 4.",
        "• Acknowledged 3 of 4: median 2m, 90% within 6m.",
        "• Answered 0 of 1 requests: median none, 90% within none.",
        "• Overdue now 1; escalations 1.",
    ]
    kz = await bot.say(dm(KZ_BOSS), KZ_BOSS, "!report 30d")
    assert "Zhibek (KZ-ZHIBEK)" in kz.text and "• Cases sent 4, received 0." in kz.text
    everything = await bot.say(dm(ADMIN), ADMIN, "!report 1d")
    assert everything.text.count("• Cases sent") == 4
    assert (await bot.say(UZ_ROOM, UZ, "!report")).text == "!report is only for supervisors."
    bad = await bot.say(dm(UZ_BOSS), UZ_BOSS, "!report forever")
    assert bad.text.startswith("forever is not a period; write it like 7d or 30d")


async def test_status_shows_the_chase_in_the_timeline(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.at(1)
    bot.clock.at = NOW + timedelta(minutes=12)
    bot.restart()
    await bot.tick()
    await bot.say(UZ_ROOM, UZ, "!snooze KZ-0001 5m")
    status = await bot.say(KZ_ROOM, KZ, "!status KZ-0001")
    assert "• 2026-05-01 10:12 +00:00 reminder to Termez (UZ-TERMEZ) (late)" in status.text
    assert f"• 2026-05-01 10:12 +00:00 reminders snoozed by Termez (UZ-TERMEZ) ({UZ})" \
        in status.text


async def test_an_escalation_waits_for_the_direct_room_join_then_goes_to_the_supervisors_room(
        tmp_path: Path) -> None:
    """A supervisor named by user id, who does not join the direct room within
    `chasing.direct_room_wait`: the escalation goes to their post's supervisors' room,
    mentioning them, and the timeline says who was not reached."""
    uz_sup_room = "!uz-supervisors:liaison.example"
    config = json.loads(json.dumps(CONFIG))
    config["posts"][1]["supervisors_room"] = uz_sup_room
    config["chasing"].update(direct_room_wait="3m", policies={"flash": {
        "acknowledge_within": "10m", "reminders": 0,
        "escalate": [{"after": "10m", "to": [UZ_BOSS]}]}})
    database = await Database.open(tmp_path / "liaison.db")
    try:
        bot = Bot(database, parse_config(json.dumps(config)),
                  destinations=FakeDestinations(joined=JOINED | {uz_sup_room},
                                                never_join={UZ_BOSS}))
        await bot.say(KZ_ROOM, KZ, FLASH)
        await bot.at(10)
        await bot.at(12.9)
        assert await bot.chased() == []  # waiting for the join, durably: across a restart
        bot.restart()
        await bot.at(13)
        [escalation] = await bot.chased()
        assert escalation.room_id == uz_sup_room
        assert escalation.content["m.mentions"] == {"user_ids": [UZ_BOSS]}
        assert escalation.content["body"].startswith("TLP:GREEN Escalation: KZ-0001")
        status = await bot.say(KZ_ROOM, KZ, "!status KZ-0001")
        assert (f"escalated about Termez (UZ-TERMEZ) (late); not reached: {UZ_BOSS} did not "
                "join the direct message in time") in status.text, status.text
    finally:
        await database.close()


async def test_one_round_plans_every_new_delivery_however_many_and_later_ones_too(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("liaison.bot.chaser.PLAN_BATCH", 2)

    async def planned() -> int:
        async with bot.db.read() as conn:
            rows = await conn.execute_fetchall("SELECT COUNT(*) FROM chase_plans")
        return int(rows[0][0])

    for _ in range(5):
        await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.tick()
    assert await planned() == 5
    await bot.tick()  # nothing new: the watermark skips what was looked at
    assert await planned() == 5
    await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.tick()
    assert await planned() == 6


async def test_a_round_that_fails_moves_no_watermark_and_the_next_one_catches_up(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def planned() -> int:
        async with bot.db.read() as conn:
            rows = await conn.execute_fetchall("SELECT COUNT(*) FROM chase_plans")
        return int(rows[0][0])

    async def pending() -> int:
        async with bot.db.read() as conn:
            rows = await conn.execute_fetchall(
                "SELECT COUNT(*) FROM chase_steps WHERE state = 'pending'")
        return int(rows[0][0])

    def fail_once(name: str) -> None:
        original = getattr(chasing, name)
        calls: list[int] = []

        async def failing(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("disk full")
            return await original(*args, **kwargs)

        monkeypatch.setattr(chasing, name, failing)

    await bot.say(KZ_ROOM, KZ, FLASH)
    fail_once("save_plan")
    with pytest.raises(RuntimeError):
        await bot.tick()  # the plan is rolled back
    assert await planned() == 0
    await bot.tick()
    assert await planned() == 1 and await pending() > 0

    await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")
    fail_once("untold_escalations")
    with pytest.raises(RuntimeError):
        await bot.tick()  # stopping the acknowledged chase is rolled back
    assert await pending() > 0
    await bot.tick()
    assert await pending() == 0


async def test_a_delivery_that_cannot_be_planned_does_not_stop_the_others(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = plan_delivery
    seen: list[int] = []

    def plan_or_fail(*args: Any, **kwargs: Any) -> Any:
        seen.append(1)
        if len(seen) == 1:
            raise ValueError("a policy the planner cannot read")
        return original(*args, **kwargs)

    monkeypatch.setattr("liaison.bot.chaser.plan_delivery", plan_or_fail)
    await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.tick()
    async with bot.db.read() as conn:
        rows = await conn.execute_fetchall(
            "SELECT c.ref FROM chase_plans p JOIN deliveries d ON d.id = p.delivery_id"
            " JOIN cases c ON c.id = d.case_id")
    assert [row[0] for row in rows] == ["KZ-0002"]


async def test_the_taken_steps_are_found_through_their_delivery_not_every_pending_step(
    bot: Bot,
) -> None:
    async with bot.db.read() as conn:
        plan = [row[3] for row in await conn.execute_fetchall(
            "EXPLAIN QUERY PLAN " + chasing.TAKEN_STEPS_SQL, (0, 1))]
    steps = [line for line in plan if line.startswith("SEARCH s ")]
    assert steps and "(delivery_id=?)" in steps[0], plan
    assert not any("chase_steps_pending" in line for line in plan), plan


async def test_a_read_receipt_on_the_relayed_case_or_later_marks_it_seen_once(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.send_all()
    relayed_event = await sent_event(bot, UZ_ROOM)
    async with bot.db.transaction() as conn:
        # A receipt on an event the bot never saw places nothing; one in another room
        # neither.
        assert await cases.mark_seen(conn, UZ_ROOM, "$unknown", UZ, now_ms=bot.clock.now_ms()
                                     ) == []
        assert await cases.mark_seen(conn, KZ_ROOM, relayed_event, UZ,
                                     now_ms=bot.clock.now_ms()) == []
    status = await bot.say(KZ_ROOM, KZ, "!status KZ-0001")
    assert "Termez (UZ-TERMEZ): sent 2026-05-01 10:00 +00:00, not acknowledged" in status.text

    bot.clock.at = NOW + timedelta(minutes=3)
    async with bot.db.transaction() as conn:
        [seen] = await cases.mark_seen(conn, UZ_ROOM, relayed_event, UZ,
                                       now_ms=bot.clock.now_ms())
        assert seen.post == "UZ-TERMEZ"
        assert await cases.mark_seen(conn, UZ_ROOM, relayed_event, UZ_DUTY,
                                     now_ms=bot.clock.now_ms()) == []
    status = await bot.say(KZ_ROOM, KZ, "!status KZ-0001")
    assert (f"Termez (UZ-TERMEZ): sent 2026-05-01 10:00 +00:00, seen 2026-05-01 10:03 +00:00 "
            f"by {UZ}, not acknowledged") in status.text, status.text
    assert f"10:03 +00:00 seen at Termez (UZ-TERMEZ) ({UZ})" in status.text


async def test_a_receipt_on_a_later_message_in_the_room_counts_as_seen(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.send_all()
    relayed_event = await sent_event(bot, UZ_ROOM)
    await bot.at(10)  # a reminder into the same room, after the relay
    await bot.send_all()
    answer = await sent_event(bot, UZ_ROOM)
    assert answer != relayed_event
    async with bot.db.transaction() as conn:
        [seen] = await cases.mark_seen(conn, UZ_ROOM, answer, UZ_DUTY,
                                       now_ms=bot.clock.now_ms())
    assert (seen.post, seen.relayed_event_id) == ("UZ-TERMEZ", relayed_event)


async def sent_event(bot: Bot, room_id: str) -> str:
    """The event id of the last message the bot sent into `room_id`."""
    async with bot.db.read() as conn:
        rows = await conn.execute_fetchall(
            "SELECT event_id FROM outbox WHERE room_id = ? AND state = 'sent' ORDER BY id DESC"
            " LIMIT 1", (room_id,))
    return str(rows[0][0])
