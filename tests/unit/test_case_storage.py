"""Cases, deliveries and the timeline in a real SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiosqlite
import pytest

from liaison.commands.model import Priority, Tlp
from liaison.storage import cases, outbox
from liaison.storage.db import Database

T0 = 1_777_600_000_000

NEW = cases.NewCase(
    kind="alert", origin_post="KZ-ZHIBEK", origin_country="KZ", priority=Priority.URGENT,
    tlp=Tlp.AMBER, category="drugs", grading="B2", related_ref=None,
    fields=(("vehicle", "white Kamaz"), ("route", "Hairatan -> Termez")),
    text="Suspected heroin.", due_ms=None, forwardable=True, origin_room="!kz:example.org",
    origin_event_id="$alert", origin_sender="@kz:example.org", created_ms=T0,
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "liaison.db")
    yield database
    await database.close()


async def relay(conn: aiosqlite.Connection, case: cases.Case, post: str, room: str,
                now_ms: int) -> cases.Delivery:
    """Queue a relayed message and record the delivery, as the `!alert` handler does."""
    message = await outbox.enqueue(conn, room_id=room, event_type="m.room.message",
                                   content={"body": case.ref}, now_ms=now_ms,
                                   kind="case-relay", case_ref=case.ref)
    return await cases.add_delivery(conn, case.id, post=post, room_id=room,
                                    relay_txn_id=message.txn_id, now_ms=now_ms)


async def test_references_count_per_origin_country_and_are_never_reused(db: Database) -> None:
    async with db.transaction() as conn:
        first = await cases.create_case(conn, NEW)
        second = await cases.create_case(conn, replace(NEW, origin_post="KZ-ALMATY"))
        uzbek = await cases.create_case(conn, replace(NEW, origin_post="UZ-TERMEZ",
                                                      origin_country="UZ"))
        await conn.execute("DELETE FROM cases WHERE id = ?", (second.id,))
        third = await cases.create_case(conn, NEW)
    assert [first.ref, second.ref, uzbek.ref, third.ref] == [
        "KZ-0001", "KZ-0002", "UZ-0001", "KZ-0003"]


async def test_a_stored_case_reads_back_with_its_fields_in_order(db: Database) -> None:
    async with db.transaction() as conn:
        created = await cases.create_case(conn, NEW)
    async with db.read() as conn:
        found = await cases.case_by_ref(conn, created.ref)
        missing = await cases.case_by_ref(conn, "KZ-9999")
    assert found == created
    assert missing is None
    assert found.fields == NEW.fields
    assert (found.state, found.tlp, found.priority, found.forwardable) == (
        "open", Tlp.AMBER, Priority.URGENT, True)
    assert found.is_open


async def test_delivery_learns_its_relayed_event_id_from_the_outbox(db: Database) -> None:
    async with db.transaction() as conn:
        case = await cases.create_case(conn, NEW)
        delivery = await relay(conn, case, "UZ-TERMEZ", "!uz:example.org", T0)
    assert (delivery.relayed_event_id, delivery.sent_ms, delivery.state) == (
        None, None, "routed")

    async with db.transaction() as conn:
        (message,) = await outbox.next_batch(conn, now_ms=T0, limit=5)
        await outbox.mark_sent(conn, message.id, event_id="$relayed", now_ms=T0 + 50)
    async with db.read() as conn:
        by_event = await cases.delivery_by_relayed_event(conn, "$relayed")
        unknown = await cases.delivery_by_relayed_event(conn, "$other")
    assert by_event is not None and unknown is None
    assert (by_event.id, by_event.post, by_event.relayed_event_id, by_event.sent_ms) == (
        delivery.id, "UZ-TERMEZ", "$relayed", T0 + 50)


async def test_acknowledgement_is_stored_once(db: Database) -> None:
    async with db.transaction() as conn:
        case = await cases.create_case(conn, NEW)
        delivery = await relay(conn, case, "UZ-TERMEZ", "!uz:example.org", T0)
        first = await cases.acknowledge(conn, delivery, by="@uz:example.org", now_ms=T0 + 10)
        again = await cases.acknowledge(conn, delivery, by="@other:example.org", now_ms=T0 + 20)
        stored = await cases.delivery_for(conn, case.id, "UZ-TERMEZ")
        history = await cases.timeline(conn, case.id)
    assert (first, again) == (True, False)
    assert stored is not None
    assert (stored.state, stored.acknowledged_by, stored.acknowledged_ms) == (
        "acknowledged", "@uz:example.org", T0 + 10)
    assert [(e.kind, e.post, e.actor) for e in history] == [
        ("created", "KZ-ZHIBEK", "@kz:example.org"),
        ("routed", "UZ-TERMEZ", None),
        ("acknowledged", "UZ-TERMEZ", "@uz:example.org"),
    ]


async def test_an_answer_also_acknowledges_and_is_stored_once(db: Database) -> None:
    async with db.transaction() as conn:
        case = await cases.create_case(conn, replace(NEW, kind="request", due_ms=T0 + 3600_000))
        delivery = await relay(conn, case, "TJ-PANJ", "!tj:example.org", T0)
        assert await cases.mark_answered(conn, delivery, by="@tj:example.org", now_ms=T0 + 5)
        assert not await cases.mark_answered(conn, delivery, by="@tj:example.org", now_ms=T0 + 6)
        assert not await cases.acknowledge(conn, delivery, by="@tj:example.org", now_ms=T0 + 7)
        stored = await cases.delivery_for(conn, case.id, "TJ-PANJ")
    assert stored is not None
    assert (stored.state, stored.answered_ms, stored.acknowledged_ms) == (
        "answered", T0 + 5, T0 + 5)


async def test_close_and_cancel_happen_once_and_keep_the_outcome(db: Database) -> None:
    async with db.transaction() as conn:
        case = await cases.create_case(conn, NEW)
        other = await cases.create_case(conn, NEW)
        assert await cases.finish_case(conn, case, "closed", post="KZ-ZHIBEK",
                                       by="@kz:example.org", now_ms=T0 + 1,
                                       outcome="40 kg seized")
        assert not await cases.finish_case(conn, case, "cancelled", post="KZ-ZHIBEK",
                                           by="@kz:example.org", now_ms=T0 + 2)
        assert await cases.finish_case(conn, other, "cancelled", post="KZ-ZHIBEK",
                                       by="@kz:example.org", now_ms=T0 + 3)
        closed = await cases.case_by_id(conn, case.id)
        cancelled = await cases.case_by_id(conn, other.id)
        history = await cases.timeline(conn, case.id)
    assert closed is not None and cancelled is not None
    assert (closed.state, closed.closed_ms, closed.outcome, closed.is_open) == (
        "closed", T0 + 1, "40 kg seized", False)
    assert (cancelled.state, cancelled.outcome) == ("cancelled", None)
    assert history[-1].kind == "closed" and history[-1].detail == {"outcome": "40 kg seized"}


async def test_open_cases_are_listed_in_both_directions(db: Database) -> None:
    async with db.transaction() as conn:
        sent = await cases.create_case(conn, NEW)
        await relay(conn, sent, "UZ-TERMEZ", "!uz:example.org", T0)
        received = await cases.create_case(conn, replace(NEW, origin_post="UZ-TERMEZ",
                                                         origin_country="UZ"))
        await relay(conn, received, "KZ-ZHIBEK", "!kz:example.org", T0)
        done = await cases.create_case(conn, NEW)
        await cases.finish_case(conn, done, "closed", post="KZ-ZHIBEK", by="@kz:example.org",
                                now_ms=T0)
    async with db.read() as conn:
        from_kz = await cases.open_cases_from(conn, "KZ-ZHIBEK")
        to_kz = await cases.open_cases_to(conn, "KZ-ZHIBEK")
        to_uz = await cases.open_cases_to(conn, "UZ-TERMEZ")
    assert [case.ref for case in from_kz] == [sent.ref]
    assert [(case.ref, delivery.post) for case, delivery in to_kz] == [
        (received.ref, "KZ-ZHIBEK")]
    assert [case.ref for case, _ in to_uz] == [sent.ref]


async def test_deleting_a_case_removes_its_deliveries_and_timeline(db: Database) -> None:
    async with db.transaction() as conn:
        case = await cases.create_case(conn, NEW)
        await relay(conn, case, "UZ-TERMEZ", "!uz:example.org", T0)
        await conn.execute("DELETE FROM cases WHERE id = ?", (case.id,))
        assert await cases.deliveries(conn, case.id) == []
        assert await cases.timeline(conn, case.id) == []
