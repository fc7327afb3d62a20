"""How chasing reads: reminders in the target room, escalations to supervisors, the
"it was taken" notice, `!snooze`, `!escalations` and `!report`.

Pure functions to `Notice`s, in the reader's language and time zone. A reminder
mentions the target post's duty officers; an escalation mentions only the
supervisors it is for. A summary of the case (its first field or line) is quoted
only to readers at the origin or target post; anyone else (a regional centre's
room) reads the reference, the posts and the times, never the content.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

from liaison.commands.case_render import BULLET, case_label, case_moment, case_title, post_label
from liaison.commands.chasing import Phase, Recipient, TakenReason
from liaison.commands.durations import format_duration
from liaison.commands.localtime import Elapsed, Moment, format_elapsed, format_time
from liaison.commands.model import Post
from liaison.commands.records import Case, Delivery
from liaison.commands.render import (
    Code,
    Line,
    Mention,
    Notice,
    Relayed,
    Span,
    Strong,
    render_notice,
)
from liaison.commands.report import PostReport
from liaison.commands.texts import field_key, text

SUMMARY_CHARS = 160
"""A reminder or escalation quotes this much of the case."""


def _language(reader: Post | None) -> str:
    return reader.language if reader is not None else "en"


def _timezone(reader: Post | None) -> str:
    return reader.timezone if reader is not None else "UTC"


def case_summary(case: Case, language: str = "en") -> Relayed | None:
    """The case's first field (a known key in `language`), or the first line of its text,
    cut short."""
    if case.fields:
        key, value = case.fields[0]
        return Relayed(f"{field_key(key, language)}: {value}", max_chars=SUMMARY_CHARS)
    first = case.text.strip().split("\n", 1)[0] if case.text.strip() else ""
    return Relayed(first, max_chars=SUMMARY_CHARS) if first else None


def elapsed(ms: int) -> str:
    """`15m`, `1h30m`, `45s`: whole minutes from a minute on, seconds below that."""
    return format_duration(timedelta(milliseconds=_whole(ms)))


def _whole(ms: int) -> int:
    """Whole minutes from a minute on, whole seconds below that."""
    ms = max(0, ms)
    return ms - ms % 60_000 if ms >= 60_000 else ms - ms % 1000


def _late_line(due_ms: int, reader: Post | None) -> str:
    return text("chase.late", _language(reader), time=Moment(due_ms, _timezone(reader)))


# --- reminders --------------------------------------------------------------------------


def render_reminder(case: Case, phase: Phase, *, due_ms: int, answer_due_ms: int | None,
                    target: Post | None, posts: Mapping[str, Post], late: bool,
                    snooze: timedelta = timedelta(minutes=30)) -> Notice:
    """The reminder in the target room: the case, its duty officers mentioned, what to do
    (`snooze`: the `!snooze` it suggests, one the policy accepts)."""
    hold_off = Code(f"!snooze {case.ref} {format_duration(snooze)}")
    language, timezone = _language(target), _timezone(target)
    origin = post_label(case.origin_post, posts, language)
    title = case_title(case, language)
    if phase is Phase.ACK:
        headline = text("chase.remind.ack", language, ref=case.ref, title=title, origin=origin,
                        time=case_moment(case.created_ms, case, timezone, posts))
    else:
        headline = text("chase.remind.answer", language, ref=case.ref, title=title,
                        origin=origin,
                        due=case_moment(answer_due_ms or due_ms, case, timezone, posts))
    lines: list[Line] = [[case_label(case, language), " ", Strong(headline)]]
    summary = case_summary(case, language)
    if summary is not None:
        lines.append(summary)
    duty = target.duty_officers if target is not None else ()
    if duty:
        lines.append(_mentions(text("chase.remind.duty", language), duty))
    if phase is Phase.ACK:
        lines.append([text("chase.remind.ack_hint", language) + " ", Code(f"!ack {case.ref}"),
                      " " + text("chase.remind.snooze_hint", language) + " ", hold_off])
    else:
        lines.append([text("chase.remind.answer_hint", language) + " ", hold_off])
    if late:
        lines.append(_late_line(due_ms, target))
    return render_notice(*lines, language=language)


def _mentions(label: str, users: Sequence[str]) -> list[Span]:
    spans: list[Span] = [label]
    for user in users:
        spans += [" ", Mention(user)]
    return spans


# --- escalations ------------------------------------------------------------------------


def render_escalation(case: Case, phase: Phase, recipient: Recipient, *, target_post: str,
                      routed_ms: int, due_ms: int, answer_due_ms: int | None, now_ms: int,
                      posts: Mapping[str, Post], late: bool) -> Notice:
    """An escalation as one recipient reads it."""
    reader = recipient.reader
    language, timezone = _language(reader), _timezone(reader)
    params = {"ref": case.ref, "title": case_title(case, language),
              "origin": post_label(case.origin_post, posts, language),
              "target": post_label(target_post, posts, language)}
    if phase is Phase.ACK:
        headline = text("chase.escalate.ack", language,
                        elapsed=Elapsed(timedelta(milliseconds=_whole(now_ms - routed_ms))),
                        time=case_moment(routed_ms, case, timezone, posts), **params)
    else:
        headline = text("chase.escalate.answer", language,
                        due=case_moment(answer_due_ms or due_ms, case, timezone, posts), **params)
    lines: list[Line] = [[case_label(case, language), " ", Strong(headline)]]
    summary = case_summary(case, language) if recipient.insider else None
    if summary is not None:
        lines.append(summary)
    if recipient.mentions:
        lines.append(_mentions(text("chase.escalate.for", language), recipient.mentions))
    if late:
        lines.append(_late_line(due_ms, reader))
    lines.append(text("chase.escalate.footer", language))
    return render_notice(*lines, language=language)


def render_taken(case: Case, reason: TakenReason, delivery: Delivery | None, *,
                 reader: Post | None, posts: Mapping[str, Post]) -> Notice:
    """Told to the rooms an escalation reached, once the case is taken."""
    language, timezone = _language(reader), _timezone(reader)
    target = delivery.post if delivery is not None else ""
    params: dict[str, object] = {
        "ref": case.ref, "origin": post_label(case.origin_post, posts, language),
        "target": post_label(target, posts, language), "who": "", "time": ""}
    if reason == "answered" and delivery is not None and delivery.answered_ms is not None:
        params.update(who=delivery.answered_by, time=Moment(delivery.answered_ms,
                                                                 timezone))
    elif reason == "acknowledged" and delivery is not None \
            and delivery.acknowledged_ms is not None:
        params.update(who=delivery.acknowledged_by,
                      time=Moment(delivery.acknowledged_ms, timezone))
    elif case.closed_ms is not None:
        params.update(time=Moment(case.closed_ms, timezone))
    return render_notice([case_label(case, language), " ", text(f"chase.taken.{reason}", language,
                                                         **params)], language=language)


# --- !snooze, !escalations, !report -----------------------------------------------------


def render_snoozed(case: Case, until_ms: int, *, reader: Post) -> Notice:
    return render_notice(text("chase.snoozed", reader.language, ref=case.ref,
                              time=Moment(until_ms, reader.timezone)), language=reader.language)


def render_escalations(items: Sequence[tuple[Case, Phase, str, Sequence[int]]], *,
                       posts: Mapping[str, Post], language: str, timezone: str) -> Notice:
    """`!escalations`: each open escalation (case, phase, target post, when it fired)."""
    if not items:
        return render_notice(text("chase.escalations.none", language), language=language)
    lines: list[Line] = [text("chase.escalations.title", language)]
    for case, phase, target, fired in items:
        lines.append([BULLET, case_label(case, language), " ", Code(case.ref), " ", text(
            "chase.escalations.item", language, title=case_title(case, language),
            origin=post_label(case.origin_post, posts, language),
            target=post_label(target, posts, language),
            state=text(f"chase.escalations.state.{phase.value}", language),
            when=", ".join(format_time(ms, timezone, language) for ms in fired))])
    return render_notice(*lines, language=language)


def _share(part: int, whole: int) -> str:
    return "-" if whole == 0 else f"{round(100 * part / whole)}%"


def _figure(ms: int | None, language: str) -> str:
    return (text("chase.report.none", language) if ms is None
            else format_elapsed(timedelta(milliseconds=_whole(ms)), language))


def render_report(reports: Sequence[PostReport], *, period: str, since_ms: int, now_ms: int,
                  posts: Mapping[str, Post], language: str, timezone: str,
                  late: bool = False) -> Notice:
    """`!report`, and the scheduled reports: one block per post; a scheduled one sent
    after the bot was down (`late`) says so."""
    lines: list[Line] = [Strong(text("chase.report.title", language, period=period,
                                     since=Moment(since_ms, timezone),
                                     until=Moment(now_ms, timezone)))]
    for report in reports:
        lines += [
            Strong(post_label(report.post, posts, language)),
            BULLET + text("chase.report.cases", language, sent=report.sent,
                          received=report.received),
            BULLET + text("chase.report.ack", language, count=report.acknowledged,
                          total=report.received, median=_figure(report.ack_median_ms, language),
                          p90=_figure(report.ack_p90_ms, language)),
            BULLET + text("chase.report.answer", language, count=report.answered,
                          total=report.requests,
                          median=_figure(report.answer_median_ms, language),
                          p90=_figure(report.answer_p90_ms, language)),
            BULLET + text("chase.report.overdue", language, overdue=report.overdue,
                          escalations=report.escalations),
        ]
        lines += [BULLET + text("report.on_time", language, name=figure.deadline_class,
                                on_time=figure.on_time, answered=figure.answered,
                                share=_share(figure.on_time, figure.answered))
                  for figure in report.on_time]
    if late:
        lines.append(text("chase.late", language, time=Moment(now_ms, timezone)))
    return render_notice(*lines, language=language)
