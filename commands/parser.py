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
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from commands.durations import parse_duration
from commands.errors import CommandError
from commands.localtime import Moment, read_day_clock, starts_day_clock, to_ms, wall_clock
from commands.model import Priority, Tlp
from commands.texts import NEIGHBOUR_WORDS, OPTION_KEYS, PRIORITY_WORDS, Term, fold_word, text

CaseKind = Literal["alert", "request"]

NEIGHBOURS = NEIGHBOUR_WORDS[0]

INVISIBLE = frozenset(
    [*map(chr, range(0x200B, 0x2010)), *map(chr, range(0x202A, 0x202F)),
     *map(chr, range(0x2060, 0x2065)), *map(chr, range(0x2066, 0x206A)),
     "\ufeff", "\u00ad", "\u061c", "\u180e"]
)
"""Zero-width characters and bidi controls: invisible, so never part of an identifier."""

_INVISIBLE_TABLE = dict.fromkeys(map(ord, INVISIBLE))
_INVISIBLE_RE = re.compile("[" + "".join(sorted(INVISIBLE)) + "]")
_ARABIC_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "0123456789" * 2)
# Dashes that word processors and phone keyboards put where a hyphen was typed (KZ–0042
# pasted from a report): in an identifier each can only have meant the hyphen.
_DASHES = str.maketrans(dict.fromkeys(
    "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d", "-"))
_LOOKALIKES = str.maketrans(
    "АВСЕНІЈКМОРЅТХУаеіјорсѕхуΑΒΕΖΗΙΚΜΝΟΡΤΥΧοіԁԛԝ",
    "ABCEHIJKMOPSTXYaeijopcsxyABEZHIKMNOPTYXoidqw",
)

REF_RE = re.compile(r"[A-Z]{2}-[0-9]{4,8}")
GRADE_RE = re.compile(r"[ABCX][1-4]")
CATEGORY_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
FIELD_KEY_RE = re.compile(r"[^\W\d_][\w-]{0,23}")
_TARGET_RE = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_POST_SHAPE_RE = re.compile(r"[A-Za-z]{2}(?:-[A-Za-z0-9]+)*")
_REF_LIKE_RE = re.compile(r"[^\W\d_]{1,4}-?\d{1,12}")
_RELATIVE_RE = re.compile(r"(?:\d+[smhdw])+")
_CLOCK_RE = re.compile(r"(\d{1,2}):(\d{2})")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?"
)

