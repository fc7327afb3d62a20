"""The audit log: append-only and hash-chained, so any later edit is detectable.

Every action Liaison takes (a case created, routed, delivered, acknowledged, ...,
purged; the configuration loaded; the identity reset; an export; a command refused
for want of authority; an invite declined) is appended here in the same
transaction as the action itself, so the record and the deed commit together or
not at all. An entry says who (a Matrix user id, `liaison` for the bot itself,
`operator` for the command line), when (epoch ms, UTC), what (`action`), the case
reference and room when there are some, and a small `detail` of ids and reasons —
never message content.

Each entry's SHA-256 hash covers every column of the row (its number, time, actor,
action, case, room, detail exactly as stored) and the previous entry's hash, so
changing, removing or reordering any entry breaks the chain from that entry on;
`verify()` names the first entry that does not match. Triggers refuse UPDATE and
DELETE and an INSERT that does not extend the chain; someone with the file can
drop them and edit rows, and `verify()` then names the first edited one.
Rewriting the whole chain from the edited entry on, or cutting entries off its
end, can only be shown against a hash kept elsewhere: `verify(anchor=...)` checks
that an entry with that hash (the head printed by an earlier `liaison audit
verify`) is still there.

Appends are serialised: each runs inside a write transaction (`BEGIN IMMEDIATE`,
see `storage.db`), which holds SQLite's write lock, so reading the last entry and
inserting the next cannot interleave with another append, from this process or
another (the command line).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiosqlite

from liaison.storage.db import fetch_one

GENESIS = "0" * 64
"""The `prev_hash` of the first entry."""
LIAISON = "liaison"
"""The actor of what the bot does by itself (routing, reminders, deliveries, purges)."""
OPERATOR = "operator"
"""The actor of what an operator does with the command line."""
MAX_DETAIL_TEXT = 256
"""Longer strings in a detail are cut: the detail holds ids and reasons, not content."""


class AuditAction(StrEnum):
    """Actions that are not case timeline entries (those are recorded under their
    timeline kind: created, routed, refused, acknowledged, ...; see `storage.cases`)."""

    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    PURGED = "purged"
    CONFIG_LOADED = "config-loaded"
    IDENTITY_RESET = "identity-reset"
    DEVICE_RECOVERED = "device-recovered"
    COMMAND_REFUSED = "command-refused"
    INVITE_DECLINED = "invite-declined"
    EXPORTED = "exported"
    ROOM_UPGRADED = "room-upgraded"


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts_ms: int
    actor: str
    action: str
    case_ref: str | None
    room_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "ts_ms": self.ts_ms, "actor": self.actor, "action": self.action,
            "case_ref": self.case_ref, "room_id": self.room_id, "detail": self.detail,
            "prev_hash": self.prev_hash, "hash": self.hash,
        }


@dataclass(frozen=True)
class ChainLink:
    """An entry as `verify()` reports it."""

    seq: int
    hash: str
    ts_ms: int
    action: str


@dataclass(frozen=True)
class ChainCheck:
    """The result of `verify()`. When the chain is broken, `bad_seq` names the first entry
    that does not match (its time and action as stored, if the row exists)."""

    ok: bool
    entries: int
    """Entries checked and found intact (all of them when `ok`)."""
    head: ChainLink | None = None
    """The last intact entry: keep its hash elsewhere to check against later (`anchor`)."""
    bad_seq: int | None = None
    bad_ts_ms: int | None = None
    bad_action: str | None = None
    reason: str | None = None


def entry_hash(
    *,
    seq: int,
    ts_ms: int,
    actor: str,
    action: str,
    case_ref: str | None,
    room_id: str | None,
    detail_json: str,
    prev_hash: str,
) -> str:
    """SHA-256 over a canonical JSON array of the entry's fields and the previous hash."""
    material = json.dumps(
        [seq, ts_ms, actor, action, case_ref, room_id, detail_json, prev_hash],
        ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _bounded(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_DETAIL_TEXT else value[:MAX_DETAIL_TEXT] + "…"
    if isinstance(value, Mapping):
        return {str(key): _bounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_bounded(item) for item in value]
    return value


def _detail_json(detail: Mapping[str, Any] | None) -> str:
    return json.dumps(_bounded(detail or {}), ensure_ascii=False, sort_keys=True,
                      separators=(",", ":"))


async def append(
    conn: aiosqlite.Connection,
    *,
    ts_ms: int,
    actor: str,
    action: str,
    case_ref: str | None = None,
    room_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add one entry; call inside the write transaction that performs the action itself."""
    if not conn.in_transaction:
        raise RuntimeError("audit entries are appended inside the action's transaction")
    last = await fetch_one(conn, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    seq, prev_hash = (int(last[0]) + 1, str(last[1])) if last else (1, GENESIS)
    detail_json = _detail_json(detail)
    digest = entry_hash(seq=seq, ts_ms=ts_ms, actor=actor, action=action, case_ref=case_ref,
                        room_id=room_id, detail_json=detail_json, prev_hash=prev_hash)
    await conn.execute(
        "INSERT INTO audit_log (seq, ts_ms, actor, action, case_ref, room_id, detail,"
        " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, ts_ms, actor, action, case_ref, room_id, detail_json, prev_hash, digest),
    )
    return AuditEntry(seq, ts_ms, actor, action, case_ref, room_id, json.loads(detail_json),
                      prev_hash, digest)


_SELECT = ("SELECT seq, ts_ms, actor, action, case_ref, room_id, detail, prev_hash, hash"
           " FROM audit_log")


def _parsed_detail(raw: object) -> dict[str, Any]:
    """The stored detail; a row edited by hand may hold anything, shown as it is."""
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"unreadable": str(raw)}


def _entry(row: aiosqlite.Row) -> AuditEntry:
    return AuditEntry(int(row[0]), int(row[1]), str(row[2]), str(row[3]), row[4], row[5],
                      _parsed_detail(row[6]), str(row[7]), str(row[8]))


async def entries(conn: aiosqlite.Connection, *, since_ms: int | None = None,
                  after_seq: int = 0, limit: int | None = None) -> list[AuditEntry]:
    """Entries in order, those at or after `since_ms` when given; with `after_seq` and
    `limit`, the next `limit` of them after entry `after_seq` (a long log read in parts)."""
    rows = await conn.execute_fetchall(
        f"{_SELECT} WHERE seq > ? AND ts_ms >= ? ORDER BY seq LIMIT ?",
        (after_seq, since_ms or 0, -1 if limit is None else limit))
    return [_entry(row) for row in rows]


_TYPES: tuple[tuple[type, ...], ...] = (
    (int,), (int,), (str,), (str,), (str, type(None)), (str, type(None)), (str,), (str,), (str,),
)
_UNLINKED = "it does not link to the previous entry"


async def verify(conn: aiosqlite.Connection, *, anchor: str | None = None) -> ChainCheck:
    """Recompute the chain from the first entry and name the first one that does not match;
    with `anchor`, also require an entry with that hash (see the module docstring)."""
    recent: list[ChainLink] = []  # the last two intact entries, newest last
    count = 0
    anchored = anchor is None
    async with conn.execute(f"{_SELECT} ORDER BY seq") as cursor:
        async for row in cursor:
            previous = recent[-1] if recent else None
            problem = _problem(row, count + 1, previous.hash if previous else GENESIS)
            if problem == _UNLINKED and previous is not None and _self_consistent(row):
                # This entry is as it was written, so the one before it was changed and
                # given a new hash: that one is the first bad entry.
                return _broken(count - 1, recent[0] if len(recent) == 2 else None,
                               previous.seq, previous.ts_ms, previous.action,
                               f"it was changed and its hash recomputed (entry {row[0]} "
                               "still links to its original hash)")
            if problem is not None:
                itself = row[0] == count + 1  # the row is the bad entry, not one after a gap
                return _broken(count, previous, count + 1,
                               row[1] if itself and isinstance(row[1], int) else None,
                               row[3] if itself and isinstance(row[3], str) else None, problem)
            anchored = anchored or row[8] == anchor
            recent = [*recent[-1:], ChainLink(row[0], row[8], row[1], row[3])]
            count += 1
    last = recent[-1] if recent else None
    if not anchored:
        return ChainCheck(False, count, last,
                          reason=f"no entry has the anchored hash {anchor}: entries were "
                                 "removed from the end, or the chain was rewritten")
    return ChainCheck(True, count, last)


def _broken(count: int, last_intact: ChainLink | None, seq: int, ts_ms: int | None,
            action: str | None, reason: str) -> ChainCheck:
    return ChainCheck(False, count, last_intact, bad_seq=seq, bad_ts_ms=ts_ms,
                      bad_action=action, reason=reason)


def _self_consistent(row: aiosqlite.Row) -> bool:
    """The row's hash matches its own fields (whatever it links to)."""
    return bool(row[8] == entry_hash(seq=row[0], ts_ms=row[1], actor=row[2], action=row[3],
                                     case_ref=row[4], room_id=row[5], detail_json=row[6],
                                     prev_hash=row[7]))


def _problem(row: aiosqlite.Row, expected_seq: int, expected_prev: str) -> str | None:
    """Why this row is not the entry `expected_seq` that follows `expected_prev`, if so."""
    if not all(isinstance(row[index], kinds) for index, kinds in enumerate(_TYPES)):
        return "a field holds a value of the wrong type"
    if row[0] != expected_seq:
        if row[0] < expected_seq:
            return "its number is out of sequence"
        missing = (f"entry {expected_seq} is missing" if row[0] == expected_seq + 1
                   else f"entries {expected_seq} to {row[0] - 1} are missing")
        return f"{missing} (the next one kept is {row[0]})"
    if row[7] != expected_prev:
        return _UNLINKED
    if not _self_consistent(row):
        return "its content does not match its hash"
    return None
