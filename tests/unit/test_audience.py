"""Who reads a room, and how much of a case they may see (`commands.audience`): the pure
table, then the handlers and the chaser checked against it, without Matrix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from liaison.commands.audience import (
    Audience,
    AudienceKind,
    CaseParties,
    Detail,
    Disclosure,
    carries_case_content,
    case_detail,
    disclose,
    escalation_detail,
    post_figures_visible,
    room_audience,
)
from liaison.commands.case_render import CASE_KEY
from liaison.commands.model import Post, Tlp
from liaison.commands.notify import OutboxKind
from liaison.handlers import cases as case_commands
from liaison.handlers import context as bot_services
from liaison.handlers.context import UndisclosedCaseContent, require_disclosure
from liaison.storage import cases, outbox
from tests.unit.test_chaser import (
    ADMIN,
    CARICC_ROOM,
    FLASH,
    KZ,
    KZ_BOSS,
    KZ_ROOM,
    OTHER_ROOM,
    TJ_BOSS,
    TJ_ROOM,
    TJ_SUP_ROOM,
    UZ,
    UZ_BOSS,
    UZ_ROOM,
    Bot,
    bot,
    dm,
)

__all__ = ["bot"]  # the fixture, shared with the chaser's tests

BOT = "@liaison:liaison.example"
OFFICER = "@officer:x.example"
STRANGER = "@stranger:x.example"


def make_post(post_id: str, **extra: Any) -> Post:
    return Post.model_validate({
        "id": post_id, "names": {"en": post_id}, "country": post_id[:2], "agency": "border",
        "room": f"!{post_id.lower()}:x.example", **extra})


POSTS = {post.id: post for post in (
    make_post("KZ-A", supervisors=["@kz-boss:x.example"], supervisors_room="!kz-sup:x.example"),
    make_post("TJ-C", supervisors=["@tj-boss:x.example"], supervisors_room="!tj-sup:x.example"),
    make_post("UZ-B", supervisors=["@uz-boss:x.example"], officers=[OFFICER]),
    make_post("KZ-CARICC", agency="regional-centre"),
)}


def audience(room_id: str, members: frozenset[str] | None = None) -> Audience:
    return room_audience(room_id, posts=POSTS.values(), members=members, bot_user_id=BOT,
                         admins=["@admin:x.example"], admins_room="!admins:x.example")


def parties(tlp: Tlp) -> CaseParties:
    return CaseParties(ref="KZ-0024", tlp=tlp, origin="KZ-A", targets=frozenset({"TJ-C"}))


def with_bot(*users: str) -> frozenset[str]:
    return frozenset({BOT, *users})


ROOMS: dict[str, Callable[[], Audience]] = {
    "origin post room": lambda: audience("!kz-a:x.example"),
    "target post room": lambda: audience("!tj-c:x.example"),
    "other post room": lambda: audience("!uz-b:x.example"),
    "regional centre room": lambda: audience("!kz-caricc:x.example"),
    "origin supervisors' room": lambda: audience("!kz-sup:x.example",
                                                 with_bot("@kz-boss:x.example")),
    "target supervisors' room": lambda: audience("!tj-sup:x.example",
                                                 with_bot("@tj-boss:x.example")),
    "origin supervisors' room with a stranger in it": lambda: audience(
        "!kz-sup:x.example", with_bot("@kz-boss:x.example", STRANGER)),
    "DM of the origin supervisor": lambda: audience("!dm1:x.example",
                                                    with_bot("@kz-boss:x.example")),
    "DM of the target supervisor": lambda: audience("!dm2:x.example",
                                                    with_bot("@tj-boss:x.example")),
    "DM of an unrelated supervisor": lambda: audience("!dm3:x.example",
                                                      with_bot("@uz-boss:x.example")),
    "DM of an unrelated officer": lambda: audience("!dm4:x.example", with_bot(OFFICER)),
    "DM of the origin supervisor with a guest invited": lambda: audience(
        "!dm5:x.example", with_bot("@kz-boss:x.example", "@tj-boss:x.example")),
    "admins' room": lambda: audience("!admins:x.example", with_bot("@admin:x.example")),
    "unknown room": lambda: audience("!elsewhere:x.example", with_bot(STRANGER)),
}

F, P, N = Detail.FULL, Detail.PARTICIPANT, Detail.NONE
EXPECTED = {  # room: (detail for GREEN and AMBER alike, escalation detail GREEN, AMBER)
    "origin post room": (F, F, F),
    "target post room": (P, P, P),
    "other post room": (N, Detail.REFERENCE, N),
    "regional centre room": (N, Detail.REFERENCE, N),
    "origin supervisors' room": (F, F, F),
    "target supervisors' room": (P, P, P),
    "origin supervisors' room with a stranger in it": (N, Detail.REFERENCE, N),
    "DM of the origin supervisor": (F, F, F),
    "DM of the target supervisor": (P, P, P),
    "DM of an unrelated supervisor": (N, Detail.REFERENCE, N),
    "DM of an unrelated officer": (N, Detail.REFERENCE, N),
    "DM of the origin supervisor with a guest invited": (N, N, N),
    "admins' room": (N, Detail.REFERENCE, N),
    "unknown room": (N, N, N),
}


@pytest.mark.parametrize("room", list(ROOMS))
@pytest.mark.parametrize("tlp", [Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT])
def test_the_audience_table(room: str, tlp: Tlp) -> None:
    expected, escalation_green, escalation_amber = EXPECTED[room]
    seen = ROOMS[room]()
    assert case_detail(seen, parties(tlp), POSTS) is expected
    open_tlp = tlp in (Tlp.CLEAR, Tlp.GREEN)
    assert escalation_detail(seen, parties(tlp), POSTS) is (
        escalation_green if open_tlp else escalation_amber)


def test_red_never_goes_into_a_room_even_the_origins() -> None:
    for room in ("origin post room", "origin supervisors' room"):
        assert case_detail(ROOMS[room](), parties(Tlp.RED), POSTS) is Detail.NONE


def test_rooms_are_told_apart_by_configuration_and_members() -> None:
    assert audience("!uz-b:x.example").kind is AudienceKind.POST
    assert audience("!kz-sup:x.example", with_bot()).kind is AudienceKind.SUPERVISORS
    assert audience("!dm:x.example", with_bot("@kz-boss:x.example")).person == (
        "@kz-boss:x.example")
    # A stranger alone with the bot is no one the configuration knows.
    assert audience("!dm:x.example", with_bot(STRANGER)).kind is AudienceKind.UNKNOWN
    assert audience("!dm:x.example", None).kind is AudienceKind.UNKNOWN


def test_a_disclosure_comes_only_from_the_check() -> None:
    with pytest.raises(TypeError):
        Disclosure("!tj-c:x.example", "KZ-0024", Detail.FULL)
    granted = disclose(ROOMS["target post room"](), parties(Tlp.AMBER), POSTS)
    assert granted is not None and granted.detail is Detail.PARTICIPANT
    assert disclose(ROOMS["other post room"](), parties(Tlp.AMBER), POSTS) is None


CASE_KINDS = [kind for kind in OutboxKind if kind.name.startswith(("CASE_", "CHASE_"))]
"""Every outbox kind that says something about a case (`commands.notify.OutboxKind`)."""


def test_the_case_kinds_are_all_the_kinds_about_cases() -> None:
    assert {kind.value for kind in CASE_KINDS} == {
        "case-relay", "case-ack", "case-update", "case-closed", "case-cancelled",
        "case-reply", "case-attachment", "case-edit", "case-withdrawn", "case-hit",
        "case-delayed", "case-declined", "chase-remind", "chase-escalate", "chase-taken"}
    assert [kind for kind in OutboxKind if carries_case_content(kind)] == CASE_KINDS


@pytest.mark.parametrize("kind", CASE_KINDS)
def test_no_case_message_is_queued_without_a_disclosure_for_its_room(kind: OutboxKind) -> None:
    granted = disclose(ROOMS["target post room"](), parties(Tlp.AMBER), POSTS)
    assert granted is not None
    require_disclosure(kind, "!tj-c:x.example", "KZ-0024", granted)
    with pytest.raises(UndisclosedCaseContent):
        require_disclosure(kind, "!tj-c:x.example", "KZ-0024", None)
    with pytest.raises(UndisclosedCaseContent):  # a proof for one room opens no other
        require_disclosure(kind, "!uz-b:x.example", "KZ-0024", granted)
    with pytest.raises(UndisclosedCaseContent):  # nor another case
        require_disclosure(kind, "!tj-c:x.example", "KZ-0025", granted)


@pytest.mark.parametrize("kind", [kind for kind in OutboxKind if kind not in CASE_KINDS])
def test_messages_about_no_case_need_no_disclosure(kind: OutboxKind) -> None:
    require_disclosure(kind, "!uz-b:x.example", None, None)


def test_report_figures_only_where_every_reader_supervises_the_post() -> None:
    assert post_figures_visible(ROOMS["origin post room"](), "KZ-A", POSTS)
    assert not post_figures_visible(ROOMS["other post room"](), "KZ-A", POSTS)
    assert post_figures_visible(ROOMS["DM of the origin supervisor"](), "KZ-A", POSTS)
    assert not post_figures_visible(ROOMS["DM of the origin supervisor"](), "TJ-C", POSTS)
    assert not post_figures_visible(
        ROOMS["origin supervisors' room with a stranger in it"](), "KZ-A", POSTS)
    admin = audience("!dm:x.example", with_bot("@admin:x.example"))
    assert post_figures_visible(admin, "TJ-C", POSTS, admins=["@admin:x.example"])


# --- the handlers and the chaser against the table ----------------------------------------


@pytest.fixture
def granted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every (room, case) the check granted, wherever it was asked."""
    seen: list[tuple[str, str]] = []

    def spy(audience: Audience, parties: CaseParties, *args: Any,
            **kwargs: Any) -> Disclosure | None:
        disclosure = disclose(audience, parties, *args, **kwargs)
        if disclosure is not None:
            seen.append((disclosure.room_id, disclosure.ref))
        return disclosure

    monkeypatch.setattr(bot_services, "disclose", spy)
    monkeypatch.setattr(case_commands, "disclose", spy)
    return seen