_OPTION_WORDS: Mapping[str, str] = {
    fold_word(word): key for key, words in OPTION_KEYS.items() for word in (key, *words)
}
_PRIORITY_WORDS: Mapping[str, Priority] = {
    fold_word(word): priority for priority, words in PRIORITY_WORDS.items() for word in words
}
_NEIGHBOUR_WORDS = frozenset(fold_word(word) for word in NEIGHBOUR_WORDS)
_OPTION_EXAMPLES: Mapping[str, str] = {
    "to": "to:UZ-TERMEZ,TJ-PANJ",
    "tlp": "tlp:amber",
    "cat": "cat:drugs",
    "grade": "grade:B2",
    "ref": "ref:KZ-0042",
    "due": "due:4h",
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

    @field_validator("category")
    @classmethod
    def _check_category(cls, value: str | None) -> str | None:
        if value is not None and not CATEGORY_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a category")
        return value

    @field_validator("grading")
    @classmethod
    def _check_grading(cls, value: str | None) -> str | None:
        if value is not None and not GRADE_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a grading")
        return value

    @field_validator("ref")
    @classmethod
    def _check_ref(cls, value: str | None) -> str | None:
        if value is not None and not REF_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a case reference")
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
            if not FIELD_KEY_RE.fullmatch(key) or fold_word(key) in _OPTION_WORDS:
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


@dataclass(frozen=True)
class RefCommand:
    """A command about one case (`!close KZ-0042 seized 40 kg`): its reference and text."""

    ref: str
    text: str


# --- identifiers ------------------------------------------------------------------------


def strip_invisible(value: str) -> str:
    """Remove zero-width characters and bidi controls."""
    if value.isascii() or not _INVISIBLE_RE.search(value):
        return value
    return value.translate(_INVISIBLE_TABLE)


def clean_identifier(value: str, what: str) -> str:
    """Strip invisibles and whitespace, read Arabic-Indic digits and typographic dashes
    (as `-`); the result is ASCII.

    Raises CommandError naming the other characters (a Cyrillic `Т` in `UZ-ТЕRMEZ`)
    and suggesting the Latin spelling when there is an obvious one. `what` is the
    message id of the noun ("the target", "the case reference").
    """
    cleaned = strip_invisible(value).strip()
    if cleaned.isascii():
        return cleaned
    cleaned = cleaned.translate(_ARABIC_DIGITS).translate(_DASHES)
    if cleaned.isascii():
        return cleaned
    others = [ch for ch in dict.fromkeys(cleaned) if not ch.isascii()]
    chars = ", ".join(
        f"{ch} (U+{ord(ch):04X} {unicodedata.name(ch, 'UNNAMED')})" for ch in others[:4]
    )
    compatible = unicodedata.normalize("NFKC", cleaned)
    latin = compatible.translate(_LOOKALIKES)
    if not latin.isascii():
        latin = compatible.upper().translate(_LOOKALIKES)
    suggestions = (latin,) if latin.isascii() and latin.strip() else ()
    raise CommandError.of(
        "error.identifier_lookalike", suggestions=suggestions,
        what=Term(what), value=cleaned, chars=chars,
    )


def parse_ref(value: str) -> str:
    """Read a case reference such as `KZ-0042` (any case, spaces around); return it in capitals."""
    cleaned = clean_identifier(value, "noun.ref")
    if not cleaned:
        raise CommandError.of("error.ref_missing")
    upper = cleaned.upper()
    if not REF_RE.fullmatch(upper):
        raise CommandError.of("error.ref_bad", value=cleaned)
    return upper


# --- cases ------------------------------------------------------------------------------


def parse_case(
    kind: CaseKind,
    args: str,
    lines: Sequence[str],
    *,
    now: datetime,
    tz: ZoneInfo,
    default_tlp: Tlp = Tlp.GREEN,
    limits: CaseLimits = CaseLimits(),  # frozen: one shared default is safe
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


def _canonical_target(token: str) -> str:
    """`neighbours` in any language; post ids and countries in capitals; groups in lower case."""
    if fold_word(strip_invisible(token)) in _NEIGHBOUR_WORDS:
        return NEIGHBOURS
    cleaned = clean_identifier(token, "noun.target")
    if len(cleaned) > 40 or not _TARGET_RE.fullmatch(cleaned):
        raise CommandError.of("error.target_bad", value=cleaned)
    return cleaned.upper() if _POST_SHAPE_RE.fullmatch(cleaned) else cleaned.lower()


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


def _field_line(line: str) -> tuple[str, str] | None:
    """(key, value) when the line reads `key: value` (or `key:` alone, value ""), else None.

    A colon directly followed by text (`http://…`, `18:30`) does not make a field.
    """
    head, sep, value = line.partition(":")
    if not sep or (value and not value[0].isspace()):
        return None
    key = strip_invisible(head).strip()
    if not FIELD_KEY_RE.fullmatch(key):
        return None
    return key, value.strip()


def _has_break(value: str) -> bool:
    return "\n" in value or "\r" in value


# --- commands about one case --------------------------------------------------------------

TextRule = Literal["none", "optional", "required"]


def parse_ref_command(
    command: str,
    args: str,
    lines: Sequence[str],
    *,
    text_rule: TextRule,
    context_ref: str | None = None,
    max_chars: int = CaseLimits.max_chars,
) -> RefCommand:
    """Read `REF [text]` for `command`. Without a reference, `context_ref` (the case the
    message replies to, found by the shell) is used; a word that looks like a mistyped
    reference (`KZ-042`, a Cyrillic `К`) is an error, never silently replaced."""
    usage_id = f"command.{command}.usage"
    try:
        return _parse_ref_command(command, args, lines, text_rule=text_rule,
                                  context_ref=context_ref, max_chars=max_chars)
    except CommandError as error:
        raise error.with_usage(text(usage_id), usage_id) from None


def _parse_ref_command(
    command: str,
    args: str,
    lines: Sequence[str],
    *,
    text_rule: TextRule,
    context_ref: str | None,
    max_chars: int,
) -> RefCommand:
    length = len(args) + sum(len(line) + 1 for line in lines)
    if length > max_chars:
        raise CommandError.of("error.case_too_long", length=length, limit=max_chars)
    words = args.split(maxsplit=1)
    first = words[0] if words else ""
    cleaned = strip_invisible(first).translate(_ARABIC_DIGITS)
    if first and (_REF_LIKE_RE.fullmatch(cleaned) or context_ref is None):
        ref = parse_ref(first)
        remainder = [words[1] if len(words) > 1 else "", *lines]
    elif context_ref is not None:
        ref = parse_ref(context_ref)
        remainder = [args, *lines]
    else:
        raise CommandError.of("error.ref_missing")
    body = "\n".join(remainder).replace("\r\n", "\n").replace("\r", "\n").strip()
    if text_rule == "none" and body:
        raise CommandError.of("error.ref_extra", command="!" + command, extra=body.split()[0])
    if text_rule == "required" and not body:
        raise CommandError.of("error.update_empty")
    return RefCommand(ref=ref, text=body)


def parse_ack(args: str, lines: Sequence[str], *, context_ref: str | None = None) -> str:
    """`!ack REF` (or `!ack` in reply to a case, with `context_ref`)."""
    return parse_ref_command("ack", args, lines, text_rule="none", context_ref=context_ref).ref


def parse_cancel(args: str, lines: Sequence[str], *, context_ref: str | None = None) -> str:
    """`!cancel REF`."""
    return parse_ref_command("cancel", args, lines, text_rule="none",
                             context_ref=context_ref).ref


def parse_status(args: str, lines: Sequence[str], *, context_ref: str | None = None) -> str:
    """`!status REF`."""
    return parse_ref_command("status", args, lines, text_rule="none",
                             context_ref=context_ref).ref


def parse_close(
    args: str, lines: Sequence[str], *, context_ref: str | None = None
) -> RefCommand:
    """`!close REF [outcome]`; the outcome may run over several lines."""
    return parse_ref_command("close", args, lines, text_rule="optional", context_ref=context_ref)


def parse_update(
    args: str, lines: Sequence[str], *, context_ref: str | None = None
) -> RefCommand:
    """`!update REF text`; the text is required."""
    return parse_ref_command("update", args, lines, text_rule="required",
                             context_ref=context_ref)
