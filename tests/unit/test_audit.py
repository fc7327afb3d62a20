"""The audit log: appended with every action, hash-chained, and any edit named by verify."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path

import pytest

from liaison.storage import audit, cases
from liaison.storage.audit import ChainCheck
from liaison.storage.db import Database, read_only
from tests.unit.test_case_storage import NEW, T0, relay


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "liaison.db")
    yield database
    await database.close()


async def five_entries(db: Database) -> list[audit.AuditEntry]:
    written = []
    async with db.transaction() as conn:
        for number in range(1, 6):
            written.append(await audit.append(
                conn, ts_ms=T0 + number, actor=f"@officer{number}:example.org",
                action="acknowledged", case_ref=f"KZ-000{number}", room_id="!uz:example.org",
                detail={"post": "UZ-TERMEZ", "n": number}))
    return written


def tamper(path: Path, *statements: str) -> None:
    """What someone holding the file can do: drop the guards, then edit rows."""
    with sqlite3.connect(path) as conn:
        for trigger in ("audit_log_no_update", "audit_log_no_delete", "audit_log_chained"):
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for statement in statements:
            conn.execute(statement)
    conn.close()


async def verified(path: Path, anchor: str | None = None) -> ChainCheck:
    async with read_only(path) as conn:
        return await audit.verify(conn, anchor=anchor)


async def test_an_untouched_chain_verifies_and_links_every_entry_to_the_one_before(
    db: Database
) -> None:
    written = await five_entries(db)
    assert [entry.seq for entry in written] == [1, 2, 3, 4, 5]
    assert written[0].prev_hash == audit.GENESIS
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(written))
    check = await verified(db.path)
    assert (check.ok, check.entries, check.bad_seq) == (True, 5, None)
    assert check.head is not None and (check.head.seq, check.head.hash) == (5, written[4].hash)
    async with db.read() as conn:
        assert await audit.entries(conn) == written
        assert [entry.seq for entry in await audit.entries(conn, since_ms=T0 + 4)] == [4, 5]


async def test_an_empty_log_verifies(db: Database) -> None:
    assert await verified(db.path) == ChainCheck(True, 0)


@pytest.mark.parametrize(("column", "value"), [
    ("detail", "'{\"n\":3,\"post\":\"TJ-PANJ\"}'"),
    ("ts_ms", str(T0 + 99)),
    ("actor", "'@someone-else:example.org'"),
    ("action", "'refused'"),
    ("case_ref", "NULL"),
    ("room_id", "'!kz:example.org'"),
])
async def test_editing_any_field_of_an_entry_names_that_entry(
    db: Database, column: str, value: str
) -> None:
    await five_entries(db)
    tamper(db.path, f"UPDATE audit_log SET {column} = {value} WHERE seq = 3")
    check = await verified(db.path)
    assert not check.ok and check.bad_seq == 3, check
    assert check.entries == 2 and check.head is not None and check.head.seq == 2
    assert check.reason == "its content does not match its hash"


async def test_an_edit_with_its_own_hash_recomputed_still_names_the_edited_entry(
    db: Database
) -> None:
    written = await five_entries(db)
    entry = written[2]
    forged = audit.entry_hash(seq=3, ts_ms=entry.ts_ms, actor=entry.actor, action="refused",
                              case_ref=entry.case_ref, room_id=entry.room_id,
                              detail_json='{"n":3,"post":"UZ-TERMEZ"}', prev_hash=entry.prev_hash)
    tamper(db.path, f"UPDATE audit_log SET action = 'refused', hash = '{forged}' WHERE seq = 3")
    check = await verified(db.path)
    assert not check.ok and check.bad_seq == 3 and check.bad_action == "refused", check
    assert "hash recomputed" in (check.reason or "")


async def test_swapping_two_entries_names_the_first_of_them(db: Database) -> None:
    await five_entries(db)
    tamper(db.path,
           "UPDATE audit_log SET seq = 100 WHERE seq = 2",
           "UPDATE audit_log SET seq = 2 WHERE seq = 4",
           "UPDATE audit_log SET seq = 4 WHERE seq = 100")
    check = await verified(db.path)
    assert not check.ok and check.bad_seq == 2, check


async def test_a_removed_entry_is_named_as_missing(db: Database) -> None:
    await five_entries(db)
    tamper(db.path, "DELETE FROM audit_log WHERE seq = 3")
    check = await verified(db.path)
    assert not check.ok and check.bad_seq == 3 and check.bad_action is None, check
    assert check.reason == "entry 3 is missing (the next one kept is 4)"


async def test_a_removed_first_entry_is_named(db: Database) -> None:
    await five_entries(db)
    tamper(db.path, "DELETE FROM audit_log WHERE seq = 1")
    check = await verified(db.path)
    assert not check.ok and check.bad_seq == 1 and check.entries == 0, check


async def test_entries_cut_off_the_end_show_only_against_an_anchor(db: Database) -> None:
    written = await five_entries(db)
    assert (await verified(db.path, anchor=written[4].hash)).ok
    tamper(db.path, "DELETE FROM audit_log WHERE seq >= 4")
    assert (await verified(db.path)).ok  # the chain itself cannot know
    check = await verified(db.path, anchor=written[4].hash)
    assert not check.ok and check.entries == 3 and check.bad_seq is None
    assert "anchored hash" in (check.reason or "")


async def test_a_value_of_the_wrong_type_is_named(db: Database) -> None:
    await five_entries(db)
    tamper(db.path, "UPDATE audit_log SET ts_ms = 'yesterday' WHERE seq = 4")
    check = await verified(db.path)
    assert not check.ok and check.bad_seq == 4
    assert check.reason == "a field holds a value of the wrong type"


async def test_the_database_refuses_edits_removals_and_entries_out_of_chain(
    db: Database
) -> None:
    await five_entries(db)
    with sqlite3.connect(db.path) as conn:
        for statement in ("UPDATE audit_log SET actor = 'x' WHERE seq = 2",
                          "DELETE FROM audit_log WHERE seq = 5",
                          "INSERT INTO audit_log (seq, ts_ms, actor, action, detail, prev_hash,"
                          " hash) VALUES (9, 1, 'x', 'y', '{}', 'z', 'h')",
                          "INSERT INTO audit_log (seq, ts_ms, actor, action, detail, prev_hash,"
                          " hash) VALUES (6, 1, 'x', 'y', '{}', 'z', 'h')"):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(statement)
    conn.close()
    assert (await verified(db.path)).entries == 5


async def test_an_entry_is_appended_only_inside_a_transaction(db: Database) -> None:
    async with db.read() as conn:
        with pytest.raises(RuntimeError, match="transaction"):
            await audit.append(conn, ts_ms=T0, actor="x", action="y")


async def test_long_detail_text_is_cut(db: Database) -> None:
    async with db.transaction() as conn:
        entry = await audit.append(conn, ts_ms=T0, actor=audit.LIAISON, action="refused",
                                   detail={"target": "X" * 10_000, "rooms": ["Y" * 300]})
    assert len(entry.detail["target"]) == audit.MAX_DETAIL_TEXT + 1
    assert len(entry.detail["rooms"][0]) == audit.MAX_DETAIL_TEXT + 1
    assert (await verified(db.path)).ok


async def test_every_case_action_is_recorded_with_its_post_and_room_and_no_content(
    db: Database
) -> None:
    async with db.transaction() as conn:
        case = await cases.create_case(conn, NEW)
        delivery = await relay(conn, case, "UZ-TERMEZ", "!uz:example.org", T0)
        await cases.add_timeline(conn, case.id, cases.TimelineKind.REFUSED, ms=T0,
                                 post="TJ-PANJ", detail={"target": "TJ-PANJ",
                                                         "reason": "clearance"})
        await cases.acknowledge(conn, delivery, by="@uz:example.org", now_ms=T0 + 1)
        await cases.add_timeline(conn, case.id, cases.TimelineKind.UPDATED, ms=T0 + 2,
                                 post="KZ-ZHIBEK", actor="@kz:example.org",
                                 detail={"text": "Driver changed at Termez"})
        await cases.finish_case(conn, case, "closed", post="KZ-ZHIBEK", by="@kz:example.org",
                                now_ms=T0 + 3, outcome="Seized 40 kg")
    async with db.read() as conn:
        recorded = await audit.entries(conn)
    assert [(e.action, e.actor, e.case_ref, e.room_id) for e in recorded] == [
        ("created", "@kz:example.org", "KZ-0001", "!kz:example.org"),
        ("routed", audit.LIAISON, "KZ-0001", "!uz:example.org"),
        ("refused", audit.LIAISON, "KZ-0001", None),
        ("acknowledged", "@uz:example.org", "KZ-0001", "!uz:example.org"),
        ("updated", "@kz:example.org", "KZ-0001", "!kz:example.org"),
        ("closed", "@kz:example.org", "KZ-0001", "!kz:example.org"),
    ]
    assert recorded[0].detail == {"post": "KZ-ZHIBEK", "kind": "alert", "priority": "urgent",
                                  "tlp": "AMBER", "category": "drugs"}
    assert recorded[2].detail == {"post": "TJ-PANJ", "target": "TJ-PANJ",
                                  "reason": "clearance"}
    assert recorded[4].detail == recorded[5].detail == {"post": "KZ-ZHIBEK"}
    written = " ".join(str(entry.detail) for entry in recorded)
    for content in ("Suspected heroin", "Kamaz", "Driver changed", "Seized", "B2"):
        assert content not in written
    assert (await verified(db.path)).ok


async def test_an_action_rolled_back_leaves_no_entry(db: Database) -> None:
    with pytest.raises(LookupError):
        async with db.transaction() as conn:
            await cases.create_case(conn, NEW)
            raise LookupError("the handler failed")
    async with db.read() as conn:
        assert await audit.entries(conn) == []

