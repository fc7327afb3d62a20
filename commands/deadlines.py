"""Requests as the law frames them: deadline classes, delays and refusals.

Directive (EU) 2023/977 Art. 5 sets the answer deadlines, counted from receipt: 8 hours
for urgent requests about directly accessible information, 3 calendar days for urgent
requests about indirectly accessible information, 7 calendar days otherwise. A request
names its class with `class:`; the operator may add classes (`sirene: 12h`) and set each
class's longest delay in the config (`requests:`). The requested post may delay its
answer with a declared reason (`!delay REF 2d judicial …`) or refuse with one
(`!refuse REF law …`).

Pure: every time is passed in (epoch milliseconds, IANA zones); nothing here reads a
clock, the database or Matrix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from liaison.commands.durations import Duration, parse_duration
from liaison.commands.errors import CommandError
from liaison.commands.identifiers import REF_RE, declared_word, parse_ref, strip_invisible
from liaison.commands.localtime import Elapsed, Moment
from liaison.commands.texts import fold_word, text

CLASS_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
DAY = timedelta(days=1)


class DeadlineClass(BaseModel):
    """One deadline class: the answer is due `within` of receipt (whole days are calendar
    days in the requested post's zone, anything else elapsed time); the requested post
    may push it back by at most `max_delay` in all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    within: Duration
    max_delay: Duration = Field(default=timedelta(days=3),
                                description="The longest total delay `!delay` may add")
    aliases: tuple[str, ...] = ()


BUILTIN_CLASSES: Mapping[str, DeadlineClass] = {
    "urgent-direct": DeadlineClass(within=timedelta(hours=8), max_delay=timedelta(days=1),
                                   aliases=("direct", "срочный-прямой", "прямой",
                                            "عاجل-مباشر", "مباشر")),
    "urgent-indirect": DeadlineClass(within=timedelta(days=3), max_delay=timedelta(days=7),
                                     aliases=("indirect", "срочный-косвенный", "косвенный",
                                              "عاجل-غير-مباشر", "غير-مباشر")),
    "standard": DeadlineClass(within=timedelta(days=7), max_delay=timedelta(days=14),
                              aliases=("стандарт", "стандартный", "قياسي")),
}
"""Directive (EU) 2023/977 Art. 5: 8 hours, 3 calendar days, 7 calendar days."""

DELAY_REASONS: Mapping[str, tuple[str, ...]] = {
    "judicial": ("суд", "санкция", "قضائي"),
    "agency": ("ведомство", "جهة"),
    "technical": ("технический", "техника", "تقني"),
    "other": ("другое", "أخرى", "اخرى"),
}
"""Why an answer is late: a judicial authorisation is pending, another agency is
awaited, a technical problem, other (explained in the free text)."""

REFUSAL_REASONS: Mapping[str, tuple[str, ...]] = {
    "unavailable": ("нет-данных", "غير-متوفر"),
    "disproportionate": ("несоразмерно", "غير-متناسب"),
    "investigation": ("следствие", "تحقيق"),
    "law": ("закон", "قانون"),
}
"""Why a request is refused: the information is not available, the request is
disproportionate, answering would harm an investigation, the law does not permit it."""


class RequestsConfig(BaseModel):
    """The `requests:` section: operator-defined deadline classes (and the built-in ones
    with another `max_delay`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: dict[str, DeadlineClass] = Field(default_factory=dict)
    max_delay: Duration = Field(default=timedelta(days=3),
                                description="The longest total delay of a request without "
                                "a class")

    @field_validator("classes")
    @classmethod
    def _check_names(cls, value: dict[str, DeadlineClass]) -> dict[str, DeadlineClass]:
        for name in value:
            if not CLASS_NAME_RE.fullmatch(name):
                raise ValueError(f"class name {name!r} must be lower-case letters, digits "
                                 "and dashes, e.g. sirene")
        return value

    def deadline_classes(self) -> dict[str, DeadlineClass]:
        """The built-in classes, then the operator's (which may replace a built-in one)."""
        return {**BUILTIN_CLASSES, **self.classes}


def resolve_class(word: str, classes: Mapping[str, DeadlineClass]) -> str:
    """The class a typed word names (its name or an alias, any case); a CommandError with
    the nearest class otherwise."""
    folded = fold_word(strip_invisible(word).strip())
    words = {fold_word(name): name for name in classes}
    for name, deadline_class in classes.items():
        words.update({fold_word(alias): name for alias in deadline_class.aliases})
    if folded in words:
        return words[folded]
    near = difflib.get_close_matches(folded, list(words), n=1, cutoff=0.5)
    raise CommandError.of("request.error.class_unknown", value=word,
                          suggestions=tuple("class:" + words[match] for match in near),
                          classes=", ".join(classes))


def class_deadline_ms(received_ms: int, deadline_class: DeadlineClass, timezone: str) -> int:
    """When the answer is due: whole days are calendar days (the same wall-clock time that
    many days later in `timezone`, across a change of the clocks), hours elapsed time."""
    within = deadline_class.within
    received = datetime.fromtimestamp(received_ms / 1000, UTC)
    if within % DAY:
        return received_ms + int(within.total_seconds() * 1000)
    local = received.astimezone(ZoneInfo(timezone)).replace(tzinfo=None) + within
    due = _aware(local, ZoneInfo(timezone))
    return int(due.timestamp() * 1000)


def _aware(local: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time in `zone`: one the clocks skip is read with the offset before the
    change (so it lands after it, 02:30 → 03:30), one they pass twice at its first
    occurrence."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def check_due(due_ms: int, *, now_ms: int, name: str, deadline_class: DeadlineClass,
              timezone: str) -> None:
    """`due:` may set an earlier deadline than the class, never a later one."""
    latest = class_deadline_ms(now_ms, deadline_class, timezone)
    if due_ms > latest:
        raise CommandError.of("request.error.due_after_class", name=name,
                              within=Elapsed(deadline_class.within),
                              latest=Moment(latest, timezone))


# --- delays -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DelayCommand:
    """`!delay REF 2d judicial awaiting the prosecutor`."""

    ref: str
    delay: timedelta
    reason: str
    text: str


@dataclass(frozen=True)
class RefusalCommand:
    """`!refuse REF law no legal basis to share`."""

    ref: str
    reason: str
    text: str


def _reason(word: str, reasons: Mapping[str, tuple[str, ...]], msg_id: str) -> str:
    code, near = declared_word(word, reasons, cutoff=0.6)
    if code is not None:
        return code
    raise CommandError.of(msg_id, value=word, codes=", ".join(reasons), suggestions=near)


def _ref_and_words(args: str, lines: Sequence[str], context_ref: str | None
                   ) -> tuple[str, list[str], str]:
    """The case (typed first, or the thread's), the first line's other words, and
    everything typed after them as one text."""
    words = strip_invisible(args).split()
    more = "\n".join(line for line in lines).strip()
    if (words and REF_RE.fullmatch(words[0].upper())) or context_ref is None:
        if not words:
            raise CommandError.of("error.ref_missing")
        return parse_ref(words[0]), words[1:], more
    return parse_ref(context_ref), words, more


def parse_delay(args: str, lines: Sequence[str], *, context_ref: str | None = None
                ) -> DelayCommand:
    """`!delay REF DURATION REASON [text]` (REF may be left out in the case's thread)."""
    usage = text("command.delay.usage")
    try:
        ref, words, more = _ref_and_words(args, lines, context_ref)
        if not words:
            raise CommandError.of("request.error.delay_duration_missing")
        try:
            delay = parse_duration(words[0])
        except ValueError:
            raise CommandError.of("request.error.delay_duration", value=words[0]) from None
        if len(words) < 2:
            raise CommandError.of("request.error.delay_reason_missing",
                                  codes=", ".join(DELAY_REASONS))
        reason = _reason(words[1], DELAY_REASONS, "request.error.delay_reason_unknown")
        said = " ".join(words[2:])
        said = "\n".join(part for part in (said, more) if part)
    except CommandError as error:
        raise error.with_usage(usage, "command.delay.usage") from None
    return DelayCommand(ref=ref, delay=delay, reason=reason, text=said)


def parse_refusal(args: str, lines: Sequence[str], *, context_ref: str | None = None
                  ) -> RefusalCommand:
    """`!refuse REF REASON [text]` (REF may be left out in the case's thread)."""
    usage = text("command.refuse.usage")
    try:
        ref, words, more = _ref_and_words(args, lines, context_ref)
        if not words:
            raise CommandError.of("request.error.refuse_reason_missing",
                                  codes=", ".join(REFUSAL_REASONS))
        reason = _reason(words[0], REFUSAL_REASONS, "request.error.refuse_reason_unknown")
        said = "\n".join(part for part in (" ".join(words[1:]), more) if part)
    except CommandError as error:
        raise error.with_usage(usage, "command.refuse.usage") from None
    return RefusalCommand(ref=ref, reason=reason, text=said)


def delayed_deadline_ms(*, current_due_ms: int, original_due_ms: int, delay: timedelta,
                        name: str | None, deadline_class: DeadlineClass | None,
                        default_max: timedelta) -> int:
    """The new deadline after a delay of `delay` from the current one; a CommandError when
    all delays together would exceed the class's `max_delay` (`default_max` without a
    class)."""
    limit = deadline_class.max_delay if deadline_class is not None else default_max
    new_due = current_due_ms + int(delay.total_seconds() * 1000)
    used = timedelta(milliseconds=current_due_ms - original_due_ms)
    if new_due - original_due_ms > int(limit.total_seconds() * 1000):
        raise CommandError.of("request.error.delay_too_long", delay=Elapsed(delay),
                              name=name or "-", limit=Elapsed(limit),
                              left=Elapsed(max(timedelta(0), limit - used)))
    return new_due


def on_time(due_ms: int | None, answered_ms: int | None) -> bool | None:
    """Whether an answer came by its deadline; None when there is no deadline or answer."""
    if due_ms is None or answered_ms is None:
        return None
    return answered_ms <= due_ms


def class_summary(name: str | None, due_ms: int | None, answered_ms: int | None,
                  timezone: str, language: str) -> str:
    """`class urgent-direct, due 2026-12-07 18:00 +05:00, answered on time` for `!status`
    and `!pending`: the class (if any), the deadline in the reader's zone, on time or
    late once answered."""
    parts = []
    if name is not None:
        parts.append(text("request.class", language, name=name))
    if due_ms is not None:
        parts.append(text("request.due", language, time=Moment(due_ms, timezone)))
    timely = on_time(due_ms, answered_ms)
    if timely is not None:
        parts.append(text("request.on_time" if timely else "request.late", language))
    return ", ".join(parts)
