"""Links between bots in SQLite (migration 0014): partners' directories, what this bot
published, the cases that crossed a link and the log of every protocol event.

`link_log` holds each protocol event once per (link, direction, idempotency key): the
handler logs an accepted event in the transaction that applies it, so a replayed or
duplicated event finds its key taken (`log_event` returns False) and changes nothing.
`liaison link export` reads the exchange with one partner from it, metrics its counts.

The functions take a connection inside the caller's transaction (`Database.transaction()`,
or `Database.read()` for the read-only ones) and never commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiosqlite
from pydantic import ValidationError

from liaison.commands.links import DirectoryContent
from liaison.storage.db import changes, dump_json, fetch_one

log = logging.getLogger(__name__)

CaseDirection = Literal["outbound", "inbound"]
"""'outbound': this bot offered the case; 'inbound': the partner offered it."""
LogDirection = Literal["sent", "received", "refused"]


@dataclass(frozen=True)
class LinkCase:
    """A case that crossed a link. `foreign_ref` is the reference the protocol names the
    case by: the partner's for an inbound case, this bot's own (as offered) for an
    outbound one."""

    case_id: int
    link: str
    direction: CaseDirection
    foreign_ref: str


@dataclass(frozen=True)
class LinkLogEntry:
    """One protocol event sent, accepted ('received') or refused on a link."""

    id: int
    link: str
    direction: LogDirection
    event_type: str
    key: str
    event_id: str | None
    case_ref: str | None
    ms: int
    detail: dict[str, Any]


# --- directories ------------------------------------------------------------------------


async def accepted_directories(conn: aiosqlite.Connection) -> dict[str, DirectoryContent]:
    """Link name → the newest directory accepted from its partner. A stored directory
    this build can no longer read is left out (and logged), as if none was accepted."""
    rows = await conn.execute_fetchall("SELECT link, content FROM link_directories ORDER BY link")
    found: dict[str, DirectoryContent] = {}
    for link, content in rows:
        try:
            found[str(link)] = DirectoryContent.model_validate_json(str(content))
        except ValidationError as error:
            log.warning("stored directory of link %s is unreadable: %s", link, error)
    return found


async def accept_directory(conn: aiosqlite.Connection, link: str, content: DirectoryContent,
                           event_id: str, now_ms: int) -> bool:
    """Keep `content` as the link's directory if its version is above the stored one;
    False (nothing changed) when it is not newer: a stale or replayed directory."""
    return await changes(
        conn,
        "INSERT INTO link_directories (link, version, content, event_id, received_ms)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (link) DO UPDATE SET version = excluded.version,"
        " content = excluded.content, event_id = excluded.event_id,"
        " received_ms = excluded.received_ms WHERE excluded.version > link_directories.version",
        (link, content.version, dump_json(content.model_dump(mode="json")), event_id,
         now_ms)) == 1


async def directory_received(conn: aiosqlite.Connection, link: str) -> tuple[int, int] | None:
    """(version, received ms) of the directory accepted from the link's partner, if any."""
    row = await fetch_one(
        conn, "SELECT version, received_ms FROM link_directories WHERE link = ?", (link,))
    return None if row is None else (int(row[0]), int(row[1]))


async def published(conn: aiosqlite.Connection, link: str) -> tuple[int, str] | None:
    """(version, digest) of the directory this bot last published to the link, if any."""
    row = await fetch_one(
        conn, "SELECT version, digest FROM link_published WHERE link = ?", (link,))
    return None if row is None else (int(row[0]), str(row[1]))


async def set_published(conn: aiosqlite.Connection, link: str, version: int, digest: str,
                        now_ms: int) -> None:
    """Record that the directory `version` (of `digest`) was queued for the link."""
    await conn.execute(
        "INSERT INTO link_published (link, version, digest, published_ms) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (link) DO UPDATE SET version = excluded.version,"
        " digest = excluded.digest, published_ms = excluded.published_ms",
        (link, version, digest, now_ms))


# --- cases that crossed a link ------------------------------------------------------------


async def add_link_case(conn: aiosqlite.Connection, case_id: int, link: str,
                        direction: CaseDirection, foreign_ref: str) -> None:
    """Record that the case crossed `link`; nothing changes if it is recorded already
    (a second offer of the same case to another post of the same partner)."""
    await conn.execute(
        "INSERT OR IGNORE INTO link_cases (case_id, link, direction, foreign_ref)"
        " VALUES (?, ?, ?, ?)", (case_id, link, direction, foreign_ref))


