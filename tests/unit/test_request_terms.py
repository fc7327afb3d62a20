"""Issue 20: deadline classes, delays and refusals, handling codes (H2 enforced), TLP:RED
to named people — the pure decisions, then the commands against a real database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from liaison.commands.builtin import register_builtins
from liaison.commands.case_terms import resolve_terms
from liaison.commands.deadlines import (
    BUILTIN_CLASSES,
    DeadlineClass,
    check_due,
    class_deadline_ms,
    delayed_deadline_ms,
    on_time,
    parse_delay,
    parse_refusal,
    resolve_class,
)
from liaison.commands.errors import CommandError
from liaison.commands.handling import (
    Handling,
    action_label,
    handling_label,
    may_forward,
    parse_handling,
    resolve_action,
    split_terms,
)
from liaison.commands.model import Post, Tlp
from liaison.commands.red import red_recipients
from liaison.commands.registry import CommandRegistry
from liaison.config import parse_config
from liaison.handlers.cases import register_case_commands
from liaison.handlers.requests import register_request_commands
from liaison.storage import cases, chasing
from liaison.storage.db import Database
from tests.unit.commandrun import run_command
from tests.unit.test_case_commands import (
    CONFIG,
    JOINED,
    KZ,
    KZ_BOSS,
    KZ_ROOM,
    NOW,
    TJ_ROOM,
    UZ,
    UZ_ROOM,
    Bot,
)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- deadline arithmetic ----------------------------------------------------------------


def test_an_urgent_direct_request_is_due_eight_elapsed_hours_after_receipt_even_across_dst(
) -> None:
    urgent = BUILTIN_CLASSES["urgent-direct"]
    received = at("2026-03-29T00:30:00+01:00")  # Berlin goes to summer time at 02:00
    due = class_deadline_ms(ms(received), urgent, "Europe/Berlin")
    assert due - ms(received) == 8 * 3600 * 1000
    assert datetime.fromtimestamp(due / 1000, UTC).astimezone(
        received.tzinfo).isoformat() == "2026-03-29T08:30:00+01:00"


@pytest.mark.parametrize(("zone", "received", "due"), [
    # calendar days: the same wall-clock time, whatever the clocks did in between
    ("Europe/Berlin", "2026-03-25T10:00:00+01:00", "2026-04-01T10:00:00+02:00"),
    ("Europe/Berlin", "2026-10-22T10:00:00+02:00", "2026-10-29T10:00:00+01:00"),
    ("Asia/Almaty", "2026-12-07T23:30:00+05:00", "2026-12-14T23:30:00+05:00"),
    ("Asia/Kabul", "2026-12-07T10:00:00+04:30", "2026-12-14T10:00:00+04:30"),
])
def test_a_standard_request_is_due_seven_calendar_days_later_in_the_targets_zone(
        zone: str, received: str, due: str) -> None:
    assert class_deadline_ms(ms(at(received)), BUILTIN_CLASSES["standard"], zone) == ms(at(due))


def test_the_same_receipt_gives_each_target_its_own_calendar_day_deadline() -> None:
    received = ms(at("2026-10-22T12:00:00+00:00"))
    indirect = BUILTIN_CLASSES["urgent-indirect"]
    berlin = class_deadline_ms(received, indirect, "Europe/Berlin")  # falls back on the 25th
    tashkent = class_deadline_ms(received, indirect, "Asia/Tashkent")
    assert tashkent - received == 3 * 86400 * 1000
    assert berlin - received == 3 * 86400 * 1000 + 3600 * 1000


def test_a_wall_clock_time_the_clocks_skip_is_read_after_the_change() -> None:
    received = ms(at("2026-03-28T02:30:00+01:00"))  # 02:30 does not exist on the 29th
    due = class_deadline_ms(received, DeadlineClass(within=timedelta(days=1)), "Europe/Berlin")
    assert due == ms(at("2026-03-29T03:30:00+02:00"))


def test_classes_are_found_by_name_and_alias_in_three_languages_with_a_suggestion() -> None:
    classes = {**BUILTIN_CLASSES, "sirene": DeadlineClass(within=timedelta(hours=12))}
    assert resolve_class("URGENT-DIRECT", classes) == "urgent-direct"
    assert resolve_class("косвенный", classes) == "urgent-indirect"
    assert resolve_class("قياسي", classes) == "standard"
    assert resolve_class("sirene", classes) == "sirene"
    with pytest.raises(CommandError) as raised:
        resolve_class("sirenne", classes)
    assert raised.value.suggestions == ("class:sirene",)
    assert "urgent-direct, urgent-indirect, standard, sirene" in raised.value.message


def test_due_may_shorten_a_class_deadline_but_never_extend_it() -> None:
    now = ms(at("2026-12-07T10:00:00+00:00"))
    urgent = BUILTIN_CLASSES["urgent-direct"]
    check_due(now + 4 * 3600_000, now_ms=now, name="urgent-direct", deadline_class=urgent,
              timezone="UTC")
    with pytest.raises(CommandError) as raised:
        check_due(now + 9 * 3600_000, now_ms=now, name="urgent-direct", deadline_class=urgent,
                  timezone="Asia/Almaty")
    assert raised.value.message == (
        "due: is later than class urgent-direct allows (8h from receipt): the latest is "
        "2026-12-07 23:00 +05:00.")


# --- delays -----------------------------------------------------------------------------


def test_delays_add_up_to_the_class_maximum_and_no_further() -> None:
    first = ms(at("2026-12-07T18:00:00+00:00"))
    urgent = BUILTIN_CLASSES["urgent-direct"]  # at most one day in all
    once = delayed_deadline_ms(current_due_ms=first, original_due_ms=first,
                               delay=timedelta(hours=16), name="urgent-direct",
                               deadline_class=urgent, default_max=timedelta(days=3))
    assert once == first + 16 * 3600_000
    twice = delayed_deadline_ms(current_due_ms=once, original_due_ms=first,
                                delay=timedelta(hours=8), name="urgent-direct",
                                deadline_class=urgent, default_max=timedelta(days=3))
    assert twice == first + 86400_000
    with pytest.raises(CommandError) as raised:
        delayed_deadline_ms(current_due_ms=once, original_due_ms=first,
                            delay=timedelta(hours=9), name="urgent-direct",
                            deadline_class=urgent, default_max=timedelta(days=3))
    assert raised.value.message == (
        "A delay of 9h is longer than class urgent-direct allows: at most 1d in all, 8h left.")


def test_a_delay_names_its_duration_a_declared_reason_code_and_free_text() -> None:
    command = parse_delay("KZ-0042 2d judicial awaiting the prosecutor", ("signed today?",))
    assert (command.ref, command.delay, command.reason) == ("KZ-0042", timedelta(days=2),
                                                            "judicial")
    assert command.text == "awaiting the prosecutor\nsigned today?"
    assert parse_delay("12h суд", (), context_ref="KZ-0042").reason == "judicial"
    with pytest.raises(CommandError) as raised:
        parse_delay("KZ-0042 2d", ())
    assert raised.value.message == "Why? Give a reason code: judicial, agency, technical, other."
    assert raised.value.usage == "!delay CASE DURATION REASON [TEXT]"
    with pytest.raises(CommandError) as raised:
        parse_delay("KZ-0042 2d judical", ())
    assert raised.value.suggestions == ("judicial",)


def test_a_refusal_needs_a_declared_reason_code() -> None:
    assert parse_refusal("KZ-0042 law no legal basis", ()).reason == "law"
    assert parse_refusal("KZ-0042 قانون", ()).reason == "law"
    with pytest.raises(CommandError) as raised:
        parse_refusal("KZ-0042", ())
    assert raised.value.message == (
        "Why? Give a reason code: unavailable, disproportionate, investigation, law.")


def test_on_time_is_known_only_once_answered() -> None:
    assert on_time(100, 100) is True
    assert on_time(100, 101) is False
    assert on_time(100, None) is None
    assert on_time(None, 5) is None


# --- handling codes and actions ---------------------------------------------------------


def test_class_handling_and_action_are_taken_off_the_first_line() -> None:
    terms = split_terms("urgent to:UZ-TERMEZ класс: срочный-прямой h:H2 action:stop tlp:amber")
    assert terms.rest == "urgent to:UZ-TERMEZ tlp:amber"
    assert (terms.deadline_class, terms.handling, terms.action) == ("срочный-прямой", "H2",
                                                                    "stop")


def test_terms_are_checked_against_the_configuration() -> None:
    def resolve(kind: str, line: str, fields: tuple[tuple[str, str], ...] = ()) -> Any:
        return resolve_terms(kind, split_terms(line), fields=fields, due_ms=None, now_ms=0,
                             timezone="UTC", classes=BUILTIN_CLASSES,
                             actions={"photograph": {"en": "photograph", "ru": "сфотографировать"}})

    terms = resolve("request", "urgent class:direct h:h3 action:задержать",
                    (("h3", "not to customs"), ("plate", "01A")))
    assert (terms.deadline_class, terms.handling, terms.action) == ("urgent-direct",
                                                                    Handling.H3, "stop")
    assert terms.handling_text == "not to customs"
    assert terms.fields == (("plate", "01A"),)
    assert resolve("alert", "urgent action:сфотографировать").action == "photograph"
    for line, fields, message in [
        ("urgent class:standard", (), "class: is only for requests"),
        ("urgent h:H5", (), "H5 is not a handling code"),
        ("urgent action:arrest", (), "arrest is not an action"),
        ("urgent h:H3", (), "H3 needs its restriction"),
        ("urgent h:H1", (("h3", "x"),), "The line h3: is only for a case marked h:H3."),
    ]:
        with pytest.raises(CommandError) as raised:
            resolve("alert", line, fields)
        assert message in raised.value.message


def test_the_handling_code_and_action_read_in_three_languages() -> None:
    assert handling_label("H2", "stop", "en") == (
        " · H2 (not to be passed on without permission) · ACTION: stop and detain")
    assert handling_label("H2", "stop", "ru") == (
        " · H2 (не передавать без разрешения) · ДЕЙСТВИЕ: остановить и задержать")
    assert handling_label(None, "seize", "ar") == " · الإجراء: ضبط"
    assert action_label("photograph", "ru", {"photograph": {"en": "photograph"}}) == "photograph"
    assert resolve_action("discreet", {}) == "discreet-check"
    assert parse_handling("h2") is Handling.H2


@pytest.mark.parametrize(("handling", "post", "permitted", "allowed"), [
    (None, "TJ-PANJ", set(), True),
    ("H0", "TJ-PANJ", set(), True),
    ("H1", "TJ-PANJ", set(), True),
    ("H3", "TJ-PANJ", set(), True),
    ("H2", "UZ-TERMEZ", set(), True),  # a first target is no onward forwarding
    ("H2", "TJ-PANJ", set(), False),
    ("H2", "TJ-PANJ", {"AF-HAIRATAN"}, False),
    ("H2", "TJ-PANJ", {"TJ-PANJ"}, True),
])
def test_h2_forwards_only_to_the_posts_the_originator_permitted(
        handling: str | None, post: str, permitted: set[str], allowed: bool) -> None:
    assert may_forward(handling, post, first_targets={"UZ-TERMEZ"},
                       permitted=permitted) is allowed


# --- TLP:RED recipients -----------------------------------------------------------------


RED_POSTS = {
    "UZ-TERMEZ": Post(id="UZ-TERMEZ", names={"en": "Termez"}, country="UZ", agency="border",
                      room="!uz:example.org", clearance="RED",
                      officers=("@bekzod:example.org",), supervisors=("@uz-boss:example.org",)),
    "TJ-PANJ": Post(id="TJ-PANJ", names={"en": "Panj"}, country="TJ", agency="border",
                    room="!tj:example.org", clearance="AMBER", officers=("@farhod:example.org",)),
}


def test_red_goes_to_listed_officers_and_supervisors_of_red_cleared_posts() -> None:
    found = red_recipients(["@bekzod:example.org", "@uz-boss:example.org",
                            "@bekzod:example.org"], RED_POSTS)
    assert [(r.user_id, r.post) for r in found] == [("@bekzod:example.org", "UZ-TERMEZ"),
                                                    ("@uz-boss:example.org", "UZ-TERMEZ")]


@pytest.mark.parametrize(("named", "message"), [
    ("@farhod:example.org", "is not a listed officer or supervisor of a post cleared"),
    ("@stranger:example.org", "is not a listed officer or supervisor of a post cleared"),
    ("!uz:example.org", "is a room"),
    ("#ops:example.org", "is a room"),
    ("caricc", "is not a person"),
    ("UZ-TERMEZ", "is not a person"),
])
def test_red_refuses_rooms_groups_posts_and_uncleared_people(named: str, message: str) -> None:
    with pytest.raises(CommandError) as raised:
        red_recipients([named], RED_POSTS)
    assert message in raised.value.message


# --- the commands -----------------------------------------------------------------------


def registry_with_terms() -> CommandRegistry:
    registry = CommandRegistry()
    register_builtins(registry)
    register_case_commands(registry)
    register_request_commands(registry)
    return registry


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    config: dict[str, Any] = json.loads(json.dumps(CONFIG))
    config["requests"] = {"classes": {"sirene": {"within": "12h", "max_delay": "6h"}}}
    database = await Database.open(tmp_path / "liaison.db")
    yield Bot(database, parse_config(json.dumps(config)), registry_with_terms())
    await database.close()


async def test_a_classed_request_is_delayed_then_answered_on_time(bot: Bot) -> None:
    answer = await bot.say(KZ_ROOM, KZ, "!request urgent to:UZ-TERMEZ class:urgent-direct "
                                        "h:H1 action:discreet\nplate: 01A123BC\nWho owns it?")
    assert "KZ-0001" in answer.text
    relayed = (await bot.queued(UZ_ROOM))[0].content["body"]
    assert relayed.startswith("TLP:GREEN · H1 (not for court without permission) · ACTION: "
                              "discreet check Urgent request KZ-0001")
    assert "class urgent-direct" in relayed
    assert "Answer needed by 2026-05-01 23:00 +05:00" in relayed  # 8 h, Tashkent's clock
    await bot.send_all()

    refused = await bot.say(KZ_ROOM, KZ, "!delay KZ-0001 1d judicial")
    assert refused.text.startswith("Only a post KZ-0001 was sent to delays or refuses it")
    too_long = await bot.say(UZ_ROOM, UZ, "!delay KZ-0001 2d judicial")
    assert "at most 1d in all, 1d left" in too_long.text
    done = await bot.say(UZ_ROOM, UZ, "!delay KZ-0001 12h judicial awaiting the prosecutor")
    assert done.text == ("KZ-0001: your answer is now due 2026-05-02 11:00 +05:00; "
                         "Zhibek post (KZ-ZHIBEK) has been told.")
    told = (await bot.queued(KZ_ROOM))[-1]
    assert told.kind == "case-delayed"
    assert told.content["msgtype"] == "m.text"  # the requester's phone rings
    assert told.content["m.mentions"] == {"user_ids": [KZ]}
    assert told.content["body"].startswith(
        "TLP:GREEN · H1 (not for court without permission) · ACTION: discreet check "
        "Termez post (UZ-TERMEZ) delays its answer to KZ-0001 by 12h, now due "
        "2026-05-02 06:00 +00:00. Reason: a judicial authorisation is pending.")
    assert "awaiting the prosecutor" in told.content["body"]

    async with bot.db.read() as conn:
        case = await cases.case_by_ref(conn, "KZ-0001")
        assert case is not None
        delivery = await cases.delivery_for(conn, case.id, "UZ-TERMEZ")
        assert delivery is not None and delivery.due_ms == ms(at("2026-05-02T06:00:00+00:00"))
        assert delivery.first_due_ms == ms(at("2026-05-01T18:00:00+00:00"))
        steps = await chasing.steps_of(conn, delivery.id)
        audit = await conn.execute_fetchall("SELECT action, detail FROM audit_log "
                                            "WHERE action = 'delayed'")
    answer_steps = [s for s in steps if s.step.phase.value == "answer" and s.state == "pending"]
    assert answer_steps and min(s.step.due_ms for s in answer_steps) == delivery.due_ms
    assert len(audit) == 1 and '"code":"judicial"' in audit[0][1]
    assert "prosecutor" not in audit[0][1]  # the audit log keeps codes, never what was said

    status = await bot.say(KZ_ROOM, KZ, "!status KZ-0001")
    assert "class urgent-direct" in status.text
    assert "answer delayed by Termez post (UZ-TERMEZ)" in status.text
    bot.later(60)
    async with bot.db.transaction() as conn:
        assert await cases.mark_answered(conn, delivery, by=UZ, now_ms=bot.clock.now_ms())
    status = await bot.say(KZ_ROOM, KZ, "!status KZ-0001")
    assert "due 2026-05-02 06:00 +00:00, answered on time" in status.text
    pending = await bot.say(UZ_ROOM, UZ, "!pending")
    assert "KZ-0001" not in pending.text or "answered" in pending.text


async def test_a_refused_request_closes_that_delivery_with_the_reason(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!request urgent to:UZ-TERMEZ,TJ-PANJ class:sirene\nWho?")
    await bot.send_all()
    missing = await bot.say(UZ_ROOM, UZ, "!refuse KZ-0001")
    assert missing.text.startswith("Why? Give a reason code")
    done = await bot.say(UZ_ROOM, UZ, "!refuse KZ-0001 law no legal basis")
    assert done.text == "KZ-0001 refused; Zhibek post (KZ-ZHIBEK) has been told."
    told = (await bot.queued(KZ_ROOM))[-1]
    assert told.kind == "case-declined"
    assert "Termez post (UZ-TERMEZ) refuses KZ-0001. Reason: the law does not permit it." \
        in told.content["body"]
    again = await bot.say(UZ_ROOM, UZ, "!delay KZ-0001 1h other")
    assert again.text == "KZ-0001 is already refused at your post."
    status = await bot.say(KZ_ROOM, KZ, "!status KZ-0001")
    assert "Termez post (UZ-TERMEZ): refused" in status.text
    assert "(the law does not permit it)" in status.text
    async with bot.db.read() as conn:
        case = await cases.case_by_ref(conn, "KZ-0001")
        assert case is not None and case.deadline_class == "sirene"
        delivery = await cases.delivery_for(conn, case.id, "UZ-TERMEZ")
        assert delivery is not None and delivery.refusal_reason == "law"
        uz = await chasing.unplanned_deliveries(conn, delivery_id=delivery.id)
    assert uz[0].subject.answered_ms is not None  # the chase reads it as taken


async def test_an_h2_case_is_passed_on_only_after_the_originators_permit(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ h:H2\nWhite Kamaz")
    await bot.send_all()
    refused = await bot.say(KZ_ROOM, KZ, "!update KZ-0001 to:TJ-PANJ also for Panj")
    assert refused.text.startswith(
        "KZ-0001 is marked H2: it is not passed on to TJ-PANJ without the permission of "
        "Zhibek post (KZ-ZHIBEK) (!permit KZ-0001 POST).")
    assert await bot.queued(TJ_ROOM) == []
    not_origin = await bot.say(UZ_ROOM, UZ, "!permit KZ-0001 TJ-PANJ")
    assert not_origin.text.startswith("Only Zhibek post (KZ-ZHIBEK), which sent KZ-0001")
    permitted = await bot.say(KZ_ROOM, KZ_BOSS, "!permit KZ-0001 TJ-PANJ")
    assert permitted.text == "KZ-0001 may now be passed on to TJ-PANJ."
    forwarded = await bot.say(KZ_ROOM, KZ, "!update KZ-0001 to:TJ-PANJ also for Panj")
    assert forwarded.text == "Update to KZ-0001 sent to: UZ-TERMEZ, TJ-PANJ."
    tj = await bot.queued(TJ_ROOM)
    assert tj[0].kind == "case-relay"
    assert tj[0].content["body"].startswith(
        "TLP:GREEN · H2 (not to be passed on without permission) Urgent alert KZ-0001")
    async with bot.db.read() as conn:
        audit = await conn.execute_fetchall(
            "SELECT action FROM audit_log WHERE action IN ('h2-forward-refused', 'permitted')")
    assert [row[0] for row in audit] == ["h2-forward-refused", "permitted"]


async def test_red_to_a_room_a_group_or_an_uncleared_officer_is_refused_and_nothing_sent(
        bot: Bot) -> None:
    for body, message in [
        ("!alert flash tlp:red to:UZ-TERMEZ\nx", "TLP:RED is never sent into a room"),
        ("!alert flash tlp:amber to:@bekzod:liaison.example\nx", "Only TLP:RED goes to named"),
        ("!alert flash tlp:red to:@bekzod:liaison.example\nx", "is not a listed officer"),
        ("!alert flash tlp:red to:@bekzod:liaison.example,!room:liaison.example\nx",
         "is not a listed officer"),
    ]:
        answer = await bot.say(KZ_ROOM, KZ, body)
        assert message in answer.text, body
    assert await bot.queued(UZ_ROOM) == []
    assert await bot.case("KZ-0001") is None


_ = NOW


class FakeDirectRooms:
    """Each person's direct room, joined at once."""

    def members(self, room_id: str) -> frozenset[str] | None:
        return frozenset({room_id.removeprefix("!dm-").replace("_", ":"),
                          "@liaison:liaison.example"})

    async def direct_room(self, user_id: str) -> str | None:
        return "!dm-" + user_id.replace(":", "_")


