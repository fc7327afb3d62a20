"""`CaseDraft`: an alert or request as typed, before routing; its limits, its `key: value`
field lines, and its canonical form (`render_draft`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from liaison.commands.errors import CommandError
from liaison.commands.identifiers import (
    CATEGORY_RE,
    GRADE_RE,
    NEIGHBOURS,
    REF_RE,
    _canonical_target,
    strip_invisible,
)
from liaison.commands.model import Priority, Tlp
from liaison.commands.texts import FIELD_KEYS, OPTION_KEYS, fold_word

CaseKind = Literal["alert", "request"]

FIELD_KEY_RE = re.compile(r"[^\W\d_][\w-]{0,23}")

_MULTI_WORD_FIELD_KEYS: frozenset[str] = frozenset(
    fold_word(typed) for words in FIELD_KEYS.values() for typed in words if " " in typed)
"""Known field keys of two words (`дата рождения`, `تاريخ الميلاد`): read as keys, although
no other key may hold a space."""

_WRITTEN_AS: Mapping[str, tuple[re.Pattern[str], str]] = {
    "category": (CATEGORY_RE, "a category"),
    "grading": (GRADE_RE, "a grading"),
    "ref": (REF_RE, "a case reference"),
}
"""A draft's fields that must be written a certain way: the pattern, and what it is."""

_OPTION_WORDS: Mapping[str, str] = {
    fold_word(word): key for key, words in OPTION_KEYS.items() for word in (key, *words)
}


@dataclass(frozen=True)
class CaseLimits:
    """How much one case may hold; the shell may pass stricter values from the config."""

    max_chars: int = 8000
    max_field_chars: int = 1000
    max_fields: int = 40
    max_targets: int = 32
    max_due_ahead: timedelta = timedelta(days=366)


class CaseDraft(BaseModel):
    """An alert or request as typed, before routing. Its validators state what the
    language can express, so every valid draft survives `render_draft` and back."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: CaseKind
    priority: Priority
    targets: tuple[str, ...] = (NEIGHBOURS,)
    tlp: Tlp
    category: str | None = None
    grading: str | None = None
    ref: str | None = None
    due: datetime | None = None
    fields: tuple[tuple[str, str], ...] = ()
    text: str = ""

    @field_validator("targets")
    @classmethod
    def _check_targets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one target")
        if len(set(value)) != len(value):
            raise ValueError("targets repeat")
        for target in value:
            try:
                canonical = _canonical_target(target)
            except CommandError as error:
                raise ValueError(error.message) from None
            if canonical != target:
                raise ValueError(f"{target!r} is not written canonically ({canonical!r})")
        return value

    @field_validator(*_WRITTEN_AS)
    @classmethod
    def _check_written_as(cls, value: str | None, info: ValidationInfo) -> str | None:
        pattern, what = _WRITTEN_AS[str(info.field_name)]
        if value is not None and not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    @field_validator("due")
    @classmethod
    def _check_due(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError("due must be timezone-aware")
        return value.astimezone(UTC)

    @field_validator("fields")
    @classmethod
    def _check_fields(cls, value: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for key, field_value in value:
            if not is_field_key(key) or fold_word(key) in _OPTION_WORDS:
                raise ValueError(f"{key!r} cannot be a field name")
            if not field_value or field_value != field_value.strip() or _has_break(field_value):
                raise ValueError(f"field {key!r} needs a one-line value without outer spaces")
        return value

    @field_validator("text")
    @classmethod
    def _check_text(cls, value: str) -> str:
        if value != value.strip() or "\r" in value:
            raise ValueError("text must be stripped and use \\n line breaks")
        if value and _field_line(value.split("\n", 1)[0]) is not None:
            raise ValueError("text cannot start with a key: value line")
        return value

    @model_validator(mode="after")
    def _check_case(self) -> CaseDraft:
        if self.due is not None and self.kind != "request":
            raise ValueError("only a request has a due time")
        if not self.fields and not self.text:
            raise ValueError("a case needs fields or text")
        return self


def render_draft(draft: CaseDraft) -> str:
    """Write a draft back as a command in canonical English form; parses to the same draft."""
    head = [f"!{draft.kind}", draft.priority.value, "to:" + ",".join(draft.targets),
            "tlp:" + draft.tlp.value.lower()]
    if draft.category is not None:
        head.append("cat:" + draft.category)
    if draft.grading is not None:
        head.append("grade:" + draft.grading)
    if draft.ref is not None:
        head.append("ref:" + draft.ref)
    if draft.due is not None:
        head.append("due:" + format_due(draft.due))
    lines = [" ".join(head), *(f"{key}: {value}" for key, value in draft.fields)]
    if draft.text:
        lines.append(draft.text)
    return "\n".join(lines)


def format_due(due: datetime) -> str:
    """A deadline as ISO 8601 in UTC (`2026-12-01T13:00Z`), as precise as it needs."""
    utc = due.astimezone(UTC)
    spec = "microseconds" if utc.microsecond else "seconds" if utc.second else "minutes"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def is_field_key(key: str) -> bool:
    """One word (`plate`, `vin-код`), or a known key of two (`дата рождения`)."""
    return bool(FIELD_KEY_RE.fullmatch(key)) or fold_word(key) in _MULTI_WORD_FIELD_KEYS


def _field_line(line: str) -> tuple[str, str] | None:
    """(key, value) when the line reads `key: value` (or `key:` alone, value ""), else None.

    A colon directly followed by text (`http://…`, `18:30`) does not make a field.
    """
    head, sep, value = line.partition(":")
    if not sep or (value and not value[0].isspace()):
        return None
    key = " ".join(strip_invisible(head).split())
    if not is_field_key(key):
        return None
    return key, value.strip()


def _has_break(value: str) -> bool:
    return "\n" in value or "\r" in value
