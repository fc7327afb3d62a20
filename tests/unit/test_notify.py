"""What rings: the notification table covers every outbox kind, and config only lowers it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from liaison.commands.model import Priority
from liaison.commands.notify import (
    NOTIFICATIONS,
    Notification,
    NotificationSettings,
    OutboxKind,
    case_notice_kind,
    msgtype_for,
)
from liaison.config import ConfigError, parse_config
from liaison.storage import outbox
from liaison.storage.db import Database
from tests.unit.test_config import VALID, line_of

MUST_RING = {OutboxKind.CASE_RELAY, OutboxKind.CHASE_REMIND, OutboxKind.CHASE_ESCALATE,
             OutboxKind.UNDECRYPTABLE, OutboxKind.CASE_DELAYED, OutboxKind.CASE_DECLINED}
RING_WHEN_PRESSING = {OutboxKind.CASE_ACK, OutboxKind.CHASE_TAKEN}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "liaison.db")
    yield database
    await database.close()


def test_every_outbox_kind_has_a_notification_class() -> None:
    missing = [kind.value for kind in OutboxKind if kind not in NOTIFICATIONS]
    assert missing == [], f"outbox kinds without a notification class: {missing}"


def test_what_must_reach_a_person_now_rings_and_everything_else_is_quiet() -> None:
    for kind in OutboxKind:
        flash = msgtype_for(kind, priority=Priority.FLASH, post="UZ-TERMEZ")
        routine = msgtype_for(kind, priority=Priority.ROUTINE, post="UZ-TERMEZ")
        if kind in MUST_RING:
            assert (flash, routine) == ("m.text", "m.text"), kind
        elif kind in RING_WHEN_PRESSING:
            assert (flash, routine) == ("m.text", "m.notice"), kind
            assert msgtype_for(kind, priority=Priority.URGENT) == "m.text"
        else:
            assert (flash, routine) == ("m.notice", "m.notice"), kind
    # answers to commands, help, status, reports and refusals never ring
    for kind in (OutboxKind.REPLY, OutboxKind.REFUSAL, OutboxKind.REPORT_WEEKLY,
                 OutboxKind.DEVICE_NOTICE):
        assert NOTIFICATIONS[kind] is Notification.QUIET


def test_config_lowers_a_class_by_priority_or_post_but_never_raises_one() -> None:
    quiet = NotificationSettings(quiet_priorities=(Priority.ROUTINE,),
                                 quiet_posts=("AF-HAIRATAN",))
    relay = OutboxKind.CASE_RELAY
    assert msgtype_for(relay, priority=Priority.ROUTINE, post="UZ-TERMEZ",
                       settings=quiet) == "m.notice"
    assert msgtype_for(relay, priority=Priority.FLASH, post="AF-HAIRATAN",
                       settings=quiet) == "m.notice"
    assert msgtype_for(relay, priority=Priority.FLASH, post="UZ-TERMEZ",
                       settings=quiet) == "m.text"
    # an escalation in a supervisor's direct message (no post) still rings
    assert msgtype_for(OutboxKind.CHASE_ESCALATE, priority=Priority.FLASH, post=None,
                       settings=quiet) == "m.text"
    # nothing in the settings can make a quiet kind ring
    assert msgtype_for(OutboxKind.REPLY, priority=Priority.FLASH, post="UZ-TERMEZ",
                       settings=NotificationSettings()) == "m.notice"


def test_case_notices_map_to_kinds_and_an_unknown_one_is_refused() -> None:
    for about in ("ack", "reply", "update", "edit", "withdrawn", "closed", "cancelled",
                  "attachment"):
        assert case_notice_kind(about) in NOTIFICATIONS
    with pytest.raises(ValueError):
        case_notice_kind("gossip")


async def test_the_outbox_refuses_a_quiet_kind_sent_as_m_text(db: Database) -> None:
    async with db.transaction() as conn:
        with pytest.raises(ValueError, match="quiet"):
            await outbox.enqueue(conn, room_id="!a:x", event_type="m.room.message",
                                 content={"msgtype": "m.text", "body": "hi"}, now_ms=1,
                                 kind=OutboxKind.REPLY)
        with pytest.raises(ValueError):
            await outbox.enqueue(conn, room_id="!a:x", event_type="m.room.message",
                                 content={"msgtype": "m.notice", "body": "hi"}, now_ms=1,
                                 kind="chatter")  # type: ignore[arg-type]
        queued = await outbox.enqueue(conn, room_id="!a:x", event_type="m.room.message",
                                      content={"msgtype": "m.text", "body": "alert"},
                                      now_ms=1, kind=OutboxKind.CASE_RELAY)
    assert queued.kind == "case-relay"


def test_notifications_section_is_read_and_unknown_posts_are_refused_with_their_line() -> None:
    config = parse_config(VALID + "notifications:\n  quiet_priorities: [routine]\n"
                          "  quiet_posts: [UZ-TERMEZ]\n", source="config.yaml")
    assert config.notifications == NotificationSettings(
        quiet_priorities=(Priority.ROUTINE,), quiet_posts=("UZ-TERMEZ",))
    assert parse_config(VALID, source="config.yaml").notifications == NotificationSettings()

    text = VALID + "notifications:\n  quiet_posts: [UZ-TERMES]\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="config.yaml")
    (problem,) = caught.value.problems
    assert problem.path == "notifications.quiet_posts[0]"
    assert problem.line == line_of(text, "UZ-TERMES")
    assert "UZ-TERMES is not a configured post id" in problem.message

    text = VALID + "notifications:\n  quiet_priorities: [loud]\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="config.yaml")
    assert caught.value.problems[0].path.startswith("notifications.quiet_priorities")
