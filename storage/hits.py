"""The entity index and the links between cases, in SQLite (migration 0012).

Every entity of a case that is not RED is stored once (`entities`) under the keys the
index finds it by (`entity_keys`: `plate:01A123BC` for an identifier, the blocking keys
of a name); a lookup is one indexed query over those keys. A link (`hits`) is stored
once per pair of cases, so a pair is told once, and keeps its row when dismissed, so
it is not told again. Purging a case removes its entities and its side of each link's
value (`purge_case_entities`, called by `storage.retention.purge_case`).

The functions take a connection inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from liaison.commands.entities import Entity, EntityKind
from liaison.commands.hits import Link
from liaison.commands.names import blocking_keys
from liaison.storage.db import changes

CANDIDATE_LIMIT = 200
"""Candidates read for one key at most (a common name in a large index)."""
KEYS_PER_QUERY = 200
"""Keys looked up in one compound query (SQLite allows 500 terms by default)."""


def index_keys(entity: Entity) -> frozenset[str]:
    """The keys an entity is found by."""
    if entity.kind is EntityKind.NAME:
        return blocking_keys(entity.person)
    return frozenset({f"{entity.kind.value}:{entity.value}"})


async def add_entities(conn: aiosqlite.Connection, case_id: int, entities: Iterable[Entity],
                       *, now_ms: int) -> list[Entity]:
    """Store the case's entities; those it did not hold yet, in order."""
    added = []
    for entity in entities:
        cursor = await conn.execute(
            "INSERT OR IGNORE INTO entities (case_id, kind, value, dob, country, created_ms)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (case_id, entity.kind.value, entity.value, entity.dob, entity.country, now_ms))
        entity_id = cursor.lastrowid if cursor.rowcount == 1 else None
        await cursor.close()
        if entity_id is None:
            continue
        await conn.executemany("INSERT OR IGNORE INTO entity_keys (key, entity_id) VALUES (?, ?)",
                               [(key, entity_id) for key in sorted(index_keys(entity))])
        added.append(entity)
    return added


async def candidates(conn: aiosqlite.Connection, entity: Entity, *,
                     exclude_case_id: int | None) -> list[tuple[int, Entity]]:
    """(case id, entity) of every other case's entity that shares a key with `entity`,
    oldest case first; at most `CANDIDATE_LIMIT` per key."""
    found = await candidates_of(conn, [entity], exclude_case_id=exclude_case_id)
    return found[0]


async def candidates_of(conn: aiosqlite.Connection, entities: Sequence[Entity], *,
                        exclude_case_id: int | None) -> list[list[tuple[int, Entity]]]:
    """`candidates` of each of `entities`, in one query (one round trip to the database
    thread, whatever the number of keys): each key read in index order up to
    `CANDIDATE_LIMIT`, so a common key costs no more than the limit."""
    keyed = [(number, key) for number, entity in enumerate(entities)
             for key in sorted(index_keys(entity))]
    found: list[list[tuple[int, Entity]]] = [[] for _ in entities]
    if not keyed:
        return found
    one = ("SELECT * FROM (SELECT ? AS entity, e.case_id, e.kind, e.value, e.dob, e.country"
           " FROM entity_keys k JOIN entities e ON e.id = k.entity_id"
           " WHERE k.key = ? AND e.case_id != ? LIMIT ?)")
    exclude = -1 if exclude_case_id is None else exclude_case_id
    rows: list[Any] = []
    for start in range(0, len(keyed), KEYS_PER_QUERY):  # SQLite's compound-select limit
        chunk = keyed[start:start + KEYS_PER_QUERY]
        rows.extend(await conn.execute_fetchall(
            " UNION ALL ".join([one] * len(chunk)),
            [value for number, key in chunk
             for value in (number, key, exclude, CANDIDATE_LIMIT)]))
    seen: set[tuple[int, int, str, str]] = set()
    for row in rows:
        number, case_id = int(row[0]), int(row[1])
        if (number, case_id, row[2], row[3]) in seen:
            continue
        seen.add((number, case_id, row[2], row[3]))
        found[number].append((case_id, Entity(EntityKind(row[2]), row[3], dob=row[4],
                                               country=row[5])))
    return [sorted(pairs, key=lambda pair: pair[0]) for pairs in found]


async def entities_of(conn: aiosqlite.Connection, case_id: int) -> list[Entity]:
    rows = await conn.execute_fetchall(
        "SELECT kind, value, dob, country FROM entities WHERE case_id = ? ORDER BY id",
        (case_id,))
    return [Entity(EntityKind(row[0]), row[1], dob=row[2], country=row[3]) for row in rows]


async def record_link(conn: aiosqlite.Connection, *, earlier_case_id: int, later_case_id: int,
                      kind: EntityKind, earlier_value: str, later_value: str, score: int,
                      now_ms: int) -> bool:
    """Store a link between two cases; False (nothing stored) if the pair has one."""
    return await changes(
        conn,
        "INSERT OR IGNORE INTO hits (earlier_case_id, later_case_id, kind, earlier_value,"
        " later_value, score, found_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (earlier_case_id, later_case_id, kind.value, earlier_value, later_value, score,
         now_ms)) == 1


_LINK_COLUMNS = ("earlier_case_id, later_case_id, kind, earlier_value, later_value, score,"
                 " found_ms, unlinked_ms")


def _link(row: Sequence[object]) -> Link:
    return Link(earlier_case_id=int(str(row[0])), later_case_id=int(str(row[1])),
                kind=EntityKind(str(row[2])),
                earlier_value=None if row[3] is None else str(row[3]),
                later_value=None if row[4] is None else str(row[4]), score=int(str(row[5])),
                found_ms=int(str(row[6])),
                unlinked_ms=None if row[7] is None else int(str(row[7])))


async def links_of(conn: aiosqlite.Connection, case_id: int, *,
                   dismissed: bool = False) -> list[Link]:
    """The case's links, oldest first; dismissed ones only if asked."""
    rows = await conn.execute_fetchall(
        f"SELECT {_LINK_COLUMNS} FROM hits WHERE (earlier_case_id = ? OR later_case_id = ?)"
        " AND (? OR unlinked_ms IS NULL) ORDER BY found_ms, earlier_case_id, later_case_id",
        (case_id, case_id, int(dismissed)))
    return [_link(row) for row in rows]


async def unlink(conn: aiosqlite.Connection, a: int, b: int, *, by: str, now_ms: int) -> bool:
    """Dismiss the link of two cases; False if they have none, or it was dismissed."""
    return await changes(
        conn,
        "UPDATE hits SET unlinked_ms = ?, unlinked_by = ? WHERE earlier_case_id = ?"
        " AND later_case_id = ? AND unlinked_ms IS NULL",
        (now_ms, by, min(a, b), max(a, b))) == 1


async def purge_case_entities(conn: aiosqlite.Connection, case_id: int) -> int:
    """Remove a purged case's entities and its side of each link's value; how many
    entities were removed."""
    await conn.execute(
        "DELETE FROM entity_keys WHERE entity_id IN (SELECT id FROM entities WHERE case_id = ?)",
        (case_id,))
    removed = await changes(conn, "DELETE FROM entities WHERE case_id = ?", (case_id,))
    await conn.execute("UPDATE hits SET earlier_value = NULL WHERE earlier_case_id = ?",
                       (case_id,))
    await conn.execute("UPDATE hits SET later_value = NULL WHERE later_case_id = ?", (case_id,))
    return removed
