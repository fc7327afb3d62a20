"""What rings, end to end: the push rules Synapse serves each officer, evaluated over what
the officer's client decrypted (devkit/push_rules.py, written from the spec's push-rule
text). A flash relay, a reminder, an escalation and the acknowledgement of a flash case
ring the person mentioned; answers to commands stay silent; the configuration can make
routine alerts quiet."""

from __future__ import annotations

import json
from urllib.parse import quote

from devkit.officer import Officer, SeenMessage
from devkit.synapse import LocalSynapse
from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_chasing import ANSWER_TIMEOUT_S, about, flash_policy, post


async def ask(officer: Officer, room_id: str, bot_user: str, body: str) -> SeenMessage:
    event_id = await officer.send_text(room_id, body)
    return await officer.wait_for(
        lambda m: (m.content.get("m.relates_to") or {}).get("m.in_reply_to", {}).get(
            "event_id") == event_id, room_id=room_id, sender=bot_user, timeout=ANSWER_TIMEOUT_S)


async def test_alerts_reminders_and_escalations_ring_and_answers_stay_silent(
    synapse: LocalSynapse, officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz, uz, uz_boss = [await officer_factory(name) for name in ("kz", "uz", "uzboss")]
    kz_room, uz_room = await kz.create_room("post"), await uz.create_room("post")
    bot = await bot_factory(config={
        "posts": [
            post("KZ-ZHIBEK", kz_room, neighbours=["UZ-TERMEZ"]),
            post("UZ-TERMEZ", uz_room, neighbours=["KZ-ZHIBEK"], duty_officers=[uz.user_id],
                 supervisors=[uz_boss.user_id]),
        ],
        "chasing": {"check_every": "1s", "policies": {"flash": flash_policy(
            escalate=[{"after": "5s", "to": ["target-supervisors"]}])}},
        "notifications": {"quiet_priorities": ["routine"]},
    })
    for officer, room_id in ((kz, kz_room), (uz, uz_room)):
        await officer.invite(room_id, bot.user_id)
        await officer.wait_until_joined(room_id, bot.user_id)

    sent = await ask(kz, kz_room, bot.user_id, "!alert flash to:UZ-TERMEZ\nvehicle: grey Hilux")
    assert (sent.body or "").startswith("KZ-0001: Flash alert sent to:"), sent.body
    answer = await kz.push_verdict(sent)
    assert (answer.notify, answer.rule_id) == (False, ".m.rule.suppress_notices"), answer

    relay = await uz.wait_for(lambda m: (m.body or "").startswith("TLP:GREEN Flash alert"),
                              room_id=uz_room, sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    assert relay.encrypted and relay.msgtype == "m.text"
    assert relay.content["m.mentions"] == {"user_ids": [uz.user_id]}
    verdict = await uz.push_verdict(relay)
    assert (verdict.notify, verdict.highlight, verdict.sound, verdict.rule_id) == (
        True, True, "default", ".m.rule.is_user_mention"), verdict

    reminder = await uz.wait_for(about("KZ-0001", "reminder"), room_id=uz_room,
                                 sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    verdict = await uz.push_verdict(reminder)
    assert (verdict.notify, verdict.highlight, verdict.sound) == (True, True, "default"), verdict

    dm = await uz_boss.accept_invite(timeout=ANSWER_TIMEOUT_S)
    escalation = await uz_boss.wait_for(about("KZ-0001", "escalation"), room_id=dm,
                                        sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    verdict = await uz_boss.push_verdict(escalation)
    assert (verdict.notify, verdict.highlight, verdict.sound, verdict.rule_id) == (
        True, True, "default", ".m.rule.is_user_mention"), verdict
    # The direct room the bot opened is listed in its m.direct, under the supervisor.
    token = json.loads((bot.data_dir / "credentials.json").read_text())["access_token"]
    direct = await synapse.request(
        "GET", f"/_matrix/client/v3/user/{quote(bot.user_id, safe='')}/account_data/m.direct",
        token=token)
    assert direct == {uz_boss.user_id: [dm]}, direct

    status = await ask(kz, kz_room, bot.user_id, "!status KZ-0001")
    assert "KZ-0001" in (status.body or "")
    verdict = await kz.push_verdict(status)
    assert (verdict.notify, verdict.rule_id) == (False, ".m.rule.suppress_notices"), verdict

    acked = await ask(uz, uz_room, bot.user_id, "!ack KZ-0001")
    assert (await uz.push_verdict(acked)).notify is False
    told = await kz.wait_for(about("KZ-0001", "ack"), room_id=kz_room, sender=bot.user_id,
                             timeout=ANSWER_TIMEOUT_S)
    verdict = await kz.push_verdict(told)
    assert (verdict.notify, verdict.highlight) == (True, True), verdict

    # notifications.quiet_priorities: [routine] lowers a routine relay to a quiet notice.
    await ask(kz, kz_room, bot.user_id, "!alert routine to:UZ-TERMEZ\nFor the record.")
    routine = await uz.wait_for(lambda m: (m.body or "").startswith("TLP:GREEN Routine alert"),
                                room_id=uz_room, sender=bot.user_id, timeout=ANSWER_TIMEOUT_S)
    assert routine.msgtype == "m.notice"
    assert (await uz.push_verdict(routine)).notify is False
