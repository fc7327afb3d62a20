"""The chase engine with an injected clock: which step is due when, quiet hours across
midnight and time zones, snoozes, and what a restart at any instant produces."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.commands.chase_policy import ChasePolicies, ChasePolicy
from liaison.commands.chasing import (
    LATE_AFTER_MS,
    Action,
    ChaseSubject,
    Phase,
    PlannedStep,
    answer_deadline_ms,
    due_now,
    escalation_recipients,
    is_late,
    overdue,
    phase_live,
    plan_chase,
    snooze_allowed,
    snoozed,
    taken_reason,
)
from liaison.commands.model import Post, Priority
from liaison.commands.quiet_hours import QuietHours

MIN = 60_000
HOUR = 60 * MIN
T0 = int(datetime(2026, 5, 1, 10, 0, tzinfo=UTC).timestamp() * 1000)
POLICIES = ChasePolicies.model_validate({})


def subject(kind: str = "alert", priority: Priority = Priority.FLASH, **changes: object
            ) -> ChaseSubject:
    base = ChaseSubject(kind="alert", priority=priority, routed_ms=T0, due_ms=None,
                        acknowledged_ms=None, answered_ms=None, case_state="open")
    return replace(base, kind=kind, **changes)  # type: ignore[arg-type]


def at(step: PlannedStep) -> tuple[str, int]:
    """(key, minutes after routing)."""
    return step.key, (step.due_ms - T0) // MIN


# --- the plan -----------------------------------------------------------------------------


def test_default_flash_alert_is_reminded_every_5_minutes_and_escalated_at_15_and_30() -> None:
    steps = plan_chase(subject(), POLICIES.flash)
    assert [at(step) for step in steps] == [
        ("ack.remind.1", 10), ("ack.remind.2", 15), ("ack.escalate.1", 15),
        ("ack.remind.3", 20), ("ack.remind.4", 25), ("ack.escalate.2", 30)]
    escalations = [step for step in steps if step.action is Action.ESCALATE]
    assert [step.targets for step in escalations] == [
        ("target-supervisors",), ("origin-supervisors", "regional-centre")]


def test_default_urgent_and_routine_follow_the_issue() -> None:
    urgent = plan_chase(subject(priority=Priority.URGENT), POLICIES.urgent)
    assert [(key, minutes / 60) for key, minutes in map(at, urgent)
            if "escalate" in key] == [("ack.escalate.1", 2), ("ack.escalate.2", 4)]
    assert at(urgent[0]) == ("ack.remind.1", 60)
    routine = plan_chase(subject(priority=Priority.ROUTINE), POLICIES.routine)
    assert [(key, minutes / 60) for key, minutes in map(at, routine)] == [
        ("ack.remind.1", 24), ("ack.escalate.1", 48)]


def test_a_request_is_chased_for_its_answer_from_its_deadline() -> None:
    due = T0 + 3 * HOUR
    steps = plan_chase(subject("request", due_ms=due), POLICIES.flash)
    answer = [step for step in steps if step.phase is Phase.ANSWER]
    assert [(step.key, (step.due_ms - due) // MIN) for step in answer] == [
        ("answer.remind.1", 0), ("answer.remind.2", 15), ("answer.escalate.1", 30)]
    # Without due: the policy's default deadline.
    default = plan_chase(subject("request"), POLICIES.flash)
    assert min(s.due_ms for s in default if s.phase is Phase.ANSWER) == T0 + HOUR
    assert answer_deadline_ms(subject("request"), POLICIES.flash) == T0 + HOUR
    assert answer_deadline_ms(subject(), POLICIES.flash) is None


def test_steps_are_in_firing_order_and_keys_are_unique() -> None:
    for priority in Priority:
        for kind in ("alert", "request"):
            steps = plan_chase(subject(kind, priority), POLICIES.of(priority))
            assert [s.due_ms for s in steps] == sorted(s.due_ms for s in steps)
            assert len({s.key for s in steps}) == len(steps)


def test_which_step_is_due_when() -> None:
    steps = plan_chase(subject(), POLICIES.flash)
    assert due_now(steps, T0 + 9 * MIN) == []
    assert [s.key for s in due_now(steps, T0 + 10 * MIN)] == ["ack.remind.1"]
    # At 15 minutes the reminder goes before the escalation.
    assert [s.key for s in due_now(steps, T0 + 15 * MIN)] == [
        "ack.remind.1", "ack.remind.2", "ack.escalate.1"]


# --- who takes a case ---------------------------------------------------------------------


def test_an_acknowledgement_ends_the_ack_phase_and_an_answer_ends_both() -> None:
    acked = subject("request", acknowledged_ms=T0 + MIN)
    assert not phase_live(Phase.ACK, acked) and phase_live(Phase.ANSWER, acked)
    assert taken_reason(Phase.ACK, acked) == "acknowledged"
    assert taken_reason(Phase.ANSWER, acked) is None
    answered = replace(acked, answered_ms=T0 + 2 * MIN)
    assert not phase_live(Phase.ANSWER, answered)
    assert taken_reason(Phase.ANSWER, answered) == "answered"
    closed = subject(case_state="cancelled")
    assert not phase_live(Phase.ACK, closed)
    assert taken_reason(Phase.ACK, closed) == "cancelled"
    assert not phase_live(Phase.ANSWER, subject())  # an alert has no answer phase


def test_overdue_means_a_missed_deadline() -> None:
    flash = POLICIES.flash
    assert not overdue(subject(), flash, T0 + 9 * MIN)
    assert overdue(subject(), flash, T0 + 10 * MIN)
    assert not overdue(subject(acknowledged_ms=T0 + MIN), flash, T0 + HOUR * 5)
    request = subject("request", acknowledged_ms=T0 + MIN, due_ms=T0 + 2 * HOUR)
    assert not overdue(request, flash, T0 + HOUR)
    assert overdue(request, flash, T0 + 2 * HOUR)
    assert not overdue(replace(request, case_state="closed"), flash, T0 + 3 * HOUR)


def test_late_means_due_before_this_run_or_long_ago() -> None:
    started = T0 + 20 * MIN
    assert is_late(T0 + 10 * MIN, started, started)
    assert not is_late(started + MIN, started + MIN + 10, started)
    assert is_late(started + MIN, started + MIN + LATE_AFTER_MS + 1, started)


# --- quiet hours --------------------------------------------------------------------------


def ms(year: int, month: int, day: int, hour: int, minute: int, zone: str) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone)).timestamp()
               * 1000)


def test_quiet_hours_across_midnight_defer_to_the_morning() -> None:
    quiet = QuietHours.parse("22:00-06:00")
    zone = "Asia/Tashkent"
    assert quiet.crosses_midnight
    assert quiet.defer(ms(2026, 5, 1, 23, 30, zone), zone) == ms(2026, 5, 2, 6, 0, zone)
    assert quiet.defer(ms(2026, 5, 2, 2, 0, zone), zone) == ms(2026, 5, 2, 6, 0, zone)
    assert quiet.defer(ms(2026, 5, 2, 6, 0, zone), zone) == ms(2026, 5, 2, 6, 0, zone)
    assert quiet.defer(ms(2026, 5, 1, 21, 59, zone), zone) == ms(2026, 5, 1, 21, 59, zone)


def test_quiet_hours_are_read_in_the_post_time_zone() -> None:
    quiet = QuietHours.parse("22:00-06:00")
    instant = int(datetime(2026, 5, 1, 18, 0, tzinfo=UTC).timestamp() * 1000)
    # 18:00 UTC is 23:00 in Tashkent (quiet) but 20:00 in Berlin (not quiet).
    assert quiet.is_quiet(instant, "Asia/Tashkent")
    assert not quiet.is_quiet(instant, "Europe/Berlin")
    assert quiet.defer(instant, "Europe/Berlin") == instant


def test_a_daytime_window_does_not_cross_midnight() -> None:
    quiet = QuietHours.parse("12:00-13:30")
    assert not quiet.crosses_midnight
    assert quiet.contains(time(12, 0)) and quiet.contains(time(13, 29))
    assert not quiet.contains(time(13, 30)) and not quiet.contains(time(11, 59))
    assert str(quiet) == "12:00-13:30"


@pytest.mark.parametrize("text", ["22-06", "25:00-06:00", "22:00-22:00", "22:00", "", "ab"])
def test_bad_quiet_hours_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        QuietHours.parse(text)


def test_quiet_hours_hold_routine_steps_only() -> None:
    quiet = QuietHours.parse("00:00-23:00")
    routine = plan_chase(subject(priority=Priority.ROUTINE), POLICIES.routine,
                         quiet_hours=quiet, timezone="UTC")
    assert all(datetime.fromtimestamp(s.due_ms / 1000, UTC).hour == 23 for s in routine)
    flash = plan_chase(subject(), POLICIES.flash, quiet_hours=quiet, timezone="UTC")
    assert flash == plan_chase(subject(), POLICIES.flash)


ZONES = ["UTC", "Asia/Almaty", "Asia/Kabul", "Europe/Berlin", "America/New_York",
         "Australia/Lord_Howe", "Asia/Kathmandu", "America/Sao_Paulo"]
windows = st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 23),
                    st.integers(0, 59)).filter(lambda w: w[:2] != w[2:])
instants = st.integers(int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000),
                       int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000))


@given(window=windows, instant=instants, zone=st.sampled_from(ZONES))
@settings(max_examples=400, deadline=None)
def test_deferring_never_goes_back_and_always_leaves_the_window(
    window: tuple[int, int, int, int], instant: int, zone: str
) -> None:
    quiet = QuietHours(time(window[0], window[1]), time(window[2], window[3]))
    deferred = quiet.defer(instant, zone)
    assert deferred >= instant
    assert not quiet.is_quiet(deferred, zone)
    assert deferred - instant <= 25 * HOUR
    if not quiet.is_quiet(instant, zone):
        assert deferred == instant


# --- snoozes ------------------------------------------------------------------------------


def test_a_snooze_moves_the_rest_of_the_chase_keeping_its_spacing() -> None:
    pending = {"ack.remind.2": T0 + 15 * MIN, "ack.escalate.1": T0 + 15 * MIN,
               "ack.remind.3": T0 + 20 * MIN}
    moved = snoozed(pending, until_ms=T0 + 42 * MIN, routine=False)
    assert moved == {"ack.remind.2": T0 + 42 * MIN, "ack.escalate.1": T0 + 42 * MIN,
                     "ack.remind.3": T0 + 47 * MIN}
    # A snooze that ends before the next step changes nothing.
    assert snoozed(pending, until_ms=T0 + 12 * MIN, routine=False) == pending
    assert snoozed({}, until_ms=T0, routine=False) == {}


def test_a_routine_snooze_into_quiet_hours_waits_for_the_morning() -> None:
    quiet = QuietHours.parse("22:00-06:00")
    late_evening = ms(2026, 5, 1, 21, 30, "UTC")
    moved = snoozed({"ack.remind.1": late_evening}, until_ms=ms(2026, 5, 1, 23, 0, "UTC"),
                    routine=True, quiet_hours=quiet, timezone="UTC")
    assert moved == {"ack.remind.1": ms(2026, 5, 2, 6, 0, "UTC")}


def test_snoozes_are_bounded_by_the_policy() -> None:
    flash: ChasePolicy = POLICIES.flash
    assert snooze_allowed(timedelta(minutes=10), flash)
    assert not snooze_allowed(timedelta(minutes=11), flash)
    assert snooze_allowed(timedelta(hours=2), POLICIES.urgent)
    assert not snooze_allowed(timedelta(0), flash)


# --- a restart at any instant -------------------------------------------------------------


@st.composite
def runs(draw: st.DrawFn) -> list[tuple[int, int, list[int]]]:
    """Runs of the bot: (start, end, extra wake-ups), in ms after routing (scaled by the
    priority), in order, with downtime between them."""
    moment = draw(st.integers(0, 40 * MIN))
    found = []
    for _ in range(draw(st.integers(1, 5))):
        end = moment + draw(st.integers(0, 20 * MIN))
        ticks = sorted(draw(st.lists(st.integers(moment, end), max_size=8)))
        found.append((moment, end, [moment, *ticks]))
        moment = end + draw(st.integers(1, 20 * MIN))
    return found


@given(bot_runs=runs(), acked_after=st.one_of(st.none(), st.integers(0, 80 * MIN)),
       priority=st.sampled_from(list(Priority)), kind=st.sampled_from(["alert", "request"]))
@settings(max_examples=300, deadline=None)
def test_firing_due_steps_after_any_restart_fires_each_step_once_and_skips_none(
    bot_runs: list[tuple[int, int, list[int]]], acked_after: int | None, priority: Priority,
    kind: str,
) -> None:
    policy = POLICIES.of(priority)
    scale = {Priority.FLASH: 1, Priority.URGENT: 6, Priority.ROUTINE: 144}[priority]
    acked_ms = None if acked_after is None else T0 + acked_after * scale
    plan = plan_chase(subject(kind, priority), policy)
    fired: dict[str, tuple[int, bool]] = {}
    stopped: set[str] = set()
    for start, end, ticks in bot_runs:
        # The chaser wakes at the start, on commands and checks (`ticks`), and at every due
        # time while it runs (the scheduler job armed for the next due step).
        wakeups = {T0 + tick * scale for tick in ticks} | {
            step.due_ms for step in plan if T0 + start * scale <= step.due_ms <= T0 + end * scale}
        for now in sorted(wakeups):
            facts = subject(kind, priority, acknowledged_ms=acked_ms
                            if acked_ms is not None and acked_ms <= now else None)
            pending = [s for s in plan if s.key not in fired and s.key not in stopped]
            for step in due_now(pending, now):
                assert step.key not in fired, "fired twice"
                if phase_live(step.phase, facts):
                    fired[step.key] = (now, is_late(step.due_ms, now, T0 + start * scale))
                else:
                    stopped.add(step.key)
    last = T0 + bot_runs[-1][1] * scale
    for step in plan:
        done = step.key in fired or step.key in stopped
        assert done == (step.due_ms <= last), f"{step.key} skipped or fired early"
        if step.key in fired:
            fired_at, _ = fired[step.key]
            assert fired_at >= step.due_ms
            assert acked_ms is None or step.phase is Phase.ANSWER or fired_at < acked_ms
            # A step that fell due between two runs fires at the next start, marked late.
            if any(T0 + end * scale < step.due_ms < T0 + start * scale
                   for (_, end, _), (start, _, _) in pairwise(bot_runs)):
                assert fired[step.key][1], f"{step.key} fired after downtime but not late"


# --- recipients ---------------------------------------------------------------------------


def post(post_id: str, **extra: object) -> Post:
    return Post.model_validate({"id": post_id, "names": {"en": post_id}, "country": post_id[:2],
                                "agency": "border", "room": f"!{post_id.lower()}:x.example",
                                **extra})


def test_escalations_reach_supervisors_rooms_direct_messages_and_the_regional_centre() -> None:
    origin = post("KZ-ZHIBEK", supervisors=["@kz-boss:x.example"])
    target = post("UZ-TERMEZ", supervisors=["@uz-boss:x.example", "@uz-deputy:x.example"],
                  supervisors_room="!uz-sup:x.example")
    centre = post("KZ-CARICC", duty_officers=["@caricc-duty:x.example"])
    posts = {p.id: p for p in (origin, target, centre)}
    joined = frozenset({"!uz-sup:x.example", centre.room})
    found = escalation_recipients(
        ["target-supervisors", "origin-supervisors", "regional-centre"], origin=origin,
        target=target, posts=posts, regional_centre="KZ-CARICC", joined_rooms=joined)
    assert [(r.room_id, r.user_id, r.mentions, r.insider) for r in found] == [
        ("!uz-sup:x.example", None, ("@uz-boss:x.example", "@uz-deputy:x.example"), True),
        (None, "@kz-boss:x.example", ("@kz-boss:x.example",), True),
        (centre.room, None, ("@caricc-duty:x.example",), False),
    ]
    # The bot is not in the supervisors' room: each supervisor gets a direct message.
    direct = escalation_recipients(["target-supervisors"], origin=origin, target=target,
                                   posts=posts, regional_centre=None, joined_rooms=frozenset())
    assert [r.user_id for r in direct] == ["@uz-boss:x.example", "@uz-deputy:x.example"]
    # A named supervisor, twice over, is one direct message; no centre configured: nobody.
    named = escalation_recipients(["@kz-boss:x.example", "origin-supervisors",
                                   "regional-centre"], origin=origin, target=target,
                                  posts=posts, regional_centre=None, joined_rooms=joined)
    assert [(r.user_id, r.reader) for r in named] == [("@kz-boss:x.example", origin)]