async def test_red_goes_to_each_named_officer_by_direct_message_and_the_origin_sees_only_who(
        tmp_path: Path) -> None:
    from liaison.handlers.red import deliver_waiting
    config: dict[str, Any] = json.loads(json.dumps(CONFIG))
    config["posts"][1].update(clearance="RED", officers=[UZ])
    config["posts"][0].update(officers=[KZ])
    config["posts"][2].update(clearance="RED", supervisors=["@tj-boss:liaison.example"])
    database = await Database.open(tmp_path / "liaison.db")
    bot = Bot(database, parse_config(json.dumps(config)), registry_with_terms())
    try:
        answer = await bot.say(KZ_ROOM, KZ, "!alert flash tlp:red to:@bekzod:liaison.example, "
                                            "@tj-boss:liaison.example\nInformant: Rustam K.")
        assert answer.text == ("TLP:RED KZ-0001 sent by direct message to @bekzod:liaison.example, "
                               "@tj-boss:liaison.example. Its content is not shown here.")
        assert await bot.queued() == []  # nothing until each has a direct room
        assert await deliver_waiting(bot.db, bot.config, FakeDirectRooms(), bot.clock) == (2, 0)
        queued = await bot.queued()
        assert [m.room_id for m in queued] == ["!dm-@bekzod_liaison.example",
                                               "!dm-@tj-boss_liaison.example"]
        assert all("Informant: Rustam K." in m.content["body"] for m in queued)
        assert queued[0].content["m.mentions"] == {"user_ids": [UZ]}
        assert queued[0].content["msgtype"] == "m.text"
        assert await deliver_waiting(bot.db, bot.config, FakeDirectRooms(), bot.clock) == (0, 0)
        assert len(await bot.queued()) == 2  # each once
        async with bot.db.read() as conn:
            case = await cases.case_by_ref(conn, "KZ-0001")
            assert case is not None
            delivered = await cases.deliveries(conn, case.id)
        assert [(d.post, d.recipient, d.room_id) for d in delivered] == [
            (UZ, UZ, "!dm-@bekzod_liaison.example"),
            ("@tj-boss:liaison.example", "@tj-boss:liaison.example",
             "!dm-@tj-boss_liaison.example")]
        status = await bot.say(KZ_ROOM, KZ, "!status KZ-0001")  # the origin room: nothing
        assert status.text.startswith("There is no case KZ-0001")

        async def in_direct_room(sender: str, room_id: str, body: str) -> str:
            bot.events += 1
            answer = await run_command(
                bot.db, bot.config, bot.clock, bot.registry, room_id=room_id, sender=sender,
                body=body, event_id=f"$event{bot.events}", at=bot.clock.at, joined=JOINED,
                members={room_id: frozenset({sender, "@liaison:liaison.example"})})
            return answer.text

        uz_dm, tj_dm = "!dm-@bekzod_liaison.example", "!dm-@tj-boss_liaison.example"
        assert await in_direct_room(UZ, uz_dm, "!ack KZ-0001") == "KZ-0001 acknowledged."
        assert (await in_direct_room("@tj-boss:liaison.example", uz_dm, "!ack KZ-0001")
                ).startswith("There is no case KZ-0001")
        assert await in_direct_room("@tj-boss:liaison.example", tj_dm, "!ack KZ-0001") == (
            "KZ-0001 acknowledged.")
        async with bot.db.read() as conn:
            acked = [d.acknowledged_by for d in await cases.deliveries(conn, 1)]
            waiting = await conn.execute_fetchall(
                "SELECT user_id, kind FROM direct_waiting WHERE sent_ms IS NULL")
        assert acked == [UZ, "@tj-boss:liaison.example"]
        # The originator hears of each acknowledgement by direct message (KZ's room is
        # not RED-cleared).
        assert [tuple(row) for row in waiting] == [(KZ, "case-ack"), (KZ, "case-ack")]
    finally:
        await database.close()


