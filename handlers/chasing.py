"""The chasing commands — where each is handled:

- `!snooze REF DURATION`: `snooze` (the target post holds off its own chase)
- `!escalations`: `escalations` (supervisors: open escalations for their posts)
- `!report [PERIOD]`: `report` (supervisors: response times per post)

Like the case commands they run inside the command event's transaction (see
`handlers.context`). The timing is decided in `commands.chasing`, the report figures in
`commands.report`; this module reads and writes `storage.chasing`.

Supervisors are the users listed under any post's `supervisors`; they see their own
posts (as target or origin). Administrators (`access.admins`) see every post's figures.
What the answer shows is also limited by who reads the room (`commands.audience`): in a
post's room only the escalations of cases that post works and only its own figures; all
of them only in the supervisor's direct room with the bot or their supervisors' room.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import aiosqlite

from liaison.commands.access import SUPERVISOR_ROOMS
from liaison.commands.audience import post_figures_visible
from liaison.commands.chase_render import render_escalations, render_report, render_snoozed
from liaison.commands.chasing import Phase, phase_live, plan_delivery, snooze_allowed, snoozed
from liaison.commands.durations import format_duration, parse_duration
from liaison.commands.errors import CommandError
from liaison.commands.localtime import Elapsed
from liaison.commands.model import Post, Priority
from liaison.commands.parser import parse_ref
from liaison.commands.quiet_hours import QuietHours
from liaison.commands.records import Case, TimelineKind
from liaison.commands.registry import CommandRegistry, CommandSpec, Invocation, Reply, Role
from liaison.commands.render import Notice, render_notice
from liaison.commands.report import MAX_REPORT_DAYS
from liaison.commands.report_chart import CHART_KIND, chart_request, without_chart
from liaison.commands.texts import text
from liaison.config import Config
from liaison.handlers.context import Services
from liaison.storage import cases, chasing

DEFAULT_REPORT_PERIOD = "7d"


def register_chasing_commands(registry: CommandRegistry) -> None:
    """Declare `!snooze`, `!escalations` and `!report` on `registry`."""
    registry.register(CommandSpec.declare("snooze", snooze))
    registry.register(CommandSpec.declare("escalations", escalations, role=Role.SUPERVISOR))
    registry.register(CommandSpec.declare("report", report, role=Role.SUPERVISOR))


# --- !snooze ----------------------------------------------------------------------------


async def snooze(invocation: Invocation) -> Reply:
    services = _services(invocation)
    post = services.config.post_by_room(invocation.room_id)
    if post is None:
        raise CommandError.of("error.case_room_not_post")
    ref, duration = _snooze_args(invocation)
    conn = services.conn
    case = await cases.case_by_ref(conn, ref)
    delivery = None if case is None else await cases.delivery_for(conn, case.id, post.id)
    if case is not None and case.origin_post == post.id:
        raise CommandError.of("chase.error.snooze_own", ref=ref)
    if case is None or delivery is None:
        raise CommandError.of("error.case_unknown", ref=ref)
    policy = services.config.chasing.policies.of(case.priority)
    if not snooze_allowed(duration, policy):
        raise CommandError.of("chase.error.snooze_too_long", priority=case.priority.value,
                              limit=Elapsed(policy.snooze_max))
    now_ms = _ms(invocation)
    await plan_now(conn, services.config, delivery.id, now_ms=now_ms)
    pending = [record for record in await chasing.steps_of(conn, delivery.id)
               if record.state == "pending"
               and phase_live(record.step.phase, record.delivery.subject)]
    if not pending:
        raise CommandError.of("chase.error.snooze_nothing", ref=ref)
    until_ms = now_ms + int(duration.total_seconds() * 1000)
    quiet = QuietHours.parse(post.quiet_hours) if post.quiet_hours else None
    moved = snoozed({record.step.key: record.step.due_ms for record in pending},
                    until_ms=until_ms, routine=case.priority is Priority.ROUTINE,
                    quiet_hours=quiet, timezone=post.timezone)
    await chasing.reschedule(conn, {record.id: moved[record.step.key] for record in pending})
    await cases.add_timeline(conn, case.id, TimelineKind.SNOOZED, ms=now_ms, post=post.id,
                               actor=invocation.sender,
                               detail={"until_ms": until_ms, "for": format_duration(duration)})
    return render_snoozed(case, min(moved.values()), reader=post)


def _snooze_args(invocation: Invocation) -> tuple[str, timedelta]:
    words = invocation.args.split()
    if len(words) != 2 or any(line.strip() for line in invocation.lines):
        raise invocation.command.usage_error(CommandError.of("chase.error.snooze_args"),
                                             invocation.language)
    try:
        ref = parse_ref(words[0])
        try:
            duration = parse_duration(words[1])
        except ValueError:
            raise CommandError.of("chase.error.duration", value=words[1]) from None
    except CommandError as error:
        raise invocation.command.usage_error(error, invocation.language) from None
    return ref, duration


async def plan_now(conn: aiosqlite.Connection, config: Config, delivery_id: int, *,
                   now_ms: int) -> None:
    """Plan the delivery's chase if the chaser has not yet (a snooze right after routing)."""
    for delivery in await chasing.unplanned_deliveries(conn, delivery_id=delivery_id):
        steps = plan_delivery(delivery.subject, config.post_by_id(delivery.post),
                              config.chasing.policies)
        await chasing.save_plan(conn, delivery.delivery_id, steps, now_ms=now_ms)


