"""Cases and the audit log written out for statistics and oversight (`liaison export`).

JSON is the full record: every case with its details, deliveries and timeline; every
audit entry with the hashes that chain it (so a copy can be checked without the
database). CSV is for spreadsheets and statistics: one row per delivery (a case
that went nowhere has one row with the delivery columns empty) with the times to
acknowledge and to answer, and no content; one row per audit entry with its detail
as compact JSON. Times are ISO 8601 in UTC with milliseconds (`...T10:00:00.000Z`);
the audit log's `ts_ms` is kept as well, since its hash covers it (with the detail as
`json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`; see
`storage.audit.entry_hash`).

Reading is separate from formatting: `case_records` and `storage.audit.entries` query,
the `*_json`/`*_csv` functions are pure.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from storage.audit import AuditEntry

_CASE_COLUMNS = ("ref", "kind", "origin_post", "priority", "tlp", "category", "state",
                 "created", "due", "closed", "closed_by", "purged")
_DELIVERY_COLUMNS = ("routed", "sent", "acknowledged", "acknowledged_by", "answered",
                     "answered_by", "seconds_to_acknowledge", "seconds_to_answer")
CASE_CSV_COLUMNS = (*_CASE_COLUMNS, "target_post", "delivery_state", *_DELIVERY_COLUMNS)
AUDIT_CSV_COLUMNS = ("seq", "time", "ts_ms", "actor", "action", "case_ref", "room_id",
                     "detail", "prev_hash", "hash")


def iso(ms: int | None) -> str | None:
    """`2026-03-01T10:00:00.123Z`, or None."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


async def case_records(conn: aiosqlite.Connection, *,
                       since_ms: int | None = None) -> list[dict[str, Any]]:
    """Every case created at or after `since_ms`, oldest first, as the JSON export has it."""
    since = since_ms or 0
    case_rows = await conn.execute_fetchall(
        "SELECT id, ref, kind, origin_post, origin_room, origin_sender, origin_event_id,"
        " priority, tlp, category, grading, related_ref, fields, text, due_ms, state,"
        " forwardable, created_ms, closed_ms, closed_by, outcome, purged_ms"
        " FROM cases WHERE created_ms >= ? ORDER BY id",
        (since,),
    )
    delivery_rows = await conn.execute_fetchall(
        "SELECT d.case_id, d.post, d.room_id, d.state, d.routed_ms, o.sent_ms, o.event_id,"
        " d.acknowledged_ms, d.acknowledged_by, d.answered_ms, d.answered_by"
        " FROM deliveries d JOIN cases c ON c.id = d.case_id"
        " LEFT JOIN outbox o ON o.txn_id = d.relay_txn_id"
        " WHERE c.created_ms >= ? ORDER BY d.id",
        (since,),
    )
    timeline_rows = await conn.execute_fetchall(
        "SELECT t.case_id, t.ms, t.kind, t.post, t.actor, t.detail"
        " FROM timeline t JOIN cases c ON c.id = t.case_id"
        " WHERE c.created_ms >= ? ORDER BY t.id",
        (since,),
    )
    deliveries: dict[int, list[dict[str, Any]]] = {}
    for row in delivery_rows:
        deliveries.setdefault(row[0], []).append({
            "post": row[1], "room_id": row[2], "state": row[3], "routed": iso(row[4]),
            "sent": iso(row[5]), "relayed_event_id": row[6], "acknowledged": iso(row[7]),
            "acknowledged_by": row[8], "answered": iso(row[9]), "answered_by": row[10],
            "seconds_to_acknowledge": _seconds(row[4], row[7]),
            "seconds_to_answer": _seconds(row[4], row[9]),
        })
    timelines: dict[int, list[dict[str, Any]]] = {}
    for row in timeline_rows:
        timelines.setdefault(row[0], []).append({
            "time": iso(row[1]), "kind": row[2], "post": row[3], "actor": row[4],
            "detail": json.loads(row[5]),
        })
    return [{
        "ref": row[1], "kind": row[2], "origin_post": row[3], "origin_room": row[4],
        "origin_sender": row[5], "origin_event_id": row[6], "priority": row[7], "tlp": row[8],
        "category": row[9], "grading": row[10], "related_ref": row[11],
        "fields": json.loads(row[12]), "text": row[13], "due": iso(row[14]), "state": row[15],
        "forwardable": bool(row[16]), "created": iso(row[17]), "closed": iso(row[18]),
        "closed_by": row[19], "outcome": row[20], "purged": iso(row[21]),
        "deliveries": deliveries.get(row[0], []), "timeline": timelines.get(row[0], []),
    } for row in case_rows]


def _seconds(start_ms: int | None, end_ms: int | None) -> float | None:
    if start_ms is None or end_ms is None:
        return None
    return round((end_ms - start_ms) / 1000, 3)


def _document(kind: str, items: Sequence[Any], *, exported_ms: int,
              since_ms: int | None) -> str:
    return json.dumps({"export": kind, "exported": iso(exported_ms), "since": iso(since_ms),
                       kind: items}, ensure_ascii=False, indent=2) + "\n"


def cases_json(records: Sequence[dict[str, Any]], *, exported_ms: int,
               since_ms: int | None = None) -> str:
    return _document("cases", records, exported_ms=exported_ms, since_ms=since_ms)


def audit_json(entries: Iterable[AuditEntry], *, exported_ms: int,
               since_ms: int | None = None) -> str:
    items = [{"time": iso(entry.ts_ms), **entry.as_dict()} for entry in entries]
    return _document("audit", items, exported_ms=exported_ms, since_ms=since_ms)


def _csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return out.getvalue()


def cases_csv(records: Iterable[dict[str, Any]]) -> str:
    """One row per delivery; no content (see the module docstring)."""

    def rows() -> Iterable[dict[str, Any]]:
        for record in records:
            case = {column: record[column] for column in _CASE_COLUMNS}
            for delivery in record["deliveries"] or [None]:
                yield {**case, **_delivery_columns(delivery)}

    return _csv(CASE_CSV_COLUMNS, rows())


def _delivery_columns(delivery: dict[str, Any] | None) -> dict[str, Any]:
    if delivery is None:
        return dict.fromkeys(CASE_CSV_COLUMNS[len(_CASE_COLUMNS):])
    return {"target_post": delivery["post"], "delivery_state": delivery["state"],
            **{column: delivery[column] for column in _DELIVERY_COLUMNS}}


def audit_csv(entries: Iterable[AuditEntry]) -> str:
    return _csv(AUDIT_CSV_COLUMNS, ({
        **entry.as_dict(), "time": iso(entry.ts_ms),
        "detail": json.dumps(entry.detail, ensure_ascii=False, sort_keys=True,
                             separators=(",", ":")),
    } for entry in entries))
