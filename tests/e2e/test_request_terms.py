"""Requests as the law frames them, end to end (issue 20): a classed request chased for
its answer, delayed with a reason, then answered on time; a refusal; an H2 alert that
goes no further until its originator permits it; TLP:RED to two named officers by direct
message — on a real Synapse, short test policies, asserting on what each officer's
client decrypted."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from devkit.botprocess import BotProcess
from devkit.officer import Officer, SeenMessage
from liaison.commands.case_render import CASE_KEY
from tests.e2e.conftest import BotFactory, OfficerFactory

TIMEOUT_S = 30.0


def post(post_id: str, room: str, **extra: Any) -> dict[str, Any]:
    return {"id": post_id, "names": {"en": post_id.split("-")[1].title()},
            "country": post_id[:2], "agency": "border", "room": room, **extra}


def about(ref: str, what: str | None = None) -> Callable[[SeenMessage], bool]:
    def matches(message: SeenMessage) -> bool:
        key = message.content.get(CASE_KEY)
        return (isinstance(key, dict) and key.get("ref") == ref
                and (what is None or key.get("about") == what))
    return matches


async def ask(bot: BotProcess, officer: Officer, room_id: str, body: str) -> str:
    """Send a command and return the bot's answer to it (decrypted)."""
    event_id = await officer.send_text(room_id, body)
    answer = await officer.wait_for(
        lambda m: (m.content.get("m.relates_to") or {}).get("m.in_reply_to", {}).get(
            "event_id") == event_id, room_id=room_id, sender=bot.user_id, timeout=TIMEOUT_S)
    assert answer.encrypted, answer.describe()
    return answer.body or ""


URGENT = {"acknowledge_within": "1h", "remind_every": "1h", "reminders": 0, "escalate": [],
          "snooze_max": "1h",
          "answer": {"within": "1h", "remind_every": "30s", "reminders": 2, "escalate": []}}
FLASH = {"acknowledge_within": "3s", "remind_every": "1h", "reminders": 0,
         "escalate": [{"after": "4s", "to": ["target-supervisors"]}], "snooze_max": "1m",
         "answer": {"within": "1h", "remind_every": "1h", "reminders": 0, "escalate": []}}


