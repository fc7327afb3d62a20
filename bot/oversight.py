"""The record, for operators and oversight: `liaison audit verify` and `liaison export`.

Both read the database through a read-only snapshot (`storage.db.read_only`), safe
while the bot runs, and neither needs the bot's secrets: only the configuration's
`data_dir`. An export is streamed, a batch at a time, so a year of cases needs no more
memory than a day's; it is itself recorded on the audit log (who exported what) once the
file is written; verifying changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import aiosqlite

from liaison.storage import audit, export
from liaison.storage.audit import AuditAction, ChainCheck
from liaison.storage.db import Database, has_table, read_only, require_current_schema


class NoAuditLog(RuntimeError):
    """The database predates the audit log (or is not Liaison's)."""


def parse_since(value: str) -> datetime:
    """`--since`: a date (`2026-03-01`, midnight UTC) or an ISO 8601 time (UTC unless it
    names an offset)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a date; write 2026-03-01 or 2026-03-01T18:00+05:00") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _require_audit_log(conn: aiosqlite.Connection) -> None:
    if not await has_table(conn, "audit_log"):
        raise NoAuditLog("this database has no audit log yet: start this version of "
                         "Liaison once to upgrade it")


# --- liaison audit verify ---------------------------------------------------------------


def describe(check: ChainCheck) -> str:
    """What `liaison audit verify` prints."""
    lines = []
    if check.ok:
        lines.append(f"{check.entries} entries, chain intact")
    elif check.bad_seq is None:
        lines.append(f"audit chain broken: {check.reason}")
    else:
        known = ", ".join(part for part in (export.iso(check.bad_ts_ms), check.bad_action)
                          if part)
        where = f"entry {check.bad_seq}" + (f" ({known})" if known else "")
        lines.append(f"audit chain broken at {where}: {check.reason}")
        lines.append(f"{check.entries} entries before it are intact")
    if check.head is not None:
        head = check.head
        lines.append(f"last intact entry: {head.seq} at {export.iso(head.ts_ms)}, "
                     f"hash {head.hash}")
    return "\n".join(lines)


async def verify_chain(database: Path, *, anchor: str | None = None) -> ChainCheck:
    """Recompute the audit log's chain (see `storage.audit.verify`)."""
    async with read_only(database) as conn:
        await _require_audit_log(conn)
        return await audit.verify(conn, anchor=anchor)


# --- liaison export ---------------------------------------------------------------------


async def export_records(database: Path, *, cases: bool, as_csv: bool,
                         since_ms: int | None, output: Path | None,
                         include_red: bool = False) -> int:
    """Write the cases (or the audit log) to `output` (standard output if None) as they
    are read, a batch at a time from one snapshot, then record the export on the audit
    log; how many cases or entries were written."""
    if await asyncio.to_thread(database.is_file):  # else read_only says there is none
        await require_current_schema(database)  # it can be recorded without migrating
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    kind: export.ExportKind = "cases" if cases else "audit"
    document = export.document(kind, as_csv=as_csv, exported_ms=now_ms, since_ms=since_ms)
    count = 0
    async with read_only(database) as conn:
        await _require_audit_log(conn)
        batches = (export.case_batches(conn, since_ms=since_ms, include_red=include_red)
                   if cases else
                   export.audit_batches(conn, since_ms=since_ms))
        async with _output(output) as out:
            await asyncio.to_thread(out.write, document.opening())
            async for items in batches:
                await asyncio.to_thread(out.write, document.items(items, written=count))
                count += len(items)
            await asyncio.to_thread(out.write, document.closing(written=count))
    await _record(database, AuditAction.EXPORTED, now_ms, {
        "what": kind, "format": "csv" if as_csv else "json",
        "since": export.iso(since_ms), "count": count,
        "file": "-" if output is None else str(output.resolve()),
        **({"include_red": True} if include_red else {}),
    })
    return count


@asynccontextmanager
async def _output(target: Path | None) -> AsyncIterator[TextIO]:
    if target is None:
        yield sys.stdout
        await asyncio.to_thread(sys.stdout.flush)
        return
    async with private_file(target) as out:
        yield out


@asynccontextmanager
async def private_file(target: Path) -> AsyncIterator[TextIO]:
    """A new file with mode 0600 (an export holds case content) that becomes `target` once
    the block ends, and is removed if it raises: `target` is written whole or not at all."""
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    out = await asyncio.to_thread(_create_private, partial)
    try:
        try:
            yield out
        finally:
            await asyncio.to_thread(out.close)
        await asyncio.to_thread(os.replace, partial, target)
    except BaseException:
        await asyncio.to_thread(partial.unlink, missing_ok=True)
        raise


def _create_private(path: Path) -> TextIO:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(descriptor, "w", encoding="utf-8", newline="")


async def record_identity_reset(database: Path, master_key: str) -> None:
    """`liaison reset-identity` replaced the cross-signing identity: on the record."""
    await _record(database, AuditAction.IDENTITY_RESET,
                  int(datetime.now(UTC).timestamp() * 1000), {"master_key": master_key})


async def _record(database: Path, action: AuditAction, now_ms: int,
                  detail: dict[str, object]) -> None:
    """Append what the operator did, naming their login on this machine."""
    db = await Database.open(database)
    try:
        async with db.transaction() as conn:
            await audit.append(conn, ts_ms=now_ms, actor=audit.OPERATOR, action=action,
                               detail={**detail, "os_user": _os_user()})
    finally:
        await db.close()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