def test_the_report_gives_the_on_time_share_per_post_and_class() -> None:
    from liaison.commands.chase_policy import ChasePolicies
    from liaison.commands.chasing import ChaseSubject
    from liaison.commands.model import Priority
    from liaison.commands.report import ClassFigure, ReportDelivery, build_report

    def request(answered: int | None, due: int, deadline_class: str | None) -> ReportDelivery:
        return ReportDelivery("UZ-TERMEZ", "KZ-ZHIBEK", ChaseSubject(
            kind="request", priority=Priority.URGENT, routed_ms=10, due_ms=due,
            acknowledged_ms=answered, answered_ms=answered, case_state="open"),
            deadline_class=deadline_class)

    items = [request(50, 100, "urgent-direct"), request(150, 100, "urgent-direct"),
             request(None, 100, "urgent-direct"), request(90, 100, "sirene"),
             request(90, 100, None)]
    [report] = build_report(["UZ-TERMEZ"], items, sent={}, policies=ChasePolicies.model_validate(
        {}), since_ms=0, now_ms=1000)
    assert report.on_time == (ClassFigure("urgent-direct", 2, 1), ClassFigure("sirene", 1, 1))


async def test_an_export_leaves_red_content_out_unless_the_admin_asks(tmp_path: Path) -> None:
    from liaison.storage.export import case_batches
    config: dict[str, Any] = json.loads(json.dumps(CONFIG))
    config["posts"][1].update(clearance="RED", officers=[UZ])
    database = await Database.open(tmp_path / "liaison.db")
    bot = Bot(database, parse_config(json.dumps(config)), registry_with_terms())
    try:
        await bot.say(KZ_ROOM, KZ, "!alert flash tlp:red to:@bekzod:liaison.example\n"
                                   "Informant: Rustam K.")
        await bot.say(KZ_ROOM, KZ, "!request urgent to:UZ-TERMEZ class:standard h:H2 "
                                   "action:seize\nWho?")
        async with database.read() as conn:
            plain = [case async for batch in case_batches(conn) for case in batch]
            full = [case async for batch in case_batches(conn, include_red=True)
                    for case in batch]
    finally:
        await database.close()
    assert plain[0]["red_content"] == "withheld"
    assert plain[0]["fields"] == [] and "Rustam" not in json.dumps(plain[0])
    assert full[0]["fields"] == [["Informant", "Rustam K."]]
    assert (plain[1]["deadline_class"], plain[1]["handling"], plain[1]["action"]) == (
        "standard", "H2", "seize")
    assert plain[1]["deliveries"][0]["answer_due"] == "2026-05-08T10:00:00.000Z"


