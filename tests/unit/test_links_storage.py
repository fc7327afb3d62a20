"""Links in a real SQLite database: directories, what was published, cases that crossed a
link, the protocol log and a link room's queue (storage.links, migration 0014)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from liaison.commands.links import DirectoryContent, DirectoryPost, directory_key
from liaison.commands.model import Agency, Priority, Tlp
from liaison.commands.notify import OutboxKind
from liaison.storage import cases, links, outbox
from liaison.storage.db import Database

T0 = 1_777_600_000_000
LINK_ROOM = "!link:kz.example"

NEW = cases.NewCase(
    kind="alert", origin_post="KZ-ZHIBEK", origin_country="KZ", priority=Priority.FLASH,
    tlp=Tlp.AMBER, category=None, grading=None, related_ref=None, fields=(), text="Kamaz",
    due_ms=None, forwardable=True, origin_room="!kz:kz.example", origin_event_id="$alert",
    origin_sender="@aigerim:kz.example", created_ms=T0,
)


def termez(name: str = "Termez") -> DirectoryPost:
    return DirectoryPost(id="UZ-TERMEZ", names={"en": name, "ru": "Термез"}, country="UZ",
                         agency=Agency.BORDER, language="ru", timezone="Asia/Tashkent")


def directory(version: int, *posts: DirectoryPost) -> DirectoryContent:
    return DirectoryContent(id=directory_key(version), version=version, posts=posts)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "liaison.db")
    yield database
    await database.close()


async def test_a_newer_directory_replaces_the_stored_one_and_an_older_is_stale(
        db: Database) -> None:
    async with db.transaction() as conn:
        first = await links.accept_directory(conn, "uz", directory(2, termez()), "$d2", T0)
        same = await links.accept_directory(conn, "uz", directory(2, termez("Other")), "$x",
                                            T0 + 1)
        older = await links.accept_directory(conn, "uz", directory(1), "$d1", T0 + 2)
    async with db.read() as conn:
        after_stale = await links.accepted_directories(conn)
        received = await links.directory_received(conn, "uz")
    assert (first, same, older) == (True, False, False)
    assert after_stale == {"uz": directory(2, termez())}
    assert received == (2, T0)

    async with db.transaction() as conn:
        newer = await links.accept_directory(conn, "uz", directory(3, termez("Termez 2")),
                                             "$d3", T0 + 5)
    async with db.read() as conn:
        stored = await links.accepted_directories(conn)
        received = await links.directory_received(conn, "uz")
    assert newer is True
    assert stored["uz"].posts[0].names["en"] == "Termez 2"
    assert stored["uz"].posts[0].names["ru"] == "Термез"
    assert received == (3, T0 + 5)


async def test_directories_of_two_links_are_kept_apart(db: Database) -> None:
    async with db.transaction() as conn:
        await links.accept_directory(conn, "uz", directory(5, termez()), "$a", T0)
        await links.accept_directory(conn, "tj", directory(1), "$b", T0)
    async with db.read() as conn:
        stored = await links.accepted_directories(conn)
        missing = await links.directory_received(conn, "kg")
    assert {name: content.version for name, content in stored.items()} == {"tj": 1, "uz": 5}
    assert missing is None


async def test_what_was_published_is_remembered_per_link(db: Database) -> None:
    async with db.transaction() as conn:
        before = await links.published(conn, "uz")
        await links.set_published(conn, "uz", 1, "abc", T0)
        await links.set_published(conn, "uz", 2, "def", T0 + 1)
        await links.set_published(conn, "tj", 1, "xyz", T0)
    async with db.read() as conn:
        assert before is None
        assert await links.published(conn, "uz") == (2, "def")
        assert await links.published(conn, "tj") == (1, "xyz")


async def test_a_case_is_found_by_the_reference_it_crossed_under(db: Database) -> None:
    async with db.transaction() as conn:
        outbound = await cases.create_case(conn, NEW)
        inbound = await cases.create_case(conn, NEW)
        await links.add_link_case(conn, outbound.id, "uz", "outbound", outbound.ref)
        await links.add_link_case(conn, outbound.id, "uz", "outbound", outbound.ref)  # twice
        await links.add_link_case(conn, outbound.id, "tj", "outbound", outbound.ref)
        await links.add_link_case(conn, inbound.id, "uz", "inbound", "UZ-0007")
    async with db.read() as conn:
        assert await links.case_id_by_foreign_ref(conn, "uz", "outbound",
                                                  outbound.ref) == outbound.id
        assert await links.case_id_by_foreign_ref(conn, "uz", "inbound", "UZ-0007") == inbound.id
        # the same reference in the other direction, or on another link, is another case
        assert await links.case_id_by_foreign_ref(conn, "uz", "inbound", outbound.ref) is None
        assert await links.case_id_by_foreign_ref(conn, "kg", "outbound", outbound.ref) is None
        assert await links.link_case_of(conn, outbound.id) == [
            links.LinkCase(outbound.id, "tj", "outbound", outbound.ref),
            links.LinkCase(outbound.id, "uz", "outbound", outbound.ref)]
        assert await links.link_case_of(conn, inbound.id) == [
            links.LinkCase(inbound.id, "uz", "inbound", "UZ-0007")]


async def test_one_foreign_reference_names_one_inbound_case(db: Database) -> None:
    async with db.transaction() as conn:
        first = await cases.create_case(conn, NEW)
        second = await cases.create_case(conn, NEW)
        await links.add_link_case(conn, first.id, "uz", "inbound", "UZ-0001")
        # a second case may not claim the same foreign reference on the same link
        with pytest.raises(sqlite3.IntegrityError):
            await conn.execute(
                "INSERT INTO link_cases (case_id, link, direction, foreign_ref)"
                " VALUES (?, 'uz', 'inbound', 'UZ-0001')", (second.id,))


async def test_a_key_logged_twice_is_a_replay_and_changes_nothing(db: Database) -> None:
    async with db.transaction() as conn:
        first = await links.log_event(
            conn, link="uz", direction="received", event_type="org.liaison.link.offer",
            key="offer:UZ-0001:KZ-ZHIBEK", event_id="$offer", case_ref="UZ-0001", ms=T0,
            detail={"target": "KZ-ZHIBEK"})
        replay = await links.log_event(
            conn, link="uz", direction="received", event_type="org.liaison.link.offer",
            key="offer:UZ-0001:KZ-ZHIBEK", event_id="$offer-again", case_ref="UZ-0001",
            ms=T0 + 9, detail={})
        # the same key refused, sent, or on another link is another entry
        refused = await links.log_event(
            conn, link="uz", direction="refused", event_type="org.liaison.link.offer",
            key="offer:UZ-0001:KZ-ZHIBEK", event_id="$x", case_ref=None, ms=T0 + 10,
            detail={"reason": "tlp"})
        other_link = await links.log_event(
            conn, link="tj", direction="received", event_type="org.liaison.link.offer",
            key="offer:UZ-0001:KZ-ZHIBEK", event_id="$y", case_ref=None, ms=T0 + 11, detail={})
    assert (first, replay, refused, other_link) == (True, False, True, True)
    async with db.read() as conn:
        exchanged = await links.exchange(conn, "uz")
        counted = await links.counts(conn)
    assert [(entry.direction, entry.event_id, entry.detail) for entry in exchanged] == [
        ("received", "$offer", {"target": "KZ-ZHIBEK"}),
        ("refused", "$x", {"reason": "tlp"})]
    assert exchanged[0] == links.LinkLogEntry(
        id=exchanged[0].id, link="uz", direction="received",
        event_type="org.liaison.link.offer", key="offer:UZ-0001:KZ-ZHIBEK", event_id="$offer",
        case_ref="UZ-0001", ms=T0, detail={"target": "KZ-ZHIBEK"})
    assert counted == {("uz", "received", "org.liaison.link.offer"): 1,
                       ("uz", "refused", "org.liaison.link.offer"): 1,
                       ("tj", "received", "org.liaison.link.offer"): 1}


async def test_refusals_are_counted_per_link_and_reason(db: Database) -> None:
    async with db.transaction() as conn:
        for number, (link, reason) in enumerate([("uz", "tlp"), ("uz", "tlp"),
                                                 ("uz", "not_partner"), ("tj", "tlp")]):
            await links.log_event(conn, link=link, direction="refused",
                                  event_type="org.liaison.link.offer", key=f"k{number}",
                                  event_id=f"$e{number}", case_ref=None, ms=T0,
                                  detail={"reason": reason})
        await links.log_event(conn, link="uz", direction="refused",
                              event_type="org.liaison.link.case", key="no-reason",
                              event_id="$n", case_ref=None, ms=T0, detail={})
        await links.log_event(conn, link="uz", direction="received",
                              event_type="org.liaison.link.offer", key="k0", event_id="$r",
                              case_ref=None, ms=T0, detail={"reason": "ignored"})
    async with db.read() as conn:
        assert await links.refusals(conn) == {("uz", "tlp"): 2, ("uz", "not_partner"): 1,
                                              ("uz", "unknown"): 1, ("tj", "tlp"): 1}


async def test_a_rolled_back_transaction_leaves_the_key_free(db: Database) -> None:
    """A bot killed half-way through applying an event logs nothing: the re-read event
    is applied, not mistaken for a replay."""
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await links.log_event(conn, link="uz", direction="received",
                                  event_type="org.liaison.link.case", key="case:KZ-1:ack:UZ-T",
                                  event_id="$ack", case_ref="KZ-1", ms=T0, detail={})
            raise RuntimeError("killed")
    async with db.transaction() as conn:
        assert await links.log_event(conn, link="uz", direction="received",
                                     event_type="org.liaison.link.case",
                                     key="case:KZ-1:ack:UZ-T", event_id="$ack",
                                     case_ref="KZ-1", ms=T0, detail={})


async def test_the_queue_of_a_link_room_counts_only_unsent_messages_there(
        db: Database) -> None:
    async with db.transaction() as conn:
        assert await links.queued(conn, LINK_ROOM) == (0, None)
        sent = await outbox.enqueue(conn, room_id=LINK_ROOM, event_type="org.liaison.link.offer",
                                    content={"v": 1}, now_ms=T0, kind=OutboxKind.LINK_PROTOCOL)
        await outbox.enqueue(conn, room_id=LINK_ROOM, event_type="org.liaison.link.case",
                             content={"v": 1}, now_ms=T0 + 100, kind=OutboxKind.LINK_PROTOCOL)
        await outbox.enqueue(conn, room_id=LINK_ROOM, event_type="org.liaison.link.case",
                             content={"v": 1}, now_ms=T0 + 200, kind=OutboxKind.LINK_PROTOCOL)
        await outbox.enqueue(conn, room_id="!other:kz.example", event_type="m.room.message",
                             content={"body": "x"}, now_ms=T0 - 500)
        await outbox.mark_sent(conn, sent.id, event_id="$sent", now_ms=T0 + 300)
    async with db.read() as conn:
        assert await links.queued(conn, LINK_ROOM) == (2, T0 + 100)


async def test_link_cases_go_with_their_case(db: Database) -> None:
    async with db.transaction() as conn:
        case = await cases.create_case(conn, NEW)
        await links.add_link_case(conn, case.id, "uz", "outbound", case.ref)
        await conn.execute("DELETE FROM cases WHERE id = ?", (case.id,))
        assert await links.link_case_of(conn, case.id) == []
        assert await links.case_id_by_foreign_ref(conn, "uz", "outbound", case.ref) is None
