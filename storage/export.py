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

An export of any length is streamed: `case_batches` and `audit_batches` read
`BATCH_SIZE` items at a time, and a `Document` turns each batch into text (pure, so
reading stays separate from formatting) for the caller to write before reading the next.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import aiosqlite

from liaison.commands.deadlines import on_time
from liaison.storage import audit
from liaison.storage.cases import recordable

_CASE_COLUMNS = ("ref", "kind", "origin_post", "priority", "tlp", "category", "state",
                 "created", "due", "closed", "closed_by", "purged", "deadline_class",
                 "handling", "action")
_DELIVERY_COLUMNS = ("routed", "sent", "seen", "seen_by", "acknowledged", "acknowledged_by",
                     "answered", "answered_by", "seconds_to_acknowledge", "seconds_to_answer",
                     "answer_due", "on_time", "refused", "refusal_reason")
CASE_CSV_COLUMNS = (*_CASE_COLUMNS, "target_post", "delivery_state", *_DELIVERY_COLUMNS)
AUDIT_CSV_COLUMNS = ("seq", "time", "ts_ms", "actor", "action", "case_ref", "room_id",
                     "detail", "prev_hash", "hash")
BATCH_SIZE = 500
"""Cases (with their deliveries and timeline) or audit entries read and written at a
time: what an export holds in memory, however long the record."""

ExportKind = Literal["cases", "audit"]