def test_a_red_case_is_read_in_its_origin_room_only_when_cleared_and_exactly_its_people(
) -> None:
    from liaison.commands.audience import CaseParties, Detail, case_detail, escalation_detail
    from liaison.handlers.context import audience_in
    config_data: dict[str, Any] = json.loads(json.dumps(CONFIG))
    config_data["posts"][0].update(officers=[KZ])
    config_data["posts"][1].update(clearance="RED", officers=[UZ],
                                   supervisors=["@uz-boss:liaison.example"])
    config_data["handling"] = {"red_cleared_rooms": [KZ_ROOM]}
    config = parse_config(json.dumps(config_data))
    posts = {post.id: post for post in config.posts}
    red = CaseParties(ref="KZ-0001", tlp=Tlp.RED, origin="KZ-ZHIBEK", targets=frozenset({UZ}))
    bot_user = "@liaison:liaison.example"
    own = audience_in(config, KZ_ROOM, frozenset({KZ, KZ_BOSS, bot_user}))
    visited = audience_in(config, KZ_ROOM, frozenset({KZ, "@visitor:liaison.example"}))
    uncleared = audience_in(config, UZ_ROOM, frozenset({UZ}))
    assert case_detail(own, red, posts) is Detail.FULL
    assert case_detail(visited, red, posts) is Detail.NONE
    assert case_detail(uncleared, red, posts) is Detail.NONE
    named = audience_in(config, "!dm:liaison.example", frozenset({UZ, bot_user}))
    assert case_detail(named, red, posts) is Detail.PARTICIPANT
    boss = audience_in(config, "!boss-dm:liaison.example",
                       frozenset({"@uz-boss:liaison.example", bot_user}))
    assert case_detail(boss, red, posts) is Detail.NONE  # not named: never the content
    assert escalation_detail(boss, red, posts) is Detail.REFERENCE  # only who and which


