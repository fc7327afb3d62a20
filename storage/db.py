"""The SQLite database: one connection, serialised transactions, linear migrations.

Liaison keeps every durable fact (outbox, processed events, deadlines) in one
SQLite file. There is one aiosqlite connection that writes, one that only reads
(opened `mode=ro`), and one `asyncio.Lock` over both:

* `transaction()` takes the lock and runs `BEGIN IMMEDIATE … COMMIT` (ROLLBACK on
  any exception, cancellation included) — use it for everything that writes.
* `read()` takes the same lock without opening a write transaction and gives the
  read-only connection, so a write slipped into it fails loudly instead of landing
  outside a transaction. (It used to turn `PRAGMA query_only` on and off on the one
  connection: two more round trips to aiosqlite's thread per read, bench findings §10c.)
  Under the lock no transaction is open, so it sees everything committed.

Every query goes through one of the two. On a single shared connection a bare
query issued while another task is inside `transaction()` would see (or add to)
that task's uncommitted work, which is why the raw connection is not exposed.
Re-entering `transaction()`/`read()` from the task that already holds the lock
raises `RuntimeError` instead of deadlocking.

The schema version is SQLite's `PRAGMA user_version`. Migrations are files
`NNNN_name.sql` numbered 0001, 0002, … without gaps in `storage/migrations/`.
Each runs once, statement by statement, in its own transaction together with the
bump of `user_version`; a failing migration rolls back and raises
`MigrationError` naming the file. Migration files must not contain
BEGIN/COMMIT; foreign keys stay enforced while they run.

Before an existing database is migrated it is copied with SQLite's online backup to
`backups/liaison-v<old>-<UTC time>.db` beside it (directory 0700, file 0600), so an
upgrade can be undone. A database written by a newer Liaison (a schema above the
latest migration: someone went back to an older build) is refused before anything
is written to it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

_MIGRATION_NAME_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
BACKUP_DIR = "backups"
"""Beside the database: its copies taken before each upgrade."""


def dump_json(value: object) -> str:
    """JSON as the database stores it: compact, and text as written (no ASCII escapes)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def fetch_one(conn: aiosqlite.Connection, sql: str, parameters: Sequence[Any] = ()
                    ) -> aiosqlite.Row | None:
    """Run one query; its first row, or None when it returns none. One round trip to
    aiosqlite's thread (`async with conn.execute` + `fetchone()` + the cursor's close take
    three, each a wake-up of two threads: bench findings §10c); for lookups by key,
    aggregates and LIMIT 1, as the query's other rows, if any, are fetched too."""
    rows = await conn.execute_fetchall(sql, parameters)
    return next(iter(rows), None)


async def changes(conn: aiosqlite.Connection, sql: str,
                  parameters: Sequence[Any] | Mapping[str, Any] = ()) -> int:
    """Run one write statement (`?` or `:name` parameters); how many rows it changed."""
    cursor = await conn.execute(sql, parameters)  # a finished write leaves nothing to close
    return int(cursor.rowcount)


class MigrationError(Exception):
    """The schema could not be brought up to date; the database is left as it was."""


class SchemaTooNewError(MigrationError):
    """The database was written by a newer Liaison than this one."""


@dataclass(frozen=True)
class Migration:
    """One numbered schema change, read from `storage/migrations/`."""

    version: int
    name: str
    sql: str


def load_migrations(source: Traversable | None = None) -> list[Migration]:
    """Read the numbered migrations in order; `source` defaults to the packaged ones.

    Raises `MigrationError` for a misnamed `.sql` file, a duplicate number or a gap,
    so a mistake in the migrations directory stops the bot before it touches data.
    """
    directory = source if source is not None else files("liaison.storage") / "migrations"
    found: dict[int, Migration] = {}
    for entry in directory.iterdir():
        if not entry.is_file() or not entry.name.endswith(".sql"):
            continue
        match = _MIGRATION_NAME_RE.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"migrations {found[version].name} and {entry.name} share number {version}"
            )
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    migrations = [found[version] for version in sorted(found)]
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migration {migration.name} found but migration {expected:04d} is missing"
            )
    return migrations


def split_statements(script: str) -> list[str]:
    """Split a SQL script into single statements (trigger bodies stay whole).

    `sqlite3.Connection.executescript` commits any open transaction first, so the
    runner executes statements one by one inside its own transaction instead.
    """
    statements: list[str] = []
    start = 0
    for position, char in enumerate(script):
        if char != ";":
            continue
        candidate = script[start : position + 1]
        if sqlite3.complete_statement(candidate):
            statements.append(candidate.strip())
            start = position + 1
    rest = script[start:]
    if _strip_comments(rest).strip():
        raise MigrationError(f"unterminated SQL statement: {rest.strip()[:80]!r}")
    return statements


def _strip_comments(sql: str) -> str:
    without_block = re.sub(r"/\*.*?\*/", "", sql, flags=re.DOTALL)
    return re.sub(r"--[^\n]*", "", without_block)


