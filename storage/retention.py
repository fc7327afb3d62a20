"""Retention: finished cases lose their content once the configured time has passed.

Purging a closed or cancelled case removes what officers wrote — its text, its
`key: value` lines, its grade, its outcome, the content-bearing parts of its timeline
details (`storage.cases.recordable` keeps the rest) — and the content of every
message the bot sent about it, and its entities in the hit index with its side of each
link (`storage.hits.purge_case_entities`). It keeps what statistics and oversight need: the
reference, kind, posts, priority, TLP, category, states, who did what and when, and
event ids, and that two cases were linked. A timeline entry `purged`, and with it an
audit entry (see `storage.cases.add_timeline`), says which case was purged and when. Messages the
bot sent that belong to no case (answers to `!status`, `!pending`, ...) lose their
content after the same time (`purge_sent_messages`). Nothing here removes a row but the
index's, and
nothing else in Liaison removes content; `PRAGMA secure_delete` (see `storage.db`)
overwrites what was removed in the file.

The functions take a connection inside the caller's transaction; the shell
(`bot.retention`) purges each case in a transaction of its own.
"""

from __future__ import annotations

import json

import aiosqlite

from liaison.commands.records import TimelineKind
from liaison.storage import audit
from liaison.storage.audit import AuditAction
from liaison.storage.cases import add_timeline, recordable
from liaison.storage.db import changes, fetch_one
from liaison.storage.hits import purge_case_entities

PURGED_CONTENT = "{}"
"""What a message's content becomes once purged."""


async def cases_due(conn: aiosqlite.Connection, *, finished_before_ms: int) -> list[int]:
    """Ids of closed and cancelled cases not yet purged, finished at or before the cutoff,
    oldest first."""
    rows = await conn.execute_fetchall(
        "SELECT id FROM cases WHERE state IN ('closed', 'cancelled') AND purged_ms IS NULL"
        " AND closed_ms <= ? ORDER BY closed_ms, id",
        (finished_before_ms,),
    )
    return [int(row[0]) for row in rows]


async def purge_case(conn: aiosqlite.Connection, case_id: int, *, now_ms: int) -> str | None:
    """Remove the case's content (see the module docstring) and record it; its reference,
    or None (nothing done) when the case is open, already purged or gone."""
    row = await fetch_one(
        conn,
        "SELECT ref FROM cases"
        " WHERE id = ? AND state != 'open' AND purged_ms IS NULL",
        (case_id,),
    )
    if row is None:
        return None
    ref = str(row[0])
    await conn.execute(
        "UPDATE cases SET text = '', fields = '[]', grading = NULL, outcome = NULL,"
        " handling_text = NULL, purged_ms = ? WHERE id = ?",
        (now_ms, case_id),
    )
    # TLP:RED messages that never reached their direct room (`bot.red`): gone with the rest.
    await conn.execute("UPDATE direct_waiting SET content = '{}' WHERE case_id = ?", (case_id,))
    entities = await purge_case_entities(conn, case_id)
    details = await _purge_timeline(conn, case_id)
    messages = await changes(
        conn, "UPDATE outbox SET content = ? WHERE case_ref = ? AND state != 'pending'"
        " AND content != ?", (PURGED_CONTENT, ref, PURGED_CONTENT))
    await add_timeline(conn, case_id, TimelineKind.PURGED, ms=now_ms,
                       detail={"timeline_details": details, "messages": messages,
                               "entities": entities})
    return ref


async def purge_sent_messages(conn: aiosqlite.Connection, *, created_before_ms: int,
                              now_ms: int) -> int:
    """Remove the content of every message the bot sent (or gave up on) at or before the
    cutoff; pending messages are kept until they leave. Records how many, if any."""
    count = await changes(
        conn, "UPDATE outbox SET content = ? WHERE state != 'pending' AND created_ms <= ?"
        " AND content != ?", (PURGED_CONTENT, created_before_ms, PURGED_CONTENT))
    if count:
        await audit.append(conn, ts_ms=now_ms, actor=audit.LIAISON, action=AuditAction.PURGED,
                           detail={"messages": count, "sent_before_ms": created_before_ms})
    return count


async def _purge_timeline(conn: aiosqlite.Connection, case_id: int) -> int:
    """Keep only the recordable part of each timeline detail; how many changed."""
    rows = await conn.execute_fetchall(
        "SELECT id, detail FROM timeline WHERE case_id = ? ORDER BY id", (case_id,))
    changed = 0
    for entry_id, raw in rows:
        detail = json.loads(raw)
        kept = recordable(detail)
        if kept != detail:
            await conn.execute("UPDATE timeline SET detail = ? WHERE id = ?",
                               (json.dumps(kept, ensure_ascii=False, separators=(",", ":")),
                                entry_id))
            changed += 1
    return changed