async def test_amber_strict_is_never_passed_on_and_an_unknown_post_sends_nothing(
        tmp_path: Path) -> None:
    config: dict[str, Any] = json.loads(json.dumps(CONFIG))
    config["posts"][1].update(clearance="AMBER+STRICT")
    database = await Database.open(tmp_path / "liaison.db")
    bot = Bot(database, parse_config(json.dumps(config)), registry_with_terms())
    try:
        await check_passing_on(bot)
    finally:
        await database.close()


async def check_passing_on(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ tlp:amber+strict\nWhite Kamaz")
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ tlp:amber\nBlue Volvo")
    strict = await bot.say(KZ_ROOM, KZ, "!update KZ-0001 to:TJ-PANJ")
    assert strict.text.startswith("KZ-0001 is AMBER+STRICT: it is never passed on.")
    unknown = await bot.say(KZ_ROOM, KZ, "!update KZ-0002 to:TJ-PANH see this")
    assert unknown.text.startswith("Nothing was sent.")
    assert await bot.queued(TJ_ROOM) == []
    forwarded = await bot.say(KZ_ROOM, KZ, "!update KZ-0002 to:TJ-PANJ")
    assert forwarded.text == "KZ-0002 is now also sent to TJ-PANJ."
    assert [m.kind for m in await bot.queued(TJ_ROOM)] == ["case-relay"]
