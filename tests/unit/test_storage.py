"""The storage layer against real SQLite files: durability, ordering, exactly-once."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.commands.notify import OutboxKind
from liaison.storage import inbox, outbox, state
from liaison.storage.db import (
    Database,
    MigrationError,
    SchemaTooNewError,
    load_migrations,
    split_statements,
)

ROOM_A = "!a:example.org"
ROOM_B = "!b:example.org"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "liaison.db")
    yield database
    await database.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_migrations(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql, encoding="utf-8")
    return directory


async def raw_query(path: Path, sql: str) -> list[tuple[object, ...]]:
    async with aiosqlite.connect(path) as connection:
        rows = await connection.execute_fetchall(sql)
    return [tuple(row) for row in rows]


async def enqueue_text(
    database: Database, room_id: str, body: str, now_ms: int
) -> outbox.OutboxMessage:
    async with database.transaction() as conn:
        return await outbox.enqueue(
            conn,
            room_id=room_id,
            event_type="m.room.message",
            content={"msgtype": "m.notice", "body": body},
            now_ms=now_ms,
        )


async def due_bodies(database: Database, now_ms: int) -> list[str]:
    async with database.read() as conn:
        batch = await outbox.next_batch(conn, now_ms=now_ms, limit=10)
    return [message.content["body"] for message in batch]


# --- files, pragmas, migrations -------------------------------------------------------


async def test_database_files_are_private_to_the_owner(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "state" / "liaison.db"
    database = await Database.open(path)
    async with database.transaction() as conn:
        await state.set_value(conn, "sync_token", "s1")
    try:
        assert mode(path.parent) == 0o700
        assert mode(path) == 0o600
        assert mode(path.with_name("liaison.db-wal")) == 0o600
        assert mode(path.with_name("liaison.db-shm")) == 0o600
    finally:
        await database.close()


async def test_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "liaison.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    database = await Database.open(path)
    await database.close()
    assert mode(path) == 0o600


async def test_connection_runs_wal_with_foreign_keys_and_busy_timeout(db: Database) -> None:
    async with db.read() as conn:
        values = {}
        for pragma in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout"):
            async with conn.execute(f"PRAGMA {pragma}") as cursor:
                row = await cursor.fetchone()
                assert row is not None
                values[pragma] = row[0]
    assert values == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "synchronous": 1,  # NORMAL
        "busy_timeout": 5000,
    }


async def test_packaged_migrations_create_the_foundation_tables(db: Database) -> None:
    assert db.schema_version == len(load_migrations()) >= 1
    tables = await raw_query(db.path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    assert {"outbox", "processed_events", "undecryptable_events", "rooms", "kv"} <= {
        row[0] for row in tables
    }


async def test_reopening_keeps_data_and_does_not_rerun_migrations(tmp_path: Path) -> None:
    path = tmp_path / "liaison.db"
    first = await Database.open(path)
    async with first.transaction() as conn:
        await state.set_value(conn, "sync_token", "s42")
    await first.close()

    second = await Database.open(path)
    try:
        async with second.read() as conn:
            assert await state.get_value(conn, "sync_token") == "s42"
        assert second.schema_version == first.schema_version
    finally:
        await second.close()


async def test_database_from_a_newer_liaison_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "liaison.db"
    await (await Database.open(path)).close()
    async with aiosqlite.connect(path) as connection:
        await connection.execute("PRAGMA user_version = 99")
    latest = len(load_migrations())

    with pytest.raises(SchemaTooNewError) as raised:
        await Database.open(path)

    assert str(raised.value) == (
        f"database schema 99 is newer than this Liaison ({latest}); upgrade Liaison"
    )


async def test_database_from_a_newer_liaison_is_left_exactly_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "liaison.db"
    with sqlite3.connect(path) as raw:  # rollback journal: opening for use would make it WAL
        raw.execute("CREATE TABLE future (x INTEGER)")
        raw.execute("PRAGMA user_version = 99")
    before = path.read_bytes()

    with pytest.raises(SchemaTooNewError):
        await Database.open(path)

    assert path.read_bytes() == before
    assert await raw_query(path, "PRAGMA journal_mode") == [("delete",)]
    assert not (tmp_path / "backups").exists()


async def test_an_existing_database_is_backed_up_before_its_schema_is_upgraded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "data" / "liaison.db"
    migrations = write_migrations(tmp_path / "migrations", {
        "0001_base.sql": "CREATE TABLE base (x INTEGER);",
    })
    first = await Database.open(path, migrations=migrations)
    async with first.transaction() as conn:
        await conn.execute("INSERT INTO base VALUES (42)")
    await first.close()
    assert not (path.parent / "backups").exists()  # a brand-new database needs none

    write_migrations(migrations, {"0002_more.sql": "ALTER TABLE base ADD COLUMN y TEXT;"})
    with caplog.at_level(logging.INFO, logger="liaison.storage.db"):
        upgraded = await Database.open(path, migrations=migrations)
    await upgraded.close()

    [backup] = (path.parent / "backups").iterdir()
    assert re.fullmatch(r"liaison-v1-\d{8}T\d{6}Z\.db", backup.name), backup.name
    assert mode(path.parent / "backups") == 0o700
    assert mode(backup) == 0o600
    assert await raw_query(backup, "PRAGMA user_version") == [(1,)]
    assert await raw_query(backup, "SELECT * FROM base") == [(42,)]
    assert await raw_query(path, "SELECT * FROM base") == [(42, None)]
    assert upgraded.schema_version == 2
    [line] = [r for r in caplog.records if r.name == "liaison.storage.db"]
    assert (line.levelno, line.getMessage()) == (
        logging.INFO, "database backed up before upgrading its schema")
    assert line.backup == str(backup)  # type: ignore[attr-defined]

    again = await Database.open(path, migrations=migrations)  # up to date: no new copy
    await again.close()
    assert len(list((path.parent / "backups").iterdir())) == 1


async def test_failing_migration_rolls_back_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "liaison.db"
    migrations = write_migrations(
        tmp_path / "migrations",
        {
            "0001_base.sql": "CREATE TABLE base (x INTEGER);",
            "0002_cases.sql": (
                "CREATE TABLE cases (ref TEXT PRIMARY KEY);\n"
                "INSERT INTO cases VALUES ('KZ-0001');\n"
                "INSERT INTO no_such_table VALUES (1);\n"
            ),
        },
    )

    with pytest.raises(MigrationError, match=r"0002_cases\.sql"):
        await Database.open(path, migrations=migrations)

    # The whole upgrade is one transaction: nothing of it stays, not even 0001.
    assert await raw_query(path, "PRAGMA user_version") == [(0,)]
    tables = {row[0] for row in await raw_query(path, "SELECT name FROM sqlite_master")}
    assert "base" not in tables
    assert "cases" not in tables

    (migrations / "0002_cases.sql").write_text(
        "CREATE TABLE cases (ref TEXT PRIMARY KEY);", encoding="utf-8"
    )
    database = await Database.open(path, migrations=migrations)
    await database.close()
    assert database.schema_version == 2


async def test_migration_with_a_trigger_body_runs_as_one_statement(tmp_path: Path) -> None:
    migrations = write_migrations(
        tmp_path / "migrations",
        {
            "0001_audit.sql": """
                -- the trigger body holds semicolons of its own
                CREATE TABLE audit (seq INTEGER PRIMARY KEY, text TEXT NOT NULL);
                CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
                BEGIN
                    SELECT RAISE(ABORT, 'audit is append-only; never update');
                END;
                /* trailing comment; with a semicolon */
            """,
        },
    )
    database = await Database.open(tmp_path / "liaison.db", migrations=migrations)
    try:
        async with database.transaction() as conn:
            await conn.execute("INSERT INTO audit (text) VALUES ('opened')")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            async with database.transaction() as conn:
                await conn.execute("UPDATE audit SET text = 'changed'")
    finally:
        await database.close()


def test_migrations_with_a_gap_are_rejected(tmp_path: Path) -> None:
    migrations = write_migrations(
        tmp_path / "migrations",
        {"0001_base.sql": "SELECT 1;", "0003_later.sql": "SELECT 1;"},
    )
    with pytest.raises(MigrationError, match="0002 is missing"):
        load_migrations(migrations)


def test_misnamed_migration_is_rejected(tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path / "migrations", {"1_base.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match=r"1_base\.sql"):
        load_migrations(migrations)


def test_unterminated_statement_is_rejected() -> None:
    with pytest.raises(MigrationError, match="unterminated"):
        split_statements("CREATE TABLE a (x);\nCREATE TABLE b (y)")


# --- transactions ---------------------------------------------------------------------


async def test_concurrent_transactions_do_not_interleave(db: Database) -> None:
    async def increment() -> None:
        async with db.transaction() as conn:
            current = int(await state.get_value(conn, "counter") or "0")
            await asyncio.sleep(0)  # give every other task the chance to barge in
            await state.set_value(conn, "counter", str(current + 1))

    await asyncio.gather(*(increment() for _ in range(50)))

    async with db.read() as conn:
        assert await state.get_value(conn, "counter") == "50"


async def test_read_never_sees_another_tasks_uncommitted_writes(db: Database) -> None:
    written = asyncio.Event()

    async def write_then_fail() -> None:
        async with db.transaction() as conn:
            await outbox.enqueue(
                conn, room_id=ROOM_A, event_type="m.room.message", content={}, now_ms=0
            )
            written.set()
            for _ in range(5):
                await asyncio.sleep(0)
            raise RuntimeError("command failed")

    async def count_pending() -> int:
        await written.wait()
        async with db.read() as conn:
            return (await outbox.stats(conn, now_ms=0)).pending

    writer = asyncio.create_task(write_then_fail())
    assert await count_pending() == 0
    with pytest.raises(RuntimeError, match="command failed"):
        await writer


async def test_cancelled_transaction_rolls_back_and_releases_the_lock(db: Database) -> None:
    entered = asyncio.Event()

    async def claim_and_hang() -> None:
        async with db.transaction() as conn:
            await inbox.claim_event(conn, event_id="$e", room_id=ROOM_A, now_ms=1)
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(claim_and_hang())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async with asyncio.timeout(5), db.read() as conn:
        assert not await inbox.is_processed(conn, "$e")


async def test_read_refuses_writes(db: Database) -> None:
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        async with db.read() as conn:
            await state.set_value(conn, "sync_token", "s1")

    async with db.transaction() as conn:
        await state.set_value(conn, "sync_token", "s2")
    async with db.read() as conn:
        assert await state.get_value(conn, "sync_token") == "s2"


async def test_nested_transaction_raises_instead_of_deadlocking(db: Database) -> None:
    async with asyncio.timeout(5):
        with pytest.raises(RuntimeError, match="already holds"):
            async with db.transaction(), db.read():
                pass


async def test_using_a_closed_database_raises(tmp_path: Path) -> None:
    database = await Database.open(tmp_path / "liaison.db")
    await database.close()
    with pytest.raises(RuntimeError, match="closed"):
        async with database.read():
            pass


async def test_backup_is_a_complete_private_copy(db: Database, tmp_path: Path) -> None:
    async with db.transaction() as conn:
        await state.set_value(conn, "sync_token", "before-backup")
    target = tmp_path / "backups" / "liaison-backup.db"

    await db.backup(target)
    async with db.transaction() as conn:
        await state.set_value(conn, "sync_token", "after-backup")

    assert mode(target) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["liaison-backup.db"]
    assert await raw_query(target, "SELECT value FROM kv WHERE key = 'sync_token'") == [
        ("before-backup",)
    ]
    copy = await Database.open(target)
    await copy.close()
    assert copy.schema_version == db.schema_version


async def test_backup_onto_the_live_database_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="live database"):
        await db.backup(db.path)


# --- outbox ---------------------------------------------------------------------------


async def test_backoff_in_one_room_holds_that_room_but_not_others(db: Database) -> None:
    a1 = await enqueue_text(db, ROOM_A, "a1", now_ms=100)
    await enqueue_text(db, ROOM_A, "a2", now_ms=101)
    await enqueue_text(db, ROOM_B, "b1", now_ms=102)
    await enqueue_text(db, ROOM_B, "b2", now_ms=103)

    assert await due_bodies(db, now_ms=200) == ["a1", "b1"]

    async with db.transaction() as conn:
        await outbox.mark_retry(conn, a1.id, error="M_LIMIT_EXCEEDED", next_attempt_ms=1_000)
    b1 = (await _batch(db, now_ms=200))[0]
    async with db.transaction() as conn:
        await outbox.mark_sent(conn, b1.id, event_id="$b1", now_ms=200)

    assert await due_bodies(db, now_ms=200) == ["b2"]
    assert await due_bodies(db, now_ms=999) == ["b2"]
    assert await due_bodies(db, now_ms=1_000) == ["a1", "b2"]


async def _batch(database: Database, *, now_ms: int) -> list[outbox.OutboxMessage]:
    async with database.read() as conn:
        return await outbox.next_batch(conn, now_ms=now_ms, limit=10)


async def test_next_batch_respects_the_limit_oldest_first(db: Database) -> None:
    for index in range(5):
        await enqueue_text(db, f"!room{index}:example.org", f"m{index}", now_ms=10 - index)
    async with db.read() as conn:
        batch = await outbox.next_batch(conn, now_ms=100, limit=3)
        with pytest.raises(ValueError):
            await outbox.next_batch(conn, now_ms=100, limit=0)
    assert [message.content["body"] for message in batch] == ["m0", "m1", "m2"]


async def test_retry_keeps_the_transaction_id_and_counts_attempts(db: Database) -> None:
    queued = await enqueue_text(db, ROOM_A, "hello", now_ms=100)
    assert queued.txn_id.startswith("liaison-")

    async with db.transaction() as conn:
        await outbox.mark_retry(conn, queued.id, error="timeout", next_attempt_ms=600)
        await outbox.mark_retry(conn, queued.id, error="502", next_attempt_ms=1_600)
        retried = await outbox.get(conn, queued.id)

    assert retried is not None
    assert (retried.txn_id, retried.attempts, retried.next_attempt_ms, retried.last_error) == (
        queued.txn_id,
        2,
        1_600,
        "502",
    )
    assert retried.state == "pending"


async def test_sent_message_records_event_id_and_leaves_the_queue(db: Database) -> None:
    queued = await enqueue_text(db, ROOM_A, "hello", now_ms=100)
    async with db.transaction() as conn:
        await outbox.mark_sent(conn, queued.id, event_id="$sent", now_ms=250)
        sent = await outbox.get(conn, queued.id)
        with pytest.raises(LookupError, match="not pending"):
            await outbox.mark_sent(conn, queued.id, event_id="$again", now_ms=300)

    assert sent == outbox.OutboxMessage(
        id=queued.id,
        room_id=ROOM_A,
        event_type="m.room.message",
        content={"msgtype": "m.notice", "body": "hello"},
        txn_id=queued.txn_id,
        state="sent",
        attempts=0,
        next_attempt_ms=100,
        created_ms=100,
        sent_ms=250,
        event_id="$sent",
        last_error=None,
        kind="reply",
        case_ref=None,
    )
    assert await due_bodies(db, now_ms=1_000) == []


async def test_failed_message_is_permanent_and_the_room_moves_on(db: Database) -> None:
    first = await enqueue_text(db, ROOM_A, "first", now_ms=100)
    await enqueue_text(db, ROOM_A, "second", now_ms=101)

    async with db.transaction() as conn:
        await outbox.mark_failed(conn, first.id, error="M_FORBIDDEN", now_ms=300)
        failed = await outbox.get(conn, first.id)
        with pytest.raises(LookupError):
            await outbox.mark_retry(conn, first.id, error="x", next_attempt_ms=400)

    assert failed is not None
    assert (failed.state, failed.attempts, failed.last_error, failed.failed_ms) == (
        "failed",
        1,
        "M_FORBIDDEN",
        300,
    )
    assert await due_bodies(db, now_ms=300) == ["second"]


async def test_next_wakeup_ignores_messages_stuck_behind_a_backing_off_head(
    db: Database,
) -> None:
    async with db.read() as conn:
        assert await outbox.next_wakeup_ms(conn) is None
    head = await enqueue_text(db, ROOM_A, "head", now_ms=100)
    await enqueue_text(db, ROOM_A, "behind", now_ms=100)
    async with db.transaction() as conn:
        await outbox.mark_retry(conn, head.id, error="timeout", next_attempt_ms=5_000)
        assert await outbox.next_wakeup_ms(conn) == 5_000
    await enqueue_text(db, ROOM_B, "other room", now_ms=200)
    async with db.read() as conn:
        assert await outbox.next_wakeup_ms(conn) == 200


async def test_stats_count_pending_and_failed_and_age_of_oldest(db: Database) -> None:
    async with db.read() as conn:
        assert await outbox.stats(conn, now_ms=0) == outbox.OutboxStats(0, 0, None)
    old = await enqueue_text(db, ROOM_A, "old", now_ms=1_000)
    await enqueue_text(db, ROOM_A, "new", now_ms=4_000)
    failing = await enqueue_text(db, ROOM_B, "doomed", now_ms=500)
    async with db.transaction() as conn:
        await outbox.mark_failed(conn, failing.id, error="M_FORBIDDEN", now_ms=600)
        assert await outbox.stats(conn, now_ms=10_000) == outbox.OutboxStats(
            pending=2, failed=1, oldest_pending_age_ms=10_000 - old.created_ms
        )


async def test_content_is_stored_as_compact_unescaped_json(db: Database) -> None:
    async with db.transaction() as conn:
        queued = await outbox.enqueue(
            conn,
            room_id=ROOM_A,
            event_type="m.room.message",
            content={"body": "Проверка — تنبيه", "org.liaison.case": {"ref": "KZ-0042"}},
            now_ms=1,
            kind="case-relay",
            case_ref="KZ-0042",
            txn_id="liaison-fixed",
        )
        with pytest.raises(sqlite3.IntegrityError):
            await outbox.enqueue(
                conn,
                room_id=ROOM_A,
                event_type="m.room.message",
                content={},
                now_ms=2,
                txn_id="liaison-fixed",
            )
        stored = await outbox.get(conn, queued.id)
    assert stored == queued
    assert (stored.kind, stored.case_ref, stored.txn_id) == (
        "case-relay", "KZ-0042", "liaison-fixed")
    assert await raw_query(db.path, "SELECT content FROM outbox") == [
        ('{"body":"Проверка — تنبيه","org.liaison.case":{"ref":"KZ-0042"}}',)
    ]


async def test_get_unknown_message_is_none(db: Database) -> None:
    async with db.read() as conn:
        assert await outbox.get(conn, 12345) is None


@settings(max_examples=40, deadline=None, database=None)
@given(
    messages=st.lists(
        st.tuples(
            st.sampled_from([ROOM_A, ROOM_B, "!c:example.org"]),
            st.integers(min_value=0, max_value=3),  # failed attempts before the outcome
            st.booleans(),  # True: finally sent; False: given up
            st.integers(min_value=1, max_value=500),  # backoff per retry
        ),
        max_size=15,
    ),
    batch_limit=st.integers(min_value=1, max_value=4),
)
async def test_worker_delivers_each_rooms_messages_in_enqueue_order(
    messages: list[tuple[str, int, bool, int]], batch_limit: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        database = await Database.open(Path(directory) / "liaison.db")
        try:
            delivered = await _run_worker(database, messages, batch_limit)
        finally:
            await database.close()

    for room in {room for room, *_ in messages}:
        expected = [i for i, (r, _, sent, _) in enumerate(messages) if r == room and sent]
        assert delivered.get(room, []) == expected


async def _run_worker(
    database: Database, messages: list[tuple[str, int, bool, int]], batch_limit: int
) -> dict[str, list[int]]:
    """Drive the outbox like the sender would, with scripted failures; return sends per room."""
    index_of: dict[int, int] = {}
    retries_left: dict[int, int] = {}
    async with database.transaction() as conn:
        for index, (room, retries, _, _) in enumerate(messages):
            queued = await outbox.enqueue(
                conn, room_id=room, event_type="m.room.message", content={"i": index}, now_ms=0
            )
            index_of[queued.id] = index
            retries_left[queued.id] = retries

    delivered: dict[str, list[int]] = {}
    now_ms = 0
    for _ in range(200):
        async with database.transaction() as conn:
            batch = await outbox.next_batch(conn, now_ms=now_ms, limit=batch_limit)
            if not batch:
                wakeup = await outbox.next_wakeup_ms(conn)
                if wakeup is None:
                    return delivered
                assert wakeup > now_ms
                now_ms = wakeup
                continue
            assert len({message.room_id for message in batch}) == len(batch)
            for message in batch:
                index = index_of[message.id]
                _, _, finally_sent, backoff = messages[index]
                if retries_left[message.id] > 0:
                    retries_left[message.id] -= 1
                    await outbox.mark_retry(
                        conn, message.id, error="busy", next_attempt_ms=now_ms + backoff
                    )
                elif finally_sent:
                    await outbox.mark_sent(conn, message.id, event_id=f"${index}", now_ms=now_ms)
                    delivered.setdefault(message.room_id, []).append(index)
                else:
                    await outbox.mark_failed(conn, message.id, error="gone", now_ms=now_ms)
    raise AssertionError("outbox never drained")


async def test_an_answer_to_a_command_goes_before_an_informational_notice_queued_earlier(
    db: Database,
) -> None:
    """A new device's notice was queued first (due in 3 s); the `!ping` answer queued next
    in the same room is the room's head at once, and the notice follows it."""
    async with db.transaction() as conn:
        notice = await outbox.enqueue(conn, room_id=ROOM_A, event_type="m.room.message",
                                      content={"body": "new device"}, now_ms=0,
                                      kind=OutboxKind.DEVICE_NOTICE, delay_ms=3000)
        answer = await outbox.enqueue(conn, room_id=ROOM_A, event_type="m.room.message",
                                      content={"body": "pong"}, now_ms=10)
        relay = await outbox.enqueue(conn, room_id=ROOM_B, event_type="m.room.message",
                                     content={"body": "relay"}, now_ms=10,
                                     kind=OutboxKind.CASE_RELAY)
        assert notice.next_attempt_ms == 3000
        assert [m.id for m in await outbox.next_batch(conn, now_ms=10, limit=5)] == [
            answer.id, relay.id]
        # Due or not, the notice never goes ahead of a pending answer in its room.
        assert [m.id for m in await outbox.next_batch(conn, now_ms=5000, limit=5)] == [
            answer.id, relay.id]
        await outbox.mark_sent(conn, answer.id, event_id="$pong", now_ms=20)
        await outbox.mark_sent(conn, relay.id, event_id="$relay", now_ms=20)
        assert await outbox.next_batch(conn, now_ms=20, limit=5) == []
        assert await outbox.next_wakeup_ms(conn) == 3000
        assert [m.id for m in await outbox.next_batch(conn, now_ms=3000, limit=5)] == [
            notice.id]