async def link_case_of(conn: aiosqlite.Connection, case_id: int) -> list[LinkCase]:
    """Every link the case crossed (a case may be offered to several partners)."""
    rows = await conn.execute_fetchall(
        "SELECT case_id, link, direction, foreign_ref FROM link_cases WHERE case_id = ?"
        " ORDER BY link", (case_id,))
    return [LinkCase(int(row[0]), str(row[1]), _case_direction(str(row[2])), str(row[3]))
            for row in rows]


async def case_id_by_foreign_ref(conn: aiosqlite.Connection, link: str,
                                 direction: CaseDirection, foreign_ref: str) -> int | None:
    """The case that crossed `link` in `direction` under the protocol's `foreign_ref`."""
    row = await fetch_one(
        conn, "SELECT case_id FROM link_cases WHERE link = ? AND direction = ?"
        " AND foreign_ref = ?", (link, direction, foreign_ref))
    return None if row is None else int(row[0])


# --- the protocol log -------------------------------------------------------------------


async def log_event(conn: aiosqlite.Connection, *, link: str, direction: LogDirection,
                    event_type: str, key: str, event_id: str | None, case_ref: str | None,
                    ms: int, detail: Mapping[str, Any]) -> bool:
    """Log one protocol event; False (nothing logged) when this (link, direction, key)
    is logged already: for 'received', the event is a replay and must change nothing."""
    return await changes(
        conn,
        "INSERT OR IGNORE INTO link_log (link, direction, event_type, key, event_id,"
        " case_ref, ms, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (link, direction, event_type, key, event_id, case_ref, ms, dump_json(dict(detail)))) == 1


async def exchange(conn: aiosqlite.Connection, link: str) -> list[LinkLogEntry]:
    """Every protocol event sent, accepted or refused on `link`, in the order logged."""
    rows = await conn.execute_fetchall(
        "SELECT id, link, direction, event_type, key, event_id, case_ref, ms, detail"
        " FROM link_log WHERE link = ? ORDER BY id", (link,))
    return [LinkLogEntry(
        id=int(row[0]), link=str(row[1]), direction=_log_direction(str(row[2])),
        event_type=str(row[3]), key=str(row[4]),
        event_id=None if row[5] is None else str(row[5]),
        case_ref=None if row[6] is None else str(row[6]), ms=int(row[7]),
        detail=json.loads(str(row[8]))) for row in rows]


async def counts(conn: aiosqlite.Connection) -> dict[tuple[str, str, str], int]:
    """(link, direction, event type) → how many protocol events were logged (metrics)."""
    rows = await conn.execute_fetchall(
        "SELECT link, direction, event_type, COUNT(*) FROM link_log"
        " GROUP BY link, direction, event_type")
    return {(str(row[0]), str(row[1]), str(row[2])): int(row[3]) for row in rows}


async def queued(conn: aiosqlite.Connection, room_id: str) -> tuple[int, int | None]:
    """Outbox messages to `room_id` not sent yet (pending) and the oldest one's created
    ms (None when none): a link's queue depth and how stuck it is."""
    row = await fetch_one(
        conn, "SELECT COUNT(*), MIN(created_ms) FROM outbox WHERE room_id = ?"
        " AND state = 'pending'", (room_id,))
    if row is None:
        return 0, None
    return int(row[0]), None if row[1] is None else int(row[1])


def _case_direction(value: str) -> CaseDirection:
    if value == "inbound":
        return "inbound"
    return "outbound"


def _log_direction(value: str) -> LogDirection:
    if value in ("received", "refused"):
        return "received" if value == "received" else "refused"
    return "sent"


async def refusals(conn: aiosqlite.Connection) -> dict[tuple[str, str], int]:
    """(link, reason) → protocol events refused on the link (metrics)."""
    rows = await conn.execute_fetchall(
        "SELECT link, COALESCE(json_extract(detail, '$.reason'), 'unknown'), COUNT(*)"
        " FROM link_log WHERE direction = 'refused' GROUP BY 1, 2")
    return {(str(row[0]), str(row[1])): int(row[2]) for row in rows}