class Database:
    """Liaison's SQLite database; see the module docstring for the locking rules."""

    def __init__(self, path: Path, connection: aiosqlite.Connection) -> None:
        self.path = path
        self.schema_version = 0
        self._connection = connection
        self._reader: aiosqlite.Connection | None = None
        """The read-only connection `read()` gives, once the schema is up to date."""
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[object] | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: Path, *, migrations: Traversable | None = None) -> Database:
        """Open (creating with mode 0600 if needed) and migrate the database at `path`.

        `migrations` replaces the packaged migrations directory; tests use it. An
        existing database is backed up before it is migrated; one from a newer Liaison
        raises `SchemaTooNewError` untouched.
        """
        known = load_migrations(migrations)
        if await asyncio.to_thread(path.is_file):  # refused before any write, even a chmod
            refuse_newer_schema(await stored_schema_version(path), known)
        await asyncio.to_thread(_create_private_file, path)
        connection = await aiosqlite.connect(path, isolation_level=None)
        database = cls(path, connection)
        try:
            found = await database._user_version()
            refuse_newer_schema(found, known)
            await database._configure()
            await asyncio.to_thread(_tighten_sidecar_files, path)
            if 0 < found < latest_version(known):
                await database._backup_before_upgrade(found)
            await database._migrate(known)
            database._reader = await _open_reader(path)
        except BaseException:
            await connection.close()
            raise
        return database

    async def close(self) -> None:
        """Wait for the running transaction, then close the connection."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._reader is not None:
                await self._reader.close()
            await self._connection.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Run the block in `BEGIN IMMEDIATE … COMMIT`; any exception rolls it back."""
        async with self._hold():
            connection = self._connection
            await connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                await self._rollback()
                raise
            try:
                await connection.execute("COMMIT")
            except BaseException:
                await self._rollback()
                raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """Give the connection for queries only; a write inside the block raises."""
        async with self._hold():
            if self._reader is not None:
                yield self._reader
                return
            connection = self._connection  # while migrating: no reader yet
            await connection.execute("PRAGMA query_only = ON")
            try:
                yield connection
            finally:
                await connection.execute("PRAGMA query_only = OFF")

    async def backup(self, target: Path) -> None:
        """Copy the committed database into `target` (mode 0600) with SQLite's backup API.

        The copy is written beside `target` and renamed into place, so `target` is
        either the previous file or a complete backup, never half of one.
        """
        if await asyncio.to_thread(_same_path, target, self.path):
            raise ValueError("backup target is the live database")
        async with self._hold():
            await _copy(self._connection, target)

    async def _backup_before_upgrade(self, version: int) -> None:
        """Copy the database at schema `version` into the backups directory."""
        directory = self.path.parent / BACKUP_DIR
        await asyncio.to_thread(_private_directory, directory)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = directory / f"liaison-v{version}-{stamp}.db"
        await self.backup(target)
        log.info("database backed up before upgrading its schema",
                 extra={"backup": str(target), "schema": version})

    @asynccontextmanager
    async def _hold(self) -> AsyncIterator[None]:
        current = asyncio.current_task()
        if current is not None and current is self._holder:
            raise RuntimeError("this task already holds the database; nesting would deadlock")
        async with self._lock:
            if self._closed:
                raise RuntimeError("database is closed")
            self._holder = current
            try:
                yield
            finally:
                self._holder = None

    async def _rollback(self) -> None:
        if self._connection.in_transaction:
            await self._connection.execute("ROLLBACK")

    async def _configure(self) -> None:
        connection = self._connection
        connection.row_factory = aiosqlite.Row
        row = await fetch_one(connection, "PRAGMA journal_mode = WAL")
        if row is None or str(row[0]).lower() != "wal":
            raise RuntimeError(f"SQLite refused WAL journal mode for {self.path}")
        await connection.execute("PRAGMA synchronous = NORMAL")
        await connection.execute("PRAGMA busy_timeout = 5000")
        await connection.execute("PRAGMA foreign_keys = ON")
        # Purged cases must not linger in free pages of the file.
        await connection.execute("PRAGMA secure_delete = ON")

    async def _user_version(self) -> int:
        row = await fetch_one(self._connection, "PRAGMA user_version")
        return int(row[0]) if row is not None else 0

    async def _migrate(self, migrations: list[Migration]) -> None:
        current = await self._user_version()
        refuse_newer_schema(current, migrations)
        pending = [migration for migration in migrations if migration.version > current]
        if pending:
            await self._apply(pending)
        self.schema_version = await self._user_version()

    async def _apply(self, pending: list[Migration]) -> None:
        """Every pending migration in one transaction: the upgrade happens whole or not
        at all (SQLite's schema changes are transactional)."""
        migration = pending[0]
        try:
            async with self.transaction() as connection:
                for migration in pending:
                    # Another process may have migrated while we waited for the write lock.
                    if await self._user_version() >= migration.version:
                        continue
                    for statement in split_statements(migration.sql):
                        await connection.execute(statement)
                    await connection.execute(f"PRAGMA user_version = {migration.version:d}")
                    violation = await fetch_one(connection, "PRAGMA foreign_key_check")
                    if violation is not None:
                        raise MigrationError(f"foreign key violation in table {violation[0]}")
        except (sqlite3.Error, MigrationError) as error:
            raise MigrationError(f"migration {migration.name} failed: {error}") from error