# --- inbox ----------------------------------------------------------------------------


async def test_event_is_claimed_exactly_once(db: Database) -> None:
    async with db.transaction() as conn:
        assert await inbox.claim_event(conn, event_id="$cmd", room_id=ROOM_A, now_ms=1)
    async with db.transaction() as conn:
        assert not await inbox.claim_event(conn, event_id="$cmd", room_id=ROOM_A, now_ms=2)
        assert await inbox.is_processed(conn, "$cmd")
        assert not await inbox.is_processed(conn, "$other")


async def test_claim_is_undone_when_the_commands_transaction_fails(db: Database) -> None:
    with pytest.raises(RuntimeError, match="crash"):
        async with db.transaction() as conn:
            assert await inbox.claim_event(conn, event_id="$cmd", room_id=ROOM_A, now_ms=1)
            await outbox.enqueue(
                conn, room_id=ROOM_A, event_type="m.room.message", content={}, now_ms=1
            )
            raise RuntimeError("crash")

    async with db.transaction() as conn:
        assert not await inbox.is_processed(conn, "$cmd")
        assert (await outbox.stats(conn, now_ms=1)).pending == 0
        assert await inbox.claim_event(conn, event_id="$cmd", room_id=ROOM_A, now_ms=2)


async def test_undecryptable_event_lifecycle(db: Database) -> None:
    source = {"type": "m.room.encrypted", "content": {"session_id": "S1", "body": "…"}}

    async def save(conn: aiosqlite.Connection) -> bool:
        return await inbox.save_undecryptable(
            conn,
            event_id="$enc",
            room_id=ROOM_A,
            sender="@officer:example.org",
            session_id="S1",
            source=source,
            received_ms=1_000,
        )

    async with db.transaction() as conn:
        assert await save(conn)
        assert not await save(conn)
        await inbox.note_attempt(conn, "$enc")
        await inbox.note_attempt(conn, "$enc")
        await inbox.note_key_requested(conn, "$enc", now_ms=2_000)
        await inbox.mark_notified(conn, "$enc", now_ms=3_000)
        await inbox.mark_notified(conn, "$enc", now_ms=4_000)
        listed = await inbox.list_undecryptable(conn)

    assert listed == [
        inbox.UndecryptableEvent(
            event_id="$enc",
            room_id=ROOM_A,
            sender="@officer:example.org",
            session_id="S1",
            source=source,
            received_ms=1_000,
            attempts=2,
            last_key_request_ms=2_000,
            notified_ms=3_000,
        )
    ]

    async with db.transaction() as conn:
        await inbox.forget_undecryptable(conn, "$enc")
        await inbox.note_attempt(conn, "$enc")  # decrypted meanwhile: a no-op
        assert await inbox.list_undecryptable(conn) == []


