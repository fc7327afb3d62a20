"""The case language officers type: `!alert` and `!request`, and the commands that
take a case reference (`!ack`, `!update`, `!close`, `!cancel`, `!status`).

```
!alert urgent to:UZ-TERMEZ,TJ-PANJ tlp:amber cat:drugs grade:B2
vehicle: white Kamaz, plate 01A123BC
route: Hairatan -> Termez
Suspected heroin in a cement load.
```

The first line holds the priority, then `key:value` options. The lines after it
start with `key: value` fields, and the first line that is not a field begins the
free text. Parsing is pure: `now` and the sender's time zone are passed in, and
every rejection is a `CommandError` with the usage line attached.

Identifiers (post ids, references, grades, categories) must be plain ASCII once
invisible characters (bidi controls, zero-width characters) are stripped and
Arabic-Indic digits are read as digits; look-alike letters from other scripts are
refused with a suggestion, never silently matched.

The parts: `commands.identifiers` (identifiers and targets), `commands.case_draft` (the
draft, its limits and field lines, `render_draft`), `commands.ref_commands` (`REF [text]`
commands); this module reads the case language (`parse_case`) and re-exports them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from liaison.commands.case_draft import (
    _OPTION_WORDS,
    FIELD_KEY_RE,
    CaseDraft,
    CaseKind,
    CaseLimits,
    _field_line,
    format_due,
    render_draft,
)
from liaison.commands.durations import parse_duration
from liaison.commands.errors import CommandError
from liaison.commands.identifiers import (
    _ARABIC_DIGITS,
    CATEGORY_RE,
    GRADE_RE,
    INVISIBLE,
    NEIGHBOURS,
    REF_RE,
    _canonical_target,
    clean_identifier,
    parse_ref,
    strip_invisible,
)
from liaison.commands.localtime import Moment, read_day_clock, starts_day_clock, to_ms, wall_clock
from liaison.commands.model import Priority, Tlp
from liaison.commands.ref_commands import (
    RefCommand,
    TextRule,
    parse_ack,
    parse_cancel,
    parse_close,
    parse_ref_command,
    parse_status,
    parse_update,
)
from liaison.commands.texts import OPTION_KEYS, PRIORITY_WORDS, fold_word, text

_RELATIVE_RE = re.compile(r"(?:\d+[smhdw])+")
_CLOCK_RE = re.compile(r"(\d{1,2}):(\d{2})")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?"
)

_PRIORITY_WORDS: Mapping[str, Priority] = {
    fold_word(word): priority for priority, words in PRIORITY_WORDS.items() for word in words
}
_OPTION_EXAMPLES: Mapping[str, str] = {
    "to": "to:UZ-TERMEZ,TJ-PANJ",
    "tlp": "tlp:amber",
    "cat": "cat:drugs",
    "grade": "grade:B2",
    "ref": "ref:KZ-0042",
    "due": "due:4h",
}


def parse_case(
    kind: CaseKind,
    args: str,
    lines: Sequence[str],
    *,
    now: datetime,
    tz: ZoneInfo,
    default_tlp: Tlp = Tlp.GREEN,
    limits: CaseLimits = CaseLimits(),  # noqa: B008 (frozen: one shared default is safe)
) -> CaseDraft:
    """Parse `!alert`/`!request` arguments and following lines into a CaseDraft.

    `now` is aware; `tz` is the sender's post's zone, used for clock times in `due:`.
    Raises CommandError (with the command's usage line) for anything it cannot read.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    try:
        return _parse_case(kind, args, lines, now=now, tz=tz, default_tlp=default_tlp,
                           limits=limits)
    except CommandError as error:
        raise error.with_usage(text(f"command.{kind}.usage"), f"command.{kind}.usage") from None


def _parse_case(
    kind: CaseKind,
    args: str,
    lines: Sequence[str],
    *,
    now: datetime,
    tz: ZoneInfo,
    default_tlp: Tlp,
    limits: CaseLimits,
) -> CaseDraft:
    length = len(args) + sum(len(line) + 1 for line in lines)
    if length > limits.max_chars:
        raise CommandError.of("error.case_too_long", length=length, limit=limits.max_chars)
    first, *rest = "\n".join([args, *lines]).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    tokens = strip_invisible(first).split()
    if not tokens:
        raise CommandError.of("error.priority_missing")
    priority = _priority(tokens[0])
    options = _options(tokens[1:])
    if "due" in options and kind != "request":
        raise CommandError.of("error.due_on_alert")
    # Options are checked before the body, so first-line mistakes are reported first.
    targets = _targets(options["to"], limits) if "to" in options else (NEIGHBOURS,)
    tlp = _tlp(options["tlp"]) if "tlp" in options else default_tlp
    category = _category(options["cat"]) if "cat" in options else None
    grading = _grading(options["grade"]) if "grade" in options else None
    ref = parse_ref(options["ref"]) if "ref" in options else None
    due = _due(options["due"], now=now, tz=tz, limits=limits) if "due" in options else None
    fields, free_text = _body(rest, kind, limits)
    if not fields and not free_text:
        raise CommandError.of("error.case_empty", kind=kind)
    return CaseDraft(kind=kind, priority=priority, targets=targets, tlp=tlp, category=category,
                     grading=grading, ref=ref, due=due, fields=fields, text=free_text)


def _priority(token: str) -> Priority:
    folded = fold_word(token)
    priority = _PRIORITY_WORDS.get(folded)
    if priority is not None:
        return priority
    if ":" in token:
        raise CommandError.of("error.priority_not_first", token=token)
    near = difflib.get_close_matches(folded, list(_PRIORITY_WORDS), n=1, cutoff=0.6)
    suggestions = tuple(_PRIORITY_WORDS[word].value for word in near)
    raise CommandError.of("error.priority_unknown", suggestions=suggestions, word=token)


def _option_key(token: str) -> str | None:
    head, sep, _ = token.partition(":")
    return _OPTION_WORDS.get(fold_word(head)) if sep else None


def _options(tokens: list[str]) -> dict[str, str]:
    """First-line `key:value` options by canonical key, tolerating the spaces phones add:
    `to: UZ-TERMEZ`, `to:UZ-TERMEZ, TJ-PANJ`, `due:2026-12-01 18:00`."""
    options: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        head, sep, value = token.partition(":")
        if not sep:
            raise _unexpected_word(token, tokens[index] if index < len(tokens) else "")
        key = _OPTION_WORDS.get(fold_word(head))
        if key is None:
            near = difflib.get_close_matches(fold_word(head), list(_OPTION_WORDS), n=2,
                                             cutoff=0.5)
            raise CommandError.of(
                "error.option_unknown",
                suggestions=tuple(dict.fromkeys(_OPTION_WORDS[word] + ":" for word in near)),
                key=head, options=", ".join(key + ":" for key in OPTION_KEYS),
            )
        while index < len(tokens) and _continues(key, value, tokens[index]):
            joiner = " " if key == "due" and value else ""
            value = value + joiner + tokens[index]
            index += 1
        if key in options:
            raise CommandError.of("error.option_twice", key=key)
        if not value.strip():
            raise CommandError.of("error.option_empty", key=key, example=_OPTION_EXAMPLES[key])
        options[key] = value
    return options


def _continues(key: str, value: str, following: str) -> bool:
    """Whether the next first-line token still belongs to this option's value."""
    if _option_key(following) is not None:
        return False
    if not value:
        return True
    if key == "to":
        return value.endswith(",") or following.startswith(",")
    return key == "due" and bool(_DATE_RE.fullmatch(value) or starts_day_clock(value)) and bool(
        _CLOCK_RE.fullmatch(following.translate(_ARABIC_DIGITS)))


def _unexpected_word(token: str, following: str) -> CommandError:
    key = _OPTION_WORDS.get(fold_word(token))
    suggestions = (f"{key}:{following}",) if key and following else ()
    return CommandError.of("error.word_unexpected", suggestions=suggestions, word=token)


def _targets(value: str, limits: CaseLimits) -> tuple[str, ...]:
    parts = [part.strip() for part in strip_invisible(value).split(",")]
    targets = tuple(dict.fromkeys(_canonical_target(part) for part in parts if part))
    if not targets:
        raise CommandError.of("error.targets_empty")
    if len(targets) > limits.max_targets:
        raise CommandError.of("error.targets_too_many", count=len(targets),
                              limit=limits.max_targets)
    return targets


def _tlp(value: str) -> Tlp:
    cleaned = strip_invisible(value).strip()
    try:
        if not cleaned.isascii():
            raise ValueError(cleaned)
        return Tlp.parse(cleaned)
    except ValueError:
        raise CommandError.of("error.tlp_unknown", value=cleaned) from None


def _grading(value: str) -> str:
    cleaned = clean_identifier(value, "noun.grade")
    if not GRADE_RE.fullmatch(cleaned.upper()):
        raise CommandError.of("error.grade_unknown", value=cleaned)
    return cleaned.upper()


def _category(value: str) -> str:
    cleaned = clean_identifier(value, "noun.category").lower()
    if not CATEGORY_RE.fullmatch(cleaned):
        raise CommandError.of("error.category_bad", value=cleaned)
    return cleaned


def _due(value: str, *, now: datetime, tz: ZoneInfo, limits: CaseLimits) -> datetime:
    """A request's deadline: `4h`/`90m` from now, a clock time today or tomorrow
    (`18:00`, `tomorrow 09:00`, `завтра 09:00`, `غدا 09:00`) or a date-time in `tz` (an
    ISO 8601 offset or `Z` overrides `tz`). Never in the past, never a wall-clock time
    the clocks skip or pass twice."""
    cleaned = " ".join(strip_invisible(value).translate(_ARABIC_DIGITS).split())
    unreadable = CommandError.of("error.due_unreadable", value=cleaned)
    upper = cleaned.upper()
    try:
        if cleaned.isascii() and _RELATIVE_RE.fullmatch(cleaned.lower()):
            delta = parse_duration(cleaned)
            if delta > limits.max_due_ahead:
                raise CommandError.of("error.due_too_far", value=cleaned,
                                      days=limits.max_due_ahead.days)
            return (now + delta).astimezone(UTC)
        day_clock = read_day_clock(cleaned, now=now, tz=tz)
        if day_clock is not None:
            due = day_clock
        elif cleaned.isascii() and _DATETIME_RE.fullmatch(upper):
            parsed = datetime.fromisoformat(upper.replace(" ", "T"))
            due = parsed if parsed.tzinfo is not None else wall_clock(
                parsed.date(), parsed.hour, parsed.minute, tz, cleaned).replace(
                second=parsed.second, microsecond=parsed.microsecond)
        else:
            raise unreadable
        due = due.astimezone(UTC)
    except (ValueError, OverflowError):
        raise unreadable from None
    if due <= now:
        raise CommandError.of("error.due_past", value=cleaned,
                              now=Moment(to_ms(now), tz.key), tz=tz.key)
    if due - now > limits.max_due_ahead:
        raise CommandError.of("error.due_too_far", value=cleaned, days=limits.max_due_ahead.days)
    return due


def _body(
    rest: list[str], kind: CaseKind, limits: CaseLimits
) -> tuple[tuple[tuple[str, str], ...], str]:
    """Split the lines after the first into fields and free text."""
    fields: list[tuple[str, str]] = []
    index = 0
    while index < len(rest):
        line = rest[index]
        if line.strip():
            field = _field_line(line)
            if field is None:
                break
            key, value = field
            option = _OPTION_WORDS.get(fold_word(key))
            if option is not None:
                raise CommandError.of("error.field_is_option", key=key,
                                      example=f"!{kind} urgent {_OPTION_EXAMPLES[option]}")
            if not value:
                raise CommandError.of("error.field_no_value", key=key)
            if len(value) > limits.max_field_chars:
                raise CommandError.of("error.field_too_long", key=key, length=len(value),
                                      limit=limits.max_field_chars)
            fields.append(field)
        index += 1
    if len(fields) > limits.max_fields:
        raise CommandError.of("error.fields_too_many", count=len(fields),
                              limit=limits.max_fields)
    return tuple(fields), "\n".join(rest[index:]).strip()


__all__ = [
    "CATEGORY_RE",
    "FIELD_KEY_RE",
    "GRADE_RE",
    "INVISIBLE",
    "NEIGHBOURS",
    "REF_RE",
    "CaseDraft",
    "CaseKind",
    "CaseLimits",
    "RefCommand",
    "TextRule",
    "clean_identifier",
    "format_due",
    "parse_ack",
    "parse_cancel",
    "parse_case",
    "parse_close",
    "parse_ref",
    "parse_ref_command",
    "parse_status",
    "parse_update",
    "render_draft",
    "strip_invisible",
]
