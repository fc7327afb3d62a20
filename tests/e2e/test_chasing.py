"""Chasing end to end: reminders, escalations to supervisors, acknowledgement stopping
the chase, a crash in the middle, and `!report` — on a real Synapse, policies in seconds,
asserting on what each officer's client decrypted."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devkit.botprocess import BotProcess
from devkit.officer import Officer, SeenMessage
from liaison.commands.case_render import CASE_KEY
from liaison.commands.chase_render import elapsed
from liaison.commands.report import median_ms, percentile_ms
from tests.e2e.conftest import BotFactory, OfficerFactory

ANSWER_TIMEOUT_S = 30.0


def about(ref: str, what: str, step: str | None = None) -> Callable[[SeenMessage], bool]:
    """A bot message about case `ref`: `what` is reminder, escalation or taken."""
    def matches(message: SeenMessage) -> bool:
        key = message.content.get(CASE_KEY)
        return (isinstance(key, dict) and key.get("ref") == ref and key.get("about") == what
                and (step is None or key.get("step") == step))
    return matches


def chase_steps(officer: Officer, room_id: str, bot: BotProcess, what: str) -> list[str]:
    """The step keys of the chase messages of one kind the officer decrypted, in order."""
    found = []
    for message in officer.messages(room_id, sender=bot.user_id):
        key = message.content.get(CASE_KEY)
        if isinstance(key, dict) and key.get("about") == what:
            assert message.encrypted, message.describe()
            found.append(str(key.get("step")))
    return found


def post(post_id: str, room: str, **extra: Any) -> dict[str, Any]:
    return {"id": post_id, "names": {"en": post_id.split("-")[1].title()},
            "country": post_id[:2], "agency": "border", "room": room, **extra}


def flash_policy(**changes: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "acknowledge_within": "3s", "remind_every": "3s", "reminders": 3,
        "escalate": [{"after": "5s", "to": ["target-supervisors"]},
                     {"after": "20s", "to": ["origin-supervisors"]}],
        "snooze_max": "1m",
        "answer": {"within": "1h", "remind_every": "1h", "reminders": 0, "escalate": []},
    }
    policy.update(changes)
    return policy


@dataclass
class Chase:
    bot: BotProcess
    kz: Officer
    uz: Officer
    uz_boss: Officer
    kz_boss: Officer
    kz_room: str
    uz_room: str

    async def ask(self, officer: Officer, room_id: str, body: str) -> SeenMessage:
        event_id = await officer.send_text(room_id, body)
        return await officer.wait_for(
            lambda m: (m.content.get("m.relates_to") or {}).get("m.in_reply_to", {}).get(
                "event_id") == event_id,
            room_id=room_id, sender=self.bot.user_id, timeout=ANSWER_TIMEOUT_S)


async def two_posts(officer_factory: OfficerFactory, bot_factory: BotFactory,
                    flash: dict[str, Any], *, uz_extra: dict[str, Any] | None = None,
                    rooms_for: Callable[[Officer], Any] | None = None) -> Chase:
    """KZ and UZ posts, each with an officer, and a supervisor each; UZ's officer is its
    duty officer."""
    kz, uz, uz_boss, kz_boss = [await officer_factory(name) for name in
                                ("kz", "uz", "uzboss", "kzboss")]
    kz_room, uz_room = await kz.create_room("post"), await uz.create_room("post")
    extra = dict(uz_extra or {})
    if rooms_for is not None:
        extra.update(await rooms_for(uz_boss))
    bot = await bot_factory(config={
        "posts": [
            post("KZ-ZHIBEK", kz_room, neighbours=["UZ-TERMEZ"], supervisors=[kz_boss.user_id]),
            post("UZ-TERMEZ", uz_room, neighbours=["KZ-ZHIBEK"], timezone="Asia/Tashkent",
                 duty_officers=[uz.user_id], supervisors=[uz_boss.user_id], **extra),
        ],
        "chasing": {"check_every": "1s", "policies": {"flash": flash}},
    })
    for officer, room_id in ((kz, kz_room), (uz, uz_room)):
        await officer.invite(room_id, bot.user_id)
        await officer.wait_until_joined(room_id, bot.user_id)
    return Chase(bot, kz, uz, uz_boss, kz_boss, kz_room, uz_room)


async def test_unacknowledged_flash_alert_is_reminded_escalated_and_stopped_by_the_ack(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    chase = await two_posts(officer_factory, bot_factory, flash_policy())
    bot, uz = chase.bot, chase.uz
    sent = await chase.ask(chase.kz, chase.kz_room,
                           "!alert flash to:UZ-TERMEZ\nvehicle: white Kamaz\nHeroin suspected.")
    assert (sent.body or "").startswith("KZ-0001: Flash alert sent to:"), sent.body
    started = time.monotonic()

    reminder = await uz.wait_for(about("KZ-0001", "reminder"), room_id=chase.uz_room,
                                 sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    assert reminder.encrypted
    assert reminder.content["m.mentions"] == {"user_ids": [uz.user_id]}
    assert (reminder.body or "").startswith("TLP:GREEN Reminder: KZ-0001, Flash alert"), (
        reminder.body)
    assert "Acknowledge with !ack KZ-0001" in (reminder.body or "")

    # The escalation reaches the target's supervisor in a direct message the bot opened.
    dm = await chase.uz_boss.accept_invite(timeout=ANSWER_TIMEOUT_S)
    escalation = await chase.uz_boss.wait_for(about("KZ-0001", "escalation"), room_id=dm,
                                              sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    assert escalation.encrypted and escalation.undecrypted is False
    assert (escalation.body or "").startswith(
        "TLP:GREEN Escalation: KZ-0001, Flash alert from Zhibek (KZ-ZHIBEK) to Termez "
        "(UZ-TERMEZ), has not been acknowledged"), escalation.body
    assert "vehicle: white Kamaz" in (escalation.body or "")
    assert escalation.content["m.mentions"] == {"user_ids": [chase.uz_boss.user_id]}

    acked = await chase.ask(uz, chase.uz_room, "!ack KZ-0001")
    assert time.monotonic() - started < 19, "the ack came too late to prove anything"
    taken = await chase.uz_boss.wait_for(about("KZ-0001", "taken"), room_id=dm,
                                         sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    assert "Termez (UZ-TERMEZ) acknowledged it" in (taken.body or ""), taken.body

    # Past the last step (the origin's supervisors at 20s): nothing more came.
    await asyncio.sleep(max(0.0, started + 23 - time.monotonic()))
    after_ack = uz.messages(chase.uz_room)
    later = after_ack[[m.event_id for m in after_ack].index(acked.event_id) + 1:]
    assert not [m for m in later if about("KZ-0001", "reminder")(m)], [
        m.describe() for m in later]
    assert chase.kz_boss.client.invited_rooms == {}
    assert chase_steps(chase.uz_boss, dm, bot, "escalation") == ["ack.escalate.1"]


async def test_a_request_acknowledged_but_not_answered_is_chased_for_the_answer(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    chase = await two_posts(officer_factory, bot_factory, flash_policy(
        acknowledge_within="30s", escalate=[],
        answer={"within": "4s", "remind_every": "3s", "reminders": 2, "escalate": []}))
    bot, uz = chase.bot, chase.uz
    await chase.ask(chase.kz, chase.kz_room, "!request flash to:UZ-TERMEZ\nWho owns 01A123BC?")
    await uz.wait_for(lambda m: (m.body or "").startswith("TLP:GREEN Flash request KZ-0001"),
                      room_id=chase.uz_room, sender=bot.user_id)
    await chase.ask(uz, chase.uz_room, "!ack KZ-0001")
    second = await uz.wait_for(about("KZ-0001", "reminder", "answer.remind.2"),
                               room_id=chase.uz_room, sender=bot.user_id,
                               timeout=ANSWER_TIMEOUT_S)
    assert "needs an answer" in (second.body or ""), second.body
    assert chase_steps(uz, chase.uz_room, bot, "reminder") == ["answer.remind.1",
                                                               "answer.remind.2"]


async def test_the_bot_killed_half_way_through_a_chase_sends_each_remaining_step_once(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    chase = await two_posts(officer_factory, bot_factory, flash_policy(
        reminders=4, escalate=[{"after": "7s", "to": ["target-supervisors"]}]))
    bot, uz = chase.bot, chase.uz
    await chase.ask(chase.kz, chase.kz_room, "!alert flash to:UZ-TERMEZ\nWatch the bridge.")
    started = time.monotonic()
    await uz.wait_for(about("KZ-0001", "reminder", "ack.remind.1"), room_id=chase.uz_room,
                      sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    await bot.kill()
    # Down while the second reminder (6s) and the escalation (7s) fall due.
    await asyncio.sleep(max(0.0, started + 8 - time.monotonic()))
    await bot.start()

    late = await uz.wait_for(about("KZ-0001", "reminder", "ack.remind.2"),
                             room_id=chase.uz_room, sender=bot.user_id,
                             timeout=ANSWER_TIMEOUT_S)
    assert "(Late: this was due" in (late.body or ""), late.body
    dm = await chase.uz_boss.accept_invite(timeout=ANSWER_TIMEOUT_S)
    await chase.uz_boss.wait_for(about("KZ-0001", "escalation"), room_id=dm,
                                 sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    await uz.wait_for(about("KZ-0001", "reminder", "ack.remind.4"), room_id=chase.uz_room,
                      sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    await asyncio.sleep(3)  # room for a duplicate to show up
    assert chase_steps(uz, chase.uz_room, bot, "reminder") == [
        "ack.remind.1", "ack.remind.2", "ack.remind.3", "ack.remind.4"]
    assert chase_steps(chase.uz_boss, dm, bot, "escalation") == ["ack.escalate.1"]


def acknowledgement_times(bot: BotProcess) -> list[int]:
    """Time to acknowledge of each delivery, straight from the bot's database."""
    uri = f"{(bot.data_dir / 'liaison.db').as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        rows = conn.execute("SELECT acknowledged_ms - routed_ms FROM deliveries"
                            " WHERE acknowledged_ms IS NOT NULL").fetchall()
    conn.close()
    return [int(row[0]) for row in rows]


