"""Logs as text for people or JSON lines for machines; structured fields via `extra=`.

Every line written while the bot handles an event or sends a message names where it
happened: the router (`bot.events`) and the outbox worker (`bot.sender`) run that work
inside `log_context(room_id=…, event_id=…, case_ref=…)`, the shell notes the case once
it learns it (`note_case`), and `ContextFilter` copies these fields onto every record
that does not name them itself. Nothing here logs what officers wrote.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

# Attributes every LogRecord has; anything else came from `extra=` and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

CONTEXT_FIELDS = ("room_id", "event_id", "case_ref")
"""The fields `log_context` may set, named as the bot's own `extra=` fields are."""

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("liaison_log_context", default=_EMPTY)

NIO_VALIDATION_PREFIX = "Error validating"
WITHHELD_VALIDATION = ("Error validating an event (details withheld: they quote the event, "
                       "which may be a message)")


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Within the block (and the tasks it starts), log records carry these fields; None
    leaves a field out. Whatever `note_case` added inside is gone after the block."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise TypeError(f"not a log context field: {', '.join(sorted(unknown))}")
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _context.reset(token)


def note_case(ref: str) -> None:
    """The work in hand turned out to be about case `ref`: later lines of the enclosing
    `log_context` block carry it."""
    current = _context.get()
    if current.get("case_ref") != ref:
        _context.set(MappingProxyType({**current, "case_ref": ref}))


def current_case() -> str | None:
    """The case the work in hand is about, if the shell has learnt it."""
    return _context.get().get("case_ref")


class ContextFilter(logging.Filter):
    """Adds the `log_context` fields to a record; a field given with `extra=` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class WithholdEventDetails(logging.Filter):
    """matrix-nio logs an event (or a decrypted Olm payload) that fails its schema check
    with the offending content, and a decrypted one holds what an officer wrote: keep the
    line, drop the quote."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("nio") and isinstance(record.msg, str) \
                and record.msg.startswith(NIO_VALIDATION_PREFIX):
            record.msg = WITHHELD_VALIDATION
            record.args = None
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return text


def log_handler(fmt: str, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing `fmt` (`text` or `json`) lines, with the context fields."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(WithholdEventDetails())
    return handler


def setup_logging(level: str, fmt: str) -> None:
    root = logging.getLogger()
    root.handlers[:] = [log_handler(fmt)]
    root.setLevel(level.upper())
    # nio logs decrypted event details; aiosqlite every statement; apscheduler every wake-up.
    for noisy in ("nio", "peewee", "aiohttp.access", "aiosqlite", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