# --- state ----------------------------------------------------------------------------


async def test_values_are_stored_and_replaced(db: Database) -> None:
    async with db.transaction() as conn:
        assert await state.get_value(conn, "sync_token") is None
        await state.set_value(conn, "sync_token", "s1")
        await state.set_value(conn, "sync_token", "s2")
        assert await state.get_value(conn, "sync_token") == "s2"


async def test_room_keeps_its_first_join_time(db: Database) -> None:
    async with db.transaction() as conn:
        assert await state.room_joined_ms(conn, ROOM_A) is None
        assert await state.record_room_joined(conn, room_id=ROOM_A, joined_ms=1_000) == 1_000
        assert await state.record_room_joined(conn, room_id=ROOM_A, joined_ms=9_000) == 1_000
        assert await state.room_joined_ms(conn, ROOM_A) == 1_000


async def test_unencrypted_room_is_warned_once(db: Database) -> None:
    async with db.transaction() as conn:
        await state.record_room_joined(conn, room_id=ROOM_A, joined_ms=1_000)
        assert await state.mark_unencrypted_warned(conn, ROOM_A, now_ms=2_000)
        assert not await state.mark_unencrypted_warned(conn, ROOM_A, now_ms=3_000)
        with pytest.raises(LookupError, match="record_room_joined"):
            await state.mark_unencrypted_warned(conn, ROOM_B, now_ms=3_000)