async def test_report_shows_the_figures_of_a_scripted_set_of_cases(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    supervisors_room: dict[str, str] = {}

    async def make_room(boss: Officer) -> dict[str, str]:
        supervisors_room["id"] = await boss.create_room("supervisors")
        return {"supervisors_room": supervisors_room["id"]}

    # KZ-0001 is acknowledged before its escalation is due: right after it arrives, and
    # with 5 s to spare (3 s were not enough on a loaded machine with parallel workers).
    chase = await two_posts(officer_factory, bot_factory, flash_policy(
        acknowledge_within="2s", reminders=0,
        escalate=[{"after": "5s", "to": ["target-supervisors"]}]), rooms_for=make_room)
    bot, uz, boss = chase.bot, chase.uz, chase.uz_boss
    room = supervisors_room["id"]
    await boss.invite(room, bot.user_id)
    await boss.wait_until_joined(room, bot.user_id)

    await chase.ask(chase.kz, chase.kz_room, "!alert flash to:UZ-TERMEZ\nFirst")
    await chase.ask(uz, chase.uz_room, "!ack KZ-0001")
    for body in ("!alert flash to:UZ-TERMEZ\nSecond", "!alert flash to:UZ-TERMEZ\nThird",
                 "!request urgent to:UZ-TERMEZ\nFourth?"):
        await chase.ask(chase.kz, chase.kz_room, body)
    await chase.ask(uz, chase.uz_room, "!ack KZ-0004")
    # KZ-0002 and KZ-0003 escalate into the supervisors' room; then KZ-0003 is taken.
    for ref in ("KZ-0002", "KZ-0003"):
        escalation = await boss.wait_for(about(ref, "escalation"), room_id=room,
                                         sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
        assert escalation.content["m.mentions"] == {"user_ids": [boss.user_id]}
    await chase.ask(uz, chase.uz_room, "!ack KZ-0003")
    await boss.wait_for(about("KZ-0003", "taken"), room_id=room, sender=bot.user_id,
                        timeout=ANSWER_TIMEOUT_S)

    listed = await chase.ask(boss, room, "!escalations")
    assert (listed.body or "").splitlines()[1].startswith(
        "• TLP:GREEN KZ-0002 Flash alert from Zhibek (KZ-ZHIBEK) to Termez (UZ-TERMEZ): not "
        "acknowledged; escalated"), listed.body
    assert len((listed.body or "").splitlines()) == 2

    report = await chase.ask(boss, room, "!report 7d")
    times = acknowledgement_times(bot)
    assert len(times) == 3
    assert (report.body or "").splitlines()[1:] == [
        "Termez (UZ-TERMEZ)",
        "• Cases sent 0, received 4.",
        f"• Acknowledged 3 of 4: median {elapsed(median_ms(times) or 0)}, "
        f"90% within {elapsed(percentile_ms(times, 90) or 0)}.",
        "• Answered 0 of 1 requests: median none, 90% within none.",
        "• Overdue now 1; escalations 2.",
    ], report.body
    refused = await chase.ask(uz, chase.uz_room, "!report")
    assert (refused.body or "") == "!report is only for supervisors.", refused.body