async def all_queued(harness: Bot) -> list[outbox.OutboxMessage]:
    async with harness.db.read() as conn:
        rows = await conn.execute_fetchall("SELECT id FROM outbox ORDER BY id")
        messages = [await outbox.get(conn, row[0]) for row in rows]
    return [m for m in messages if m is not None]


async def test_every_message_about_a_case_went_through_the_check(
        bot: Bot, granted: list[tuple[str, str]]) -> None:
    await bot.say(KZ_ROOM, KZ, FLASH)
    await bot.say(KZ_ROOM, KZ, "!update KZ-0001 Second truck")
    for minutes in (5, 10, 15, 16, 30, 31):
        await bot.at(minutes)
    await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")
    await bot.at(32)
    await bot.say(KZ_ROOM, KZ, "!close KZ-0001 seized")

    about_case = [m for m in await all_queued(bot) if CASE_KEY in m.content]
    kinds = {m.kind for m in about_case}
    assert kinds >= {"case-relay", "case-update", "case-ack", "case-closed", "chase-remind",
                     "chase-escalate", "chase-taken"}, kinds
    for message in about_case:
        assert (message.room_id, message.case_ref) in granted, (message.kind, message.room_id)


async def test_an_amber_escalation_reaches_no_room_outside_the_case(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!alert flash to:UZ-TERMEZ tlp:amber\nvehicle: white Kamaz")
    await bot.say(KZ_ROOM, KZ, FLASH)  # KZ-0002, GREEN: the centre may learn it exists
    for minutes in (5, 10, 15, 16, 30, 31):  # a direct room opens one round later
        await bot.at(minutes)

    centre = await bot.chased(CARICC_ROOM)
    assert [m.content[CASE_KEY]["ref"] for m in centre] == ["KZ-0002"]
    assert "Kamaz" not in centre[0].content["body"]  # the reference, never the content
    origin_boss = await bot.chased(dm(KZ_BOSS))
    assert {m.content[CASE_KEY]["ref"] for m in origin_boss} == {"KZ-0001", "KZ-0002"}
    assert all("white Kamaz" in m.content["body"] for m in origin_boss)
    [escalated] = [entry for entry in await bot.timeline("KZ-0001")
                   if entry.kind == "escalated" and entry.detail.get("withheld")]
    assert escalated.detail["withheld"] == [CARICC_ROOM]


async def test_an_origin_supervisor_sees_nothing_of_a_case_in_another_posts_room(
        bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:TJ-PANJ tlp:amber\nSource: Ahmad")
    await bot.say(KZ_ROOM, KZ, "!update KZ-0001 The source is the driver's cousin")

    for room in (UZ_ROOM, CARICC_ROOM):
        answer = await bot.say(room, KZ_BOSS, "!status KZ-0001")
        assert answer.text == "There is no case KZ-0001 that your post can see.", answer.text
        assert "cousin" not in answer.text
        closed = await bot.say(room, KZ_BOSS, "!close KZ-0001")
        assert closed.text == "There is no case KZ-0001 that your post can see."
    pending = await bot.say(UZ_ROOM, UZ, "!pending")
    assert "KZ-0001" not in pending.text

    mine = await bot.say(dm(KZ_BOSS), KZ_BOSS, "!status KZ-0001")
    assert "cousin" in mine.text
    foreign = await bot.say(dm(UZ_BOSS), UZ_BOSS, "!status KZ-0001")
    assert foreign.text == "There is no case KZ-0001 that your post can see."
    target_boss = await bot.say(TJ_SUP_ROOM, TJ_BOSS, "!status KZ-0001")
    assert "cousin" in target_boss.text

    disclosed = [entry for entry in await bot.timeline("KZ-0001") if entry.kind == "disclosed"]
    assert [(e.actor, e.detail) for e in disclosed] == [
        (KZ_BOSS, {"room_id": dm(KZ_BOSS), "shown": "status", "level": "full"}),
        (TJ_BOSS, {"room_id": TJ_SUP_ROOM, "shown": "status", "level": "participant"}),
    ]
    async with bot.db.read() as conn:
        rows = await conn.execute_fetchall(
            "SELECT actor, room_id FROM audit_log WHERE action = 'disclosed'")
    assert [tuple(row) for row in rows] == [(KZ_BOSS, dm(KZ_BOSS)), (TJ_BOSS, TJ_SUP_ROOM)]


async def test_a_supervisor_closes_the_case_from_their_direct_room(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:TJ-PANJ tlp:amber\nLook out")
    answer = await bot.say(dm(KZ_BOSS), KZ_BOSS, "!cancel KZ-0001")
    assert answer.text == "KZ-0001 cancelled; told: TJ-PANJ."
    async with bot.db.read() as conn:
        case = await cases.case_by_ref(conn, "KZ-0001")
    assert case is not None and case.state == "cancelled" and case.closed_by == KZ_BOSS
    origin_told = [m for m in await all_queued(bot)
                   if m.room_id == KZ_ROOM and m.kind == "case-cancelled"]
    assert len(origin_told) == 1


async def test_escalations_and_report_in_another_posts_room_show_nothing_of_other_posts(
        bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, FLASH)
    for minutes in (5, 10, 15, 16):
        await bot.at(minutes)
    elsewhere = await bot.say(TJ_ROOM, UZ_BOSS, "!escalations")
    assert "KZ-0001" not in elsewhere.text
    assert elsewhere.text.splitlines() == [
        "No open escalations for your posts.",
        "Everyone in this room reads this answer, so it shows only what they all may see; "
        "for everything about your posts, ask in your direct room with me."]
    mine = await bot.say(dm(UZ_BOSS), UZ_BOSS, "!escalations")
    assert "KZ-0001" in mine.text
    report = await bot.say(TJ_ROOM, UZ_BOSS, "!report")
    assert "Termez" not in report.text
    admin = await bot.say(OTHER_ROOM, ADMIN, "!report")  # a room of nobody: no figures
    assert "Cases sent" not in admin.text


async def test_supervisors_whose_room_has_a_stranger_in_it_are_escalated_to_directly(
        bot: Bot) -> None:
    bot.destinations.rooms[TJ_SUP_ROOM] = frozenset({TJ_BOSS, "@visitor:liaison.example"})
    await bot.say(KZ_ROOM, KZ, "!alert flash to:TJ-PANJ tlp:amber\nvehicle: white Kamaz")
    for minutes in (5, 10, 15, 16):  # target supervisors at 15; a direct room opens a round later
        await bot.at(minutes)

    assert await bot.chased(TJ_SUP_ROOM) == []
    [escalation] = await bot.chased(dm(TJ_BOSS))
    assert escalation.content[CASE_KEY]["about"] == "escalation"
    assert "white Kamaz" in escalation.content["body"]