def iso(ms: int | None) -> str | None:
    """`2026-03-01T10:00:00.123Z`, or None."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


async def case_batches(conn: aiosqlite.Connection, *, since_ms: int | None = None,
                       include_red: bool = False) -> AsyncIterator[list[dict[str, Any]]]:
    """Every case created at or after `since_ms`, oldest first, as the JSON export has it,
    `BATCH_SIZE` at a time with their deliveries and timeline. Run it inside one read
    transaction (`storage.db.read_only`) so the batches are one consistent snapshot.
    A TLP:RED case's content (fields, text, outcome, what was said on its timeline) is
    left out unless `include_red` (the admin's explicit `--include-red`)."""
    size, after = BATCH_SIZE, 0
    while True:
        rows = list(await conn.execute_fetchall(
            "SELECT id, ref, kind, origin_post, origin_room, origin_sender, origin_event_id,"
            " priority, tlp, category, grading, related_ref, fields, text, due_ms, state,"
            " forwardable, created_ms, closed_ms, closed_by, outcome, purged_ms,"
            " deadline_class, handling, handling_text, action"
            " FROM cases WHERE id > ? AND created_ms >= ? ORDER BY id LIMIT ?",
            (after, since_ms or 0, size),
        ))
        if not rows:
            return
        ids = [row[0] for row in rows]
        deliveries = await _deliveries(conn, ids)
        timelines = await _timelines(conn, ids)
        yield [_red_withheld(case) if case["tlp"] == "RED" and not include_red else case
               for case in (_case(row, deliveries.get(row[0], []), timelines.get(row[0], []))
                            for row in rows)]
        if len(rows) < size:
            return
        after = ids[-1]


async def _deliveries(conn: aiosqlite.Connection,
                      case_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    rows = await conn.execute_fetchall(
        "SELECT d.case_id, d.post, d.room_id, d.state, d.routed_ms, o.sent_ms, o.event_id,"
        " d.acknowledged_ms, d.acknowledged_by, d.answered_ms, d.answered_by,"
        " d.seen_ms, d.seen_by, COALESCE(d.due_ms, c.due_ms), d.refused_ms, d.refusal_reason"
        " FROM deliveries d JOIN cases c ON c.id = d.case_id"
        " LEFT JOIN outbox o ON o.txn_id = d.relay_txn_id"
        f" WHERE d.case_id IN ({_placeholders(case_ids)}) ORDER BY d.id",
        case_ids,
    )
    deliveries: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        deliveries.setdefault(row[0], []).append({
            "post": row[1], "room_id": row[2], "state": row[3], "routed": iso(row[4]),
            "sent": iso(row[5]), "relayed_event_id": row[6], "seen": iso(row[11]),
            "seen_by": row[12], "acknowledged": iso(row[7]),
            "acknowledged_by": row[8], "answered": iso(row[9]), "answered_by": row[10],
            "seconds_to_acknowledge": _seconds(row[4], row[7]),
            "seconds_to_answer": _seconds(row[4], row[9]),
            "answer_due": iso(row[13]), "on_time": on_time(row[13], row[9]),
            "refused": iso(row[14]), "refusal_reason": row[15],
        })
    return deliveries


async def _timelines(conn: aiosqlite.Connection,
                     case_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    rows = await conn.execute_fetchall(
        "SELECT case_id, ms, kind, post, actor, detail FROM timeline"
        f" WHERE case_id IN ({_placeholders(case_ids)}) ORDER BY case_id, id",
        case_ids,
    )
    timelines: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        timelines.setdefault(row[0], []).append({
            "time": iso(row[1]), "kind": row[2], "post": row[3], "actor": row[4],
            "detail": json.loads(row[5]),
        })
    return timelines


def _placeholders(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def _case(row: aiosqlite.Row, deliveries: list[dict[str, Any]],
          timeline: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "ref": row[1], "kind": row[2], "origin_post": row[3], "origin_room": row[4],
        "origin_sender": row[5], "origin_event_id": row[6], "priority": row[7], "tlp": row[8],
        "category": row[9], "grading": row[10], "related_ref": row[11],
        "fields": json.loads(row[12]), "text": row[13], "due": iso(row[14]), "state": row[15],
        "forwardable": bool(row[16]), "created": iso(row[17]), "closed": iso(row[18]),
        "closed_by": row[19], "outcome": row[20], "purged": iso(row[21]),
        "deadline_class": row[22], "handling": row[23], "handling_text": row[24],
        "action": row[25], "deliveries": deliveries, "timeline": timeline,
    }


def _red_withheld(case: dict[str, Any]) -> dict[str, Any]:
    """A TLP:RED case without its content: ids, times, codes and who, as the audit log."""
    return {**case, "fields": [], "text": "", "outcome": None, "handling_text": None,
            "red_content": "withheld",
            "timeline": [{**entry, "detail": recordable(entry["detail"])}
                         for entry in case["timeline"]]}


def _seconds(start_ms: int | None, end_ms: int | None) -> float | None:
    if start_ms is None or end_ms is None:
        return None
    return round((end_ms - start_ms) / 1000, 3)


async def audit_batches(conn: aiosqlite.Connection, *,
                        since_ms: int | None = None) -> AsyncIterator[list[dict[str, Any]]]:
    """Audit entries at or after `since_ms`, in order, as the JSON export has them,
    `BATCH_SIZE` at a time (inside one read transaction, as `case_batches`)."""
    size, after = BATCH_SIZE, 0
    while True:
        entries = await audit.entries(conn, since_ms=since_ms, after_seq=after, limit=size)
        if not entries:
            return
        yield [{"time": iso(entry.ts_ms), **entry.as_dict()} for entry in entries]
        if len(entries) < size:
            return
        after = entries[-1].seq


class Document(Protocol):
    """An export's text, made a batch at a time: `opening()`, then `items(batch,
    written=...)` for each batch (`written`: how many items came before it), then
    `closing(written=...)` (`written`: all of them)."""

    def opening(self) -> str: ...

    def items(self, items: Sequence[dict[str, Any]], *, written: int) -> str: ...

    def closing(self, *, written: int) -> str: ...


def document(kind: ExportKind, *, as_csv: bool, exported_ms: int,
             since_ms: int | None) -> Document:
    """The document `liaison export` writes, for items from `case_batches` (kind
    "cases") or `audit_batches` ("audit")."""
    if as_csv:
        return CsvDocument(kind)
    return JsonDocument(kind, exported_ms=exported_ms, since_ms=since_ms)


@dataclass(frozen=True)
class JsonDocument:
    """`{"export": kind, "exported": ..., "since": ..., kind: [items]}`, laid out as
    `json.dumps(..., indent=2)` lays out the whole document."""

    kind: ExportKind
    exported_ms: int
    since_ms: int | None

    def opening(self) -> str:
        head = {"export": self.kind, "exported": iso(self.exported_ms),
                "since": iso(self.since_ms)}
        lines = "".join(f"  {_json(key)}: {_json(value)},\n" for key, value in head.items())
        return f"{{\n{lines}  {_json(self.kind)}: ["

    def items(self, items: Sequence[dict[str, Any]], *, written: int) -> str:
        # JSON strings hold no raw newline, so every newline is a line of the layout.
        return "".join(
            ("," if written + index else "") + "\n    "
            + json.dumps(item, ensure_ascii=False, indent=2).replace("\n", "\n    ")
            for index, item in enumerate(items))

    def closing(self, *, written: int) -> str:
        return ("\n  ]" if written else "]") + "\n}\n"


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class CsvDocument:
    """A header, then rows: per delivery for cases, per entry for the audit log (see the
    module docstring)."""

    kind: ExportKind

    def opening(self) -> str:
        return _csv(self._columns(), (), header=True)

    def items(self, items: Sequence[dict[str, Any]], *, written: int) -> str:
        rows = (row for item in items for row in
                (_case_rows(item) if self.kind == "cases" else [_audit_row(item)]))
        return _csv(self._columns(), rows)

    def closing(self, *, written: int) -> str:
        return ""

    def _columns(self) -> Sequence[str]:
        return CASE_CSV_COLUMNS if self.kind == "cases" else AUDIT_CSV_COLUMNS


def _csv(columns: Sequence[str], rows: Iterable[dict[str, Any]], *,
         header: bool = False) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return out.getvalue()


def _case_rows(record: dict[str, Any]) -> Iterable[dict[str, Any]]:
    case = {column: record[column] for column in _CASE_COLUMNS}
    for delivery in record["deliveries"] or [None]:
        yield {**case, **_delivery_columns(delivery)}


def _delivery_columns(delivery: dict[str, Any] | None) -> dict[str, Any]:
    if delivery is None:
        return dict.fromkeys(CASE_CSV_COLUMNS[len(_CASE_COLUMNS):])
    return {"target_post": delivery["post"], "delivery_state": delivery["state"],
            **{column: delivery[column] for column in _DELIVERY_COLUMNS}}


def _audit_row(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "detail": json.dumps(item["detail"], ensure_ascii=False, sort_keys=True,
                                         separators=(",", ":"))}
