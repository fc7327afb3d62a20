"""The case commands against a real database: what each officer reads, what is stored,
what is queued for which room, and who may do what."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from liaison.bot.clock import Clock
from liaison.commands.builtin import register_builtins
from liaison.commands.case_render import CASE_KEY, format_time
from liaison.commands.registry import CommandRegistry
from liaison.commands.render import Notice
from liaison.config import Config, parse_config
from liaison.handlers.cases import register_case_commands
from liaison.storage import cases, outbox
from liaison.storage.db import Database
from tests.unit.commandrun import run_command

NOW = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)

KZ_ROOM = "!kz-zhibek:liaison.example"
UZ_ROOM = "!uz-termez:liaison.example"
TJ_ROOM = "!tj-panj:liaison.example"
AF_ROOM = "!af-hairatan:liaison.example"
TM_ROOM = "!tm-farap:liaison.example"
KZFIU_ROOM = "!kz-fiu:liaison.example"
OTHER_ROOM = "!somewhere:liaison.example"

KZ = "@aigerim:liaison.example"
KZ_BOSS = "@kz-boss:liaison.example"
UZ = "@bekzod:liaison.example"
TJ = "@farhod:liaison.example"
AF = "@ahmad:liaison.example"


def post(post_id: str, room: str, timezone: str, **extra: Any) -> dict[str, Any]:
    return {"id": post_id, "names": {"en": post_id.split("-")[1].title() + " post"},
            "country": post_id[:2], "agency": extra.pop("agency", "border"), "room": room,
            "timezone": timezone, **extra}


CONFIG = {
    "homeserver": {"url": "https://matrix.liaison.example"},
    "bot": {"user_id": "@liaison:liaison.example", "password": {"env": "X"},
            "pickle_key": {"env": "Y"}},
    "data_dir": "data",
    "trust": {"policy": "tofu"},
    "posts": [
        post("KZ-ZHIBEK", KZ_ROOM, "UTC", neighbours=["UZ-TERMEZ"], supervisors=[KZ_BOSS]),
        post("UZ-TERMEZ", UZ_ROOM, "Asia/Tashkent", neighbours=["KZ-ZHIBEK", "TJ-PANJ"]),
        post("TJ-PANJ", TJ_ROOM, "Asia/Dushanbe", neighbours=["UZ-TERMEZ"]),
        post("AF-HAIRATAN", AF_ROOM, "Asia/Kabul", clearance="GREEN"),
        post("TM-FARAP", TM_ROOM, "Asia/Ashgabat"),
        post("KZ-FIU", KZFIU_ROOM, "UTC", agency="fiu"),
    ],
    "groups": [{"name": "caricc", "posts": ["UZ-TERMEZ", "TJ-PANJ", "KZ-ZHIBEK"]}],
    "category_rules": [{"category": "financial", "add": ["same-country:fiu"]}],
}
JOINED = frozenset({KZ_ROOM, UZ_ROOM, TJ_ROOM, AF_ROOM, KZFIU_ROOM, OTHER_ROOM})

ALERT = ("!alert urgent to:UZ-TERMEZ,TJ-PANJ tlp:amber cat:drugs grade:B2\n"
         "vehicle: white Kamaz, plate 01A123BC\n"
         "route: Hairatan -> Termez\n"
         "Suspected heroin in a cement load.")


class FixedClock(Clock):
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at

    def now_ms(self) -> int:
        return int(self.at.timestamp() * 1000)


@dataclass
class Bot:
    """The case commands wired as the event router wires them, minus Matrix."""

    db: Database
    config: Config
    registry: CommandRegistry
    clock: FixedClock = field(default_factory=lambda: FixedClock(NOW))
    events: int = 0

    async def say(self, room_id: str, sender: str, body: str) -> Notice:
        """Run one command in its own transaction; a CommandError is answered as the
        router answers it."""
        self.events += 1
        return await run_command(
            self.db, self.config, self.clock, self.registry, room_id=room_id, sender=sender,
            body=body, event_id=f"$event{self.events}", at=self.clock.at, joined=JOINED)

    async def queued(self, room_id: str | None = None) -> list[outbox.OutboxMessage]:
        """What the commands queued besides their answers (which `say` returns)."""
        async with self.db.read() as conn:
            rows = await conn.execute_fetchall("SELECT id FROM outbox ORDER BY id")
            messages = [await outbox.get(conn, row[0]) for row in rows]
        return [m for m in messages if m is not None and room_id in (None, m.room_id)
                and not answers_a_command(m)]

    async def send_all(self) -> None:
        """Pretend the homeserver accepted every queued message as `$sent<id>`."""
        async with self.db.transaction() as conn:
            rows = await conn.execute_fetchall("SELECT id FROM outbox WHERE state = 'pending'")
            for row in rows:
                await outbox.mark_sent(conn, row[0], event_id=f"$sent{row[0]}",
                                       now_ms=self.clock.now_ms())

    async def case(self, ref: str) -> cases.Case | None:
        async with self.db.read() as conn:
            return await cases.case_by_ref(conn, ref)

    def later(self, minutes: int) -> None:
        self.clock.at += timedelta(minutes=minutes)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    database = await Database.open(tmp_path / "liaison.db")
    yield Bot(database, parse_config(json.dumps(CONFIG)), registry_with_cases())
    await database.close()


def answers_a_command(message: outbox.OutboxMessage) -> bool:
    relates = message.content.get("m.relates_to") or {}
    replied_to = (relates.get("m.in_reply_to") or {}).get("event_id", "")
    return message.kind in ("reply", "refusal") and replied_to.startswith("$event")


def case_key(message: outbox.OutboxMessage) -> dict[str, Any]:
    value = message.content[CASE_KEY]
    assert isinstance(value, dict)
    return value


# --- registration -----------------------------------------------------------------------


def registry_with_cases() -> CommandRegistry:
    registry = CommandRegistry()
    register_builtins(registry)
    register_case_commands(registry)
    return registry


def test_case_commands_are_declared_with_their_aliases() -> None:
    registry = registry_with_cases()
    assert [spec.name for spec in registry] == [
        "help", "ping", "alert", "request", "ack", "update", "close", "cancel", "status",
        "pending"]
    assert registry.resolve("принято").name == "ack"
    assert registry.resolve("تنبيه").name == "alert"


# --- !alert -----------------------------------------------------------------------------


async def test_alert_is_stored_and_relayed_to_each_target_with_ref_and_tlp(bot: Bot) -> None:
    answer = await bot.say(KZ_ROOM, KZ, ALERT)

    assert answer.text == ("KZ-0001: Urgent alert sent to:\n"
                           "• Termez post (UZ-TERMEZ)\n"
                           "• Panj post (TJ-PANJ)")
    uz, tj = await bot.queued(UZ_ROOM), await bot.queued(TJ_ROOM)
    assert len(uz) == len(tj) == 1
    assert case_key(uz[0]) == {"ref": "KZ-0001", "kind": "alert", "origin": "KZ-ZHIBEK"}
    assert uz[0].kind == "case-relay" and uz[0].case_ref == "KZ-0001"
    assert uz[0].content["msgtype"] == "m.text"  # a relayed alert rings
    assert uz[0].content["body"] == (
        "TLP:AMBER Urgent alert KZ-0001\n"
        "Share only within your organisation, on a need-to-know basis.\n"
        "From Zhibek post (KZ-ZHIBEK), 2026-05-01 15:00 +05:00 (sender's time 10:00 +00:00)\n"
        "Category: drugs · Grading: B2\n"
        "vehicle: white Kamaz, plate 01A123BC\n"
        "route: Hairatan -> Termez\n"
        "Suspected heroin in a cement load.\n"
        "Acknowledge with !ack KZ-0001"
    )
    assert uz[0].content["formatted_body"].startswith(
        "<strong>TLP:AMBER</strong> <strong>Urgent alert</strong> <code>KZ-0001</code>")
    assert uz[0].content["m.mentions"] == {"user_ids": []}
    assert "2026-05-01 15:00 +05:00" in tj[0].content["body"]  # Dushanbe time

    case = await bot.case("KZ-0001")
    assert case is not None
    assert (case.kind, case.tlp.value, case.grading, case.category, case.origin_room,
            case.origin_sender, case.created_ms, case.forwardable) == (
        "alert", "AMBER", "B2", "drugs", KZ_ROOM, KZ, NOW_MS, True)
    assert case.fields == (("vehicle", "white Kamaz, plate 01A123BC"),
                           ("route", "Hairatan -> Termez"))
    async with bot.db.read() as conn:
        delivered = await cases.deliveries(conn, case.id)
    assert [(d.post, d.room_id, d.state) for d in delivered] == [
        ("UZ-TERMEZ", UZ_ROOM, "routed"), ("TJ-PANJ", TJ_ROOM, "routed")]
    assert [d.relay_txn_id for d in delivered] == [uz[0].txn_id, tj[0].txn_id]


async def test_references_count_up_per_origin_country(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, ALERT)
    await bot.say(UZ_ROOM, UZ, "!alert flash to:TJ-PANJ\nSomething")
    second = await bot.say(KZ_ROOM, KZ, ALERT)
    assert second.text.startswith("KZ-0002: ")
    assert await bot.case("UZ-0001") is not None


async def test_officer_text_is_escaped_and_cannot_mention_the_room(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ\n<b>bold</b> @room look")
    (relayed,) = await bot.queued(UZ_ROOM)
    assert "&lt;b&gt;bold&lt;/b&gt;" in relayed.content["formatted_body"]
    assert "<b>" not in relayed.content["formatted_body"]
    assert "@room" not in relayed.content["body"]
    assert relayed.content["m.mentions"] == {"user_ids": []}


async def test_amber_alert_to_a_group_is_refused_and_nothing_is_sent(bot: Bot) -> None:
    answer = await bot.say(KZ_ROOM, KZ, "!alert urgent to:caricc tlp:amber\nLook out")

    assert answer.text == (
        "Nothing was sent. Fix the targets below and send it again:\n"
        "• caricc: TLP:AMBER goes only to posts named by id, not to a group, a country or "
        "neighbours. Name the posts instead: to:UZ-TERMEZ,TJ-PANJ"
    )
    assert await bot.queued() == []
    assert await bot.case("KZ-0001") is None


async def test_a_mistyped_post_id_gets_the_nearest_one_and_nothing_is_sent(bot: Bot) -> None:
    answer = await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ,TJ-PAJN\nLook out")

    assert answer.text == (
        "Nothing was sent. Fix the targets below and send it again:\n"
        "• TJ-PAJN: not a post id, country code, group or neighbours. "
        "Did you mean: TJ-PANJ?"
    )
    assert await bot.queued() == []


async def test_a_named_post_without_clearance_stops_the_case(bot: Bot) -> None:
    answer = await bot.say(KZ_ROOM, KZ, "!alert urgent to:AF-HAIRATAN tlp:amber\nLook out")
    assert answer.text.endswith(
        "• AF-HAIRATAN: cleared up to TLP:GREEN; this case is TLP:AMBER.")
    assert await bot.queued() == []


async def test_red_is_never_sent_into_a_room(bot: Bot) -> None:
    answer = await bot.say(KZ_ROOM, KZ, "!alert flash to:UZ-TERMEZ,TJ-PANJ tlp:red\nLook")
    assert answer.text == (
        "Nothing was sent. Fix the targets below and send it again:\n"
        "• TLP:RED is never sent into a room; RED is only for named individuals."
    )
    assert await bot.queued() == []


async def test_an_unreachable_post_is_reported_and_the_others_still_get_the_case(
    bot: Bot,
) -> None:
    answer = await bot.say(KZ_ROOM, KZ, "!alert flash to:UZ-TERMEZ,TM-FARAP\nLook out")

    assert answer.text == (
        "KZ-0001: Flash alert sent to:\n"
        "• Termez post (UZ-TERMEZ)\n"
        "Not sent to:\n"
        "• TM-FARAP: I am not in that post's room; ask the operator to invite me."
    )
    assert len(await bot.queued(UZ_ROOM)) == 1
    status = await bot.say(KZ_ROOM, KZ, "!status KZ-0001")
    assert "not sent to Farap post (TM-FARAP): the bot is not in its room" in status.text


async def test_neighbours_and_category_rules_add_posts(bot: Bot) -> None:
    answer = await bot.say(KZ_ROOM, KZ, "!alert routine cat:financial\nTransfers")
    assert answer.text == ("KZ-0001: Routine alert sent to:\n"
                           "• Termez post (UZ-TERMEZ)\n"
                           "• Fiu post (KZ-FIU)")


async def test_parse_errors_come_back_with_the_usage_line(bot: Bot) -> None:
    answer = await bot.say(KZ_ROOM, KZ, "!alert urgnt to:UZ-TERMEZ\nLook out")
    assert answer.text.startswith("urgnt is not a priority")
    assert "Usage: !alert PRIORITY" in answer.text
    assert await bot.queued() == []


async def test_a_room_that_is_not_a_post_cannot_send_cases(bot: Bot) -> None:
    answer = await bot.say(OTHER_ROOM, KZ, ALERT)  # a room of nobody: told once, then silence
    assert answer.text.startswith("I do not serve this room")
    assert await bot.queued() == []


async def test_a_related_reference_must_be_a_case_the_post_can_see(bot: Bot) -> None:
    await bot.say(UZ_ROOM, UZ, "!alert urgent to:TJ-PANJ\nFirst")
    answer = await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ ref:UZ-0001\nFollow-up")
    assert answer.text.startswith("There is no case UZ-0001 that your post can see.")
    assert "Usage: !alert" in answer.text
    ok = await bot.say(TJ_ROOM, TJ, "!alert urgent to:UZ-TERMEZ ref:uz-0001\nFollow-up")
    assert ok.text.startswith("TJ-0001: ")
    (relayed,) = await bot.queued(UZ_ROOM)
    assert "Follows up UZ-0001" in relayed.content["body"]


async def test_a_related_case_is_named_only_to_targets_that_may_see_it(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ tlp:amber\nFirst")
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ,TJ-PANJ ref:KZ-0001\nFollow-up")
    to_uz = [m for m in await bot.queued(UZ_ROOM) if m.case_ref == "KZ-0002"]
    to_tj = [m for m in await bot.queued(TJ_ROOM) if m.case_ref == "KZ-0002"]
    assert "Follows up KZ-0001" in to_uz[0].content["body"]
    assert "KZ-0001" not in to_tj[0].content["body"]


async def test_request_carries_its_deadline_in_the_target_time_zone(bot: Bot) -> None:
    answer = await bot.say(KZ_ROOM, KZ, "!request urgent to:UZ-TERMEZ due:4h\nWho owns it?")
    assert answer.text.startswith("KZ-0001: Urgent request sent to:")
    case = await bot.case("KZ-0001")
    assert case is not None and case.due_ms == NOW_MS + 4 * 3600_000
    (relayed,) = await bot.queued(UZ_ROOM)
    assert "Answer needed by 2026-05-01 19:00 +05:00" in relayed.content["body"]
    assert case_key(relayed)["kind"] == "request"


# --- !ack -------------------------------------------------------------------------------


async def test_ack_by_a_target_tells_the_origin_once(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, ALERT)
    bot.later(3)

    answer = await bot.say(UZ_ROOM, UZ, "!ack kz-0001")
    again = await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")

    assert answer.text == "Acknowledged KZ-0001; Zhibek post (KZ-ZHIBEK) has been told."
    assert again.text == ("KZ-0001 was already acknowledged by @bekzod:liaison.example at "
                          "2026-05-01 15:03 +05:00.")
    (notice,) = await bot.queued(KZ_ROOM)
    assert notice.content["body"] == ("TLP:AMBER Termez post (UZ-TERMEZ) acknowledged KZ-0001 "
                                      "(@bekzod:liaison.example, 2026-05-01 10:03 +00:00). "
                                      "@aigerim:liaison.example")
    # An urgent case: the officer who sent it is told with a ring (commands.notify).
    assert notice.content["msgtype"] == "m.text"
    assert notice.content["m.mentions"] == {"user_ids": ["@aigerim:liaison.example"]}
    assert notice.content["m.relates_to"]["event_id"] == "$event1"  # the !alert's thread
    assert notice.content["m.relates_to"]["rel_type"] == "m.thread"
    assert case_key(notice) == {"ref": "KZ-0001", "kind": "alert", "origin": "KZ-ZHIBEK",
                                "about": "ack"}
    async with bot.db.read() as conn:
        delivery = await cases.delivery_for(conn, 1, "UZ-TERMEZ")
    assert delivery is not None
    assert (delivery.state, delivery.acknowledged_by, delivery.acknowledged_ms) == (
        "acknowledged", UZ, NOW_MS + 180_000)


async def test_the_origin_cannot_acknowledge_its_own_alert(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, ALERT)
    answer = await bot.say(KZ_ROOM, KZ, "!ack KZ-0001")
    assert answer.text == ("KZ-0001 was sent by your post; only the posts it went to "
                           "acknowledge it.")


async def test_a_case_the_post_may_not_see_does_not_exist_for_it(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, ALERT)
    for body in ("!ack KZ-0001", "!status KZ-0001", "!close KZ-0001", "!update KZ-0001 x"):
        answer = await bot.say(AF_ROOM, AF, body)
        assert answer.text == "There is no case KZ-0001 that your post can see.", body
    missing = await bot.say(UZ_ROOM, UZ, "!ack KZ-0099")
    assert missing.text == "There is no case KZ-0099 that your post can see."
    assert await bot.queued(KZ_ROOM) == []


async def test_a_bad_reference_gets_the_usage_line(bot: Bot) -> None:
    answer = await bot.say(UZ_ROOM, UZ, "!ack KZ-42")
    assert answer.text.startswith("KZ-42 is not a case reference")
    assert answer.text.endswith("Usage: !ack CASE")


# --- !update, !close, !cancel -------------------------------------------------------------


async def test_update_goes_to_every_target_in_the_case_thread(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, ALERT)
    await bot.send_all()
    relay_ids = {m.room_id: m.event_id for m in await bot.queued() if m.kind == "case-relay"}

    answer = await bot.say(KZ_ROOM, KZ, "!update KZ-0001 Driver changed trucks\nNow a MAN.")

    assert answer.text == "Update to KZ-0001 sent to: UZ-TERMEZ, TJ-PANJ."
    for room in (UZ_ROOM, TJ_ROOM):
        update = [m for m in await bot.queued(room) if m.kind == "case-update"]
        assert len(update) == 1
        assert update[0].content["body"] == (
            "TLP:AMBER Update to KZ-0001 from Zhibek post (KZ-ZHIBEK):\n"
            "Driver changed trucks\nNow a MAN.")
        assert update[0].content["m.relates_to"]["event_id"] == relay_ids[room]


async def test_only_the_origin_updates_closes_or_cancels(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, ALERT)
    for body, verb in (("!update KZ-0001 more", "update"), ("!close KZ-0001", "close"),
                       ("!cancel KZ-0001", "cancel")):
        answer = await bot.say(UZ_ROOM, UZ, body)
        assert answer.text == (f"Only Zhibek post (KZ-ZHIBEK), which sent KZ-0001, or its "
                               f"supervisors can {verb} it.")
    case = await bot.case("KZ-0001")
    assert case is not None and case.is_open


async def test_close_tells_every_target_and_stops_further_work(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, ALERT)
    bot.later(60)

    answer = await bot.say(KZ_ROOM, KZ, "!close KZ-0001 40 kg seized at Termez")

    assert answer.text == "KZ-0001 closed; told: UZ-TERMEZ, TJ-PANJ."
    for room in (UZ_ROOM, TJ_ROOM):
        (closed,) = [m for m in await bot.queued(room) if m.kind == "case-closed"]
        assert closed.content["body"] == ("TLP:AMBER KZ-0001 was closed by Zhibek post "
                                          "(KZ-ZHIBEK).\nOutcome: 40 kg seized at Termez")
    case = await bot.case("KZ-0001")
    assert case is not None
    assert (case.state, case.outcome, case.closed_by) == ("closed", "40 kg seized at Termez", KZ)
    ack = await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")
    assert ack.text == "KZ-0001 is closed; there is nothing to acknowledge."
    again = await bot.say(KZ_ROOM, KZ, "!cancel KZ-0001")
    assert again.text == "KZ-0001 was already closed at 2026-05-01 11:00 +00:00."
    update = await bot.say(KZ_ROOM, KZ, "!update KZ-0001 more")
    assert update.text == "KZ-0001 is closed; it takes no more updates."
    assert await bot.queued(KZ_ROOM) == []


async def test_a_supervisor_of_the_origin_may_cancel_from_another_post_room(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ\nLook out")
    await bot.say(UZ_ROOM, UZ, "!alert urgent to:KZ-ZHIBEK\nUnrelated")

    answer = await bot.say(UZ_ROOM, KZ_BOSS, "!cancel KZ-0001")

    assert answer.text == "KZ-0001 cancelled; told: UZ-TERMEZ."
    (origin_notice,) = [m for m in await bot.queued(KZ_ROOM) if m.kind == "case-cancelled"]
    assert origin_notice.content["body"] == (
        "TLP:GREEN KZ-0001 was cancelled by Zhibek post (KZ-ZHIBEK); disregard it.")


# --- !status and !pending -----------------------------------------------------------------


async def test_status_shows_deliveries_and_the_timeline(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ,TJ-PANJ,TM-FARAP\nLook out")
    await bot.send_all()
    bot.later(2)
    await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")
    bot.later(5)
    await bot.say(KZ_ROOM, KZ, "!update KZ-0001 <i>Second</i> truck")

    status = await bot.say(KZ_ROOM, KZ, "!status KZ-0001")

    assert status.text == (
        "TLP:GREEN KZ-0001 — Urgent alert from Zhibek post (KZ-ZHIBEK), open\n"
        "Deliveries:\n"
        "• Termez post (UZ-TERMEZ): acknowledged 2026-05-01 10:02 +00:00 by "
        "@bekzod:liaison.example\n"
        "• Panj post (TJ-PANJ): sent 2026-05-01 10:00 +00:00, not acknowledged\n"
        "Timeline:\n"
        "• 2026-05-01 10:00 +00:00 created by @aigerim:liaison.example at Zhibek post "
        "(KZ-ZHIBEK)\n"
        "• 2026-05-01 10:00 +00:00 routed to Termez post (UZ-TERMEZ)\n"
        "• 2026-05-01 10:00 +00:00 routed to Panj post (TJ-PANJ)\n"
        "• 2026-05-01 10:00 +00:00 not sent to Farap post (TM-FARAP): the bot is not in its "
        "room\n"
        "• 2026-05-01 10:02 +00:00 acknowledged by Termez post (UZ-TERMEZ) "
        "(@bekzod:liaison.example)\n"
        "• 2026-05-01 10:07 +00:00 update from Zhibek post (KZ-ZHIBEK) "
        "(@aigerim:liaison.example): <i>Second</i> truck"
    )
    assert "&lt;i&gt;Second&lt;/i&gt;" in status.html

    seen_by_target = await bot.say(TJ_ROOM, TJ, "!status KZ-0001")
    assert "TM-FARAP" not in seen_by_target.text  # refusals are the origin's business
    assert "Panj post (TJ-PANJ): sent 2026-05-01 15:00 +05:00" in seen_by_target.text


async def test_pending_lists_open_cases_in_both_directions(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, ALERT)
    await bot.say(UZ_ROOM, UZ, "!request flash to:KZ-ZHIBEK due:2h\nWho owns 01A123BC?")
    await bot.say(KZ_ROOM, KZ, "!alert routine to:UZ-TERMEZ\nOld news")
    await bot.say(KZ_ROOM, KZ, "!close KZ-0002")
    await bot.say(TJ_ROOM, TJ, "!ack KZ-0001")

    kz = await bot.say(KZ_ROOM, KZ, "!pending")
    uz = await bot.say(UZ_ROOM, UZ, "!pending")
    af = await bot.say(AF_ROOM, AF, "!pending")

    assert kz.text == (
        "Open cases of Zhibek post (KZ-ZHIBEK):\n"
        "Sent by your post:\n"
        "• TLP:AMBER KZ-0001 Urgent alert, 2026-05-01 10:00 +00:00: seen at 1 of 2, "
        "acknowledged by 1 of 2\n"
        "Sent to your post:\n"
        "• TLP:GREEN UZ-0001 Flash request from Termez post (UZ-TERMEZ), "
        "2026-05-01 10:00 +00:00: not acknowledged; answer needed by 2026-05-01 12:00 +00:00"
    )
    assert uz.text == (
        "Open cases of Termez post (UZ-TERMEZ):\n"
        "Sent by your post:\n"
        "• TLP:GREEN UZ-0001 Flash request, 2026-05-01 15:00 +05:00: seen at 0 of 1, "
        "acknowledged by 0 of 1; due 2026-05-01 17:00 +05:00\n"
        "Sent to your post:\n"
        "• TLP:AMBER KZ-0001 Urgent alert from Zhibek post (KZ-ZHIBEK), "
        "2026-05-01 15:00 +05:00: not acknowledged"
    )
    assert af.text == "Open cases of Hairatan post (AF-HAIRATAN):\nNo open cases."


def test_times_are_shown_with_the_offset_of_the_readers_zone() -> None:
    assert format_time(NOW_MS, "Asia/Kabul") == "2026-05-01 14:30 +04:30"
    assert format_time(NOW_MS, "UTC") == "2026-05-01 10:00 +00:00"
    assert format_time(NOW_MS, "America/Caracas") == "2026-05-01 06:00 -04:00"


async def test_pending_counts_the_targets_that_have_seen_a_case(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ,TJ-PANJ\nLook out")
    await bot.send_all()
    [relay] = [m for m in await bot.queued(UZ_ROOM) if m.kind == "case-relay"]
    async with bot.db.transaction() as conn:  # UZ's officer's client sent a read receipt
        assert relay.event_id is not None
        await cases.mark_seen(conn, UZ_ROOM, relay.event_id, UZ, now_ms=NOW_MS + 60_000)

    pending = await bot.say(KZ_ROOM, KZ, "!pending")
    assert "seen at 1 of 2, acknowledged by 0 of 2" in pending.text, pending.text
    status = await bot.say(KZ_ROOM, KZ, "!status KZ-0001")
    assert f"seen 2026-05-01 10:01 +00:00 by {UZ}" in status.text, status.text