async def _open_reader(path: Path) -> aiosqlite.Connection:
    """A second connection to the database that SQLite refuses writes on (`mode=ro`),
    set up as the writer is (WAL is the file's own setting)."""
    reader = await aiosqlite.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                     isolation_level=None)
    reader.row_factory = aiosqlite.Row
    try:
        for pragma in ("synchronous = NORMAL", "busy_timeout = 5000", "foreign_keys = ON"):
            await reader.execute(f"PRAGMA {pragma}")
    except BaseException:
        await reader.close()
        raise
    return reader


def latest_version(migrations: Sequence[Migration]) -> int:
    """The schema version `migrations` bring a database to (0 for none)."""
    return migrations[-1].version if migrations else 0


def refuse_newer_schema(found: int, migrations: Sequence[Migration]) -> None:
    """Raise `SchemaTooNewError` for a database at schema `found` that `migrations` do
    not reach: a newer Liaison wrote it."""
    latest = latest_version(migrations)
    if found > latest:
        raise SchemaTooNewError(
            f"database schema {found} is newer than this Liaison ({latest}); upgrade Liaison"
        )


@asynccontextmanager
async def read_only(path: Path) -> AsyncIterator[aiosqlite.Connection]:
    """A connection that can only read the existing database at `path`, seeing one
    snapshot for the whole block; safe beside the running bot (WAL), and it never
    migrates. For the command line's exports and checks."""
    if not await asyncio.to_thread(path.is_file):
        raise FileNotFoundError(f"there is no database at {path}")
    connection = await aiosqlite.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                         isolation_level=None)
    try:
        await connection.execute("PRAGMA busy_timeout = 5000")
        await connection.execute("BEGIN")
        yield connection
    finally:
        await connection.close()


async def backup_file(source: Path, target: Path) -> None:
    """Copy the existing database at `source` into `target` (mode 0600) without opening it
    for writing: nothing is created, migrated or locked, so it is safe beside the
    running bot and with a build older or newer than the database. The copy is written
    beside `target` and renamed into place."""
    if not await asyncio.to_thread(source.is_file):
        raise FileNotFoundError(f"there is no database at {source}")
    if await asyncio.to_thread(_same_path, target, source):
        raise ValueError("backup target is the live database")
    async with read_only(source) as connection:
        await _copy(connection, target)


async def _copy(source: aiosqlite.Connection, target: Path) -> None:
    """SQLite's backup of `source` into a private file beside `target`, renamed into
    place: `target` is the previous file or a complete copy, never half of one."""
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    await asyncio.to_thread(_create_private_file, partial)
    try:
        destination = await aiosqlite.connect(partial, check_same_thread=False)
        try:
            await source.backup(destination)
        finally:
            await destination.close()
        await asyncio.to_thread(os.replace, partial, target)
    except BaseException:
        await asyncio.to_thread(partial.unlink, missing_ok=True)
        raise


async def require_current_schema(path: Path) -> None:
    """For the command line's writes beside the bot (recording an export or an identity
    reset): the existing database at `path` must be at exactly this build's schema, so
    nothing here migrates it behind the bot's back. `SchemaTooNewError` for a newer one,
    `MigrationError` for an older one; nothing is changed either way."""
    migrations = load_migrations()
    found = await stored_schema_version(path)
    refuse_newer_schema(found, migrations)
    latest = latest_version(migrations)
    if found < latest:
        raise MigrationError(
            f"database schema {found} is older than this Liaison ({latest}): start "
            "`liaison run` once to upgrade it (it backs the database up first)")


async def stored_schema_version(path: Path) -> int:
    """The schema version of the existing database at `path`, read without changing it."""
    async with read_only(path) as connection:
        return await schema_version_of(connection)


async def schema_version_of(connection: aiosqlite.Connection) -> int:
    """The schema version of the database open on `connection`."""
    row = await fetch_one(connection, "PRAGMA user_version")
    return int(row[0]) if row is not None else 0


def sqlite_online_copy(source: Path, target: Path) -> None:
    """SQLite's online backup of `source` (opened read-only) into `target`; blocking, for
    a worker thread (a consistent copy of a database another process may be writing)."""
    with sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True) as conn, \
            sqlite3.connect(target) as copy:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.backup(copy)
    copy.close()
    conn.close()


def schema_of_file(path: Path) -> int:
    """The schema version of the SQLite file at `path`, read-only; blocking."""
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
        row = conn.execute("PRAGMA user_version").fetchone()
    conn.close()
    return int(row[0]) if row else 0


async def has_table(connection: aiosqlite.Connection, name: str) -> bool:
    """Whether the database open on `connection` has the table `name` (an older schema
    may not)."""
    return await fetch_one(
        connection,
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ) is not None


def _create_private_file(path: Path) -> None:
    """Create `path` (and a 0700 parent directory) readable by the owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
    finally:
        os.close(descriptor)


def _private_directory(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _same_path(first: Path, second: Path) -> bool:
    return first.resolve() == second.resolve()


def _tighten_sidecar_files(path: Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists():
            os.chmod(sidecar, 0o600)