async def test_a_classed_request_is_chased_delayed_and_answered_a_refusal_and_h2_held_back(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz, uz, tj = [await officer_factory(name) for name in ("kz", "uz", "tj")]
    rooms = {officer: await officer.create_room("post") for officer in (kz, uz, tj)}
    bot = await bot_factory(config={
        "posts": [post("KZ-ZHIBEK", rooms[kz], neighbours=["UZ-TERMEZ"]),
                  post("UZ-TERMEZ", rooms[uz], timezone="Asia/Tashkent",
                       duty_officers=[uz.user_id]),
                  post("TJ-PANJ", rooms[tj], timezone="Asia/Dushanbe")],
        "chasing": {"check_every": "1s", "policies": {"urgent": URGENT}},
        # urgent-direct is 8 hours; here 4 seconds, so its answer is chased at once
        "requests": {"classes": {"urgent-direct": {"within": "4s", "max_delay": "2m"}}},
    })
    for officer, room_id in rooms.items():
        await officer.invite(room_id, bot.user_id)
        await officer.wait_until_joined(room_id, bot.user_id)
    kz_room, uz_room, tj_room = rooms[kz], rooms[uz], rooms[tj]

    sent = await ask(bot, kz, kz_room, "!request urgent to:UZ-TERMEZ class:urgent-direct "
                                       "action:discreet\nplate: 01A123BC\nWho owns it?")
    assert sent.startswith("KZ-0001: Urgent request sent to:"), sent
    relayed = await uz.wait_for(about("KZ-0001", None), room_id=uz_room, sender=bot.user_id,
                                timeout=TIMEOUT_S)
    assert (relayed.body or "").startswith(
        "TLP:GREEN · ACTION: discreet check Urgent request KZ-0001"), relayed.body
    assert "class urgent-direct" in (relayed.body or "")

    # The class's deadline passes: the answer is chased in UZ's room, mentioning its duty.
    reminder = await uz.wait_for(about("KZ-0001", "reminder"), room_id=uz_room,
                                 sender=bot.user_id, timeout=TIMEOUT_S)
    assert reminder.content["msgtype"] == "m.text"
    assert reminder.content["m.mentions"] == {"user_ids": [uz.user_id]}

    delayed = await ask(bot, uz, uz_room, "!delay KZ-0001 1m judicial awaiting the prosecutor")
    assert delayed.startswith("KZ-0001: your answer is now due"), delayed
    told = await kz.wait_for(about("KZ-0001", "delayed"), room_id=kz_room, sender=bot.user_id,
                             timeout=TIMEOUT_S)
    assert told.encrypted and told.content["msgtype"] == "m.text"  # it rings the requester
    assert told.content["m.mentions"] == {"user_ids": [kz.user_id]}
    assert "Termez (UZ-TERMEZ) delays its answer to KZ-0001 by 1m" in (told.body or "")
    assert "Reason: a judicial authorisation is pending." in (told.body or "")
    assert "awaiting the prosecutor" in (told.body or "")
    with sqlite3.connect(bot.data_dir / "liaison.db") as db:  # the chase moved with it
        due, pending = db.execute(
            "SELECT d.due_ms, (SELECT MIN(s.due_ms) FROM chase_steps s WHERE s.delivery_id"
            " = d.id AND s.phase = 'answer' AND s.state = 'pending') FROM deliveries d").fetchone()
    assert pending == due

    await uz.send_text(uz_room, "Registered to Rustam K.", thread_root=relayed.event_id)
    await kz.wait_for(about("KZ-0001", "reply"), room_id=kz_room, sender=bot.user_id,
                      timeout=TIMEOUT_S)
    status = await ask(bot, kz, kz_room, "!status KZ-0001")
    assert "class urgent-direct" in status
    assert "answered on time" in status, status
    assert "answer delayed by Termez (UZ-TERMEZ)" in status

    # A refusal closes that delivery with its reason, at once.
    await ask(bot, kz, kz_room, "!request urgent to:UZ-TERMEZ class:standard\nBank records?")
    refused = await ask(bot, uz, uz_room, "!refuse KZ-0002 law no legal basis to share")
    assert refused == "KZ-0002 refused; Zhibek (KZ-ZHIBEK) has been told.", refused
    told = await kz.wait_for(about("KZ-0002", "declined"), room_id=kz_room, sender=bot.user_id,
                             timeout=TIMEOUT_S)
    assert "Termez (UZ-TERMEZ) refuses KZ-0002. Reason: the law does not permit it." in (
        told.body or "")
    status = await ask(bot, kz, kz_room, "!status KZ-0002")
    assert "Termez (UZ-TERMEZ): refused" in status, status

    # H2: not passed on to TJ until the originator permits it.
    await ask(bot, kz, kz_room, "!alert urgent to:UZ-TERMEZ h:H2\nWhite Kamaz, 01A123BC")
    held = await ask(bot, kz, kz_room, "!update KZ-0003 to:TJ-PANJ for Panj too")
    assert held.startswith("KZ-0003 is marked H2: it is not passed on to TJ-PANJ"), held
    permitted = await ask(bot, kz, kz_room, "!permit KZ-0003 TJ-PANJ")
    assert permitted == "KZ-0003 may now be passed on to TJ-PANJ.", permitted
    await ask(bot, kz, kz_room, "!update KZ-0003 to:TJ-PANJ for Panj too")
    case = await tj.wait_for(about("KZ-0003", None), room_id=tj_room, sender=bot.user_id,
                             timeout=TIMEOUT_S)
    assert (case.body or "").startswith(
        "TLP:GREEN · H2 (not to be passed on without permission) Urgent alert KZ-0003"), case.body
    assert not [m for m in tj.messages(tj_room, sender=bot.user_id)
                if about("KZ-0001")(m) or about("KZ-0002")(m)]


async def test_red_reaches_two_named_officers_by_dm_and_the_origin_sees_only_who(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz, uz, tj, tj_boss = [await officer_factory(name) for name in
                           ("kz", "uz", "tj", "tjboss")]
    rooms = {officer: await officer.create_room("post") for officer in (kz, uz, tj)}
    bot = await bot_factory(config={
        "posts": [post("KZ-ZHIBEK", rooms[kz], officers=[kz.user_id]),
                  post("UZ-TERMEZ", rooms[uz], clearance="RED", officers=[uz.user_id]),
                  post("TJ-PANJ", rooms[tj], clearance="RED", officers=[tj.user_id],
                       supervisors=[tj_boss.user_id])],
        "chasing": {"check_every": "1s", "direct_room_wait": "20s",
                    "policies": {"flash": FLASH}},
    })
    for officer, room_id in rooms.items():
        await officer.invite(room_id, bot.user_id)
        await officer.wait_until_joined(room_id, bot.user_id)
    kz_room = rooms[kz]

    sent = await ask(bot, kz, kz_room, f"!alert flash tlp:red to:{uz.user_id},{tj.user_id}\n"
                                       "Informant: Rustam K., meets the courier at 18:00")
    assert sent == (f"TLP:RED KZ-0001 sent by direct message to {uz.user_id}, {tj.user_id}. "
                    "Its content is not shown here."), sent

    uz_dm, tj_dm = await uz.accept_invite(timeout=TIMEOUT_S), await tj.accept_invite(
        timeout=TIMEOUT_S)
    for officer, dm in ((uz, uz_dm), (tj, tj_dm)):
        case = await officer.wait_for(about("KZ-0001", None), room_id=dm, sender=bot.user_id,
                                      timeout=TIMEOUT_S)
        assert case.encrypted and case.content["msgtype"] == "m.text"
        assert case.content["m.mentions"] == {"user_ids": [officer.user_id]}
        assert (case.body or "").startswith("TLP:RED Flash alert KZ-0001"), case.body
        assert "Rustam K." in (case.body or "")
    uz_case = next(m for m in uz.messages(uz_dm, sender=bot.user_id) if about("KZ-0001")(m))

    # UZ replies in its DM: the reply reaches the originator (by DM: KZ's room is not
    # RED-cleared).
    await uz.send_text(uz_dm, "Known to us, watching him", reply_to=uz_case.event_id)
    kz_dm = await kz.accept_invite(timeout=TIMEOUT_S)
    carried = await kz.wait_for(about("KZ-0001", "reply"), room_id=kz_dm, sender=bot.user_id,
                                timeout=TIMEOUT_S)
    assert "Known to us, watching him" in (carried.body or ""), carried.body

    # TJ never acknowledges: its supervisor is told the reference and who, not the content.
    boss_dm = await tj_boss.accept_invite(timeout=TIMEOUT_S)
    escalation = await tj_boss.wait_for(about("KZ-0001", "escalation"), room_id=boss_dm,
                                        sender=bot.user_id, timeout=TIMEOUT_S)
    assert "KZ-0001" in (escalation.body or "") and tj.user_id in (escalation.body or "")
    assert "Rustam" not in (escalation.body or "") and "Informant" not in (escalation.body or "")

    # The origin room never read the content.
    assert not [m for m in kz.messages(kz_room, sender=bot.user_id) if "Rustam" in (m.body or "")]