# --- !escalations -----------------------------------------------------------------------


async def escalations(invocation: Invocation) -> Reply:
    services = _services(invocation)
    supervised = _supervised_posts(invocation, services.config)
    conn = services.conn
    grouped: dict[tuple[int, Phase], list[chasing.StepRecord]] = {}
    for record in await chasing.fired_escalations(conn, posts=[p.id for p in supervised]):
        if phase_live(record.step.phase, record.delivery.subject):
            key = (record.delivery.delivery_id, record.step.phase)
            grouped.setdefault(key, []).append(record)
    items: list[tuple[Case, Phase, str, list[int]]] = []
    for (_, phase), records in grouped.items():
        case = await cases.case_by_id(conn, records[0].delivery.case_id)
        disclosure = None if case is None else await services.disclosure(invocation.room_id,
                                                                         case)
        if case is not None and disclosure is not None:
            await services.record_disclosure(disclosure, case, asked_by=invocation.sender,
                                             shown="escalations")
            items.append((case, phase, records[0].delivery.post,
                          [record.done_ms or 0 for record in records]))
    language, timezone = _reader(invocation, services.config, supervised)
    notice = render_escalations(items, posts=_posts(services.config), language=language,
                                timezone=timezone)
    return _with_audience_hint(notice, invocation, services)


# --- !report ----------------------------------------------------------------------------


async def report(invocation: Invocation) -> Reply:
    services = _services(invocation)
    supervised = _supervised_posts(invocation, services.config)
    audience = services.audience(invocation.room_id)
    posts = _posts(services.config)
    supervised = [post for post in supervised if post_figures_visible(
        audience, post.id, posts, services.config.access.admins)]
    period, length = _period(invocation)
    now_ms = _ms(invocation)
    since_ms = now_ms - int(length.total_seconds() * 1000)
    ids = [post.id for post in supervised]
    conn = services.conn
    reports = await chasing.post_reports(conn, ids, policies=services.config.chasing.policies,
                                         since_ms=since_ms, now_ms=now_ms)
    language, timezone = _reader(invocation, services.config, supervised)
    # The same figures as a picture, right after the table: queued as a request the
    # sender draws just before sending it (`commands.report_chart`, `bot.reports`).
    # Without the charts extra the table says so instead.
    if ids and services.charts:
        request = chart_request(since_ms=since_ms, now_ms=now_ms, posts=ids,
                                language=language, period=period)
        services.follow_reply(request.content(), kind=CHART_KIND)
    notice = render_report(reports, period=period, since_ms=since_ms, now_ms=now_ms,
                           posts=posts, language=language, timezone=timezone)
    if ids and not services.charts:
        notice = without_chart(notice, language)
    return _with_audience_hint(notice, invocation, services)


def _with_audience_hint(notice: Notice, invocation: Invocation, services: Services) -> Notice:
    """In a room that is not the supervisor's own, say that the answer is cut to what
    everyone there may see (said whatever was left out, so it reveals nothing)."""
    if services.audience(invocation.room_id).kind in SUPERVISOR_ROOMS:
        return notice
    hint = render_notice(text("chase.audience.hint", invocation.language),
                         language=invocation.language)
    return Notice(text=f"{notice.text}\n{hint.text}", html=f"{notice.html}<br>{hint.html}",
                  mentions=notice.mentions)


def _period(invocation: Invocation) -> tuple[str, timedelta]:
    words = invocation.args.split()
    typed = words[0] if words else DEFAULT_REPORT_PERIOD
    try:
        if len(words) > 1:
            raise ValueError("one period only")
        length = parse_duration(typed)
        if length > timedelta(days=MAX_REPORT_DAYS):
            raise ValueError("too long")
    except ValueError:
        raise invocation.command.usage_error(CommandError.of(
            "chase.error.period", value=invocation.args.strip(), days=MAX_REPORT_DAYS),
            invocation.language) from None
    return format_duration(length), length


# --- shared -----------------------------------------------------------------------------


def _services(invocation: Invocation) -> Services:
    services = invocation.services
    if not isinstance(services, Services):
        raise TypeError("chasing commands need the shell's Services")
    return services


def _posts(config: Config) -> Mapping[str, Post]:
    return {post.id: post for post in config.posts}


def _supervised_posts(invocation: Invocation, config: Config) -> list[Post]:
    """The posts the sender supervises (every post for an administrator); refused for
    anyone else."""
    sender = invocation.sender
    if sender in config.access.admins:
        return list(config.posts)
    supervised = [post for post in config.posts if sender in post.supervisors]
    if not supervised:
        raise CommandError.of("chase.error.not_supervisor", command="!" + invocation.command.name)
    return supervised


def _reader(invocation: Invocation, config: Config, supervised: list[Post]) -> tuple[str, str]:
    """Language and time zone: the room's post, else the first post the sender supervises."""
    post = config.post_by_room(invocation.room_id)
    if post is not None:
        return invocation.language, post.timezone
    if supervised:
        return supervised[0].language, supervised[0].timezone
    return invocation.language, "UTC"


def _ms(invocation: Invocation) -> int:
    return int(invocation.now.timestamp() * 1000)
