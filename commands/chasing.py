"""Where the escalation timing is decided: the chase of one delivery, as pure functions.

A delivery (one case at one target post) is chased in up to two phases:

- `ack`: until the target post acknowledges. Reminders to its room start when the
  policy's `acknowledge_within` runs out and repeat every `remind_every`; escalation
  steps fire at their `after`, counted from routing.
- `answer` (requests only): until the post answers. The deadline is the request's
  `due:` or routing plus the policy's `answer.within`; reminders start at the
  deadline, escalation steps fire `after` it.

`plan_chase` turns a delivery and its policy into the ordered list of steps with due
times; the shell stores them and fires each one once (see `bot.chaser`). A step still
fires only while its phase is live (`phase_live`): an acknowledgement ends the `ack`
phase, an answer both, closing or cancelling the case everything. Routine steps that
fall in the target post's quiet hours wait until they end; flash and urgent never wait.
No clock here: every "now" is passed in as epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Literal

from liaison.commands.chase_policy import (
    ORIGIN_SUPERVISORS,
    REGIONAL_CENTRE,
    TARGET_SUPERVISORS,
    ChasePolicies,
    ChasePolicy,
    EscalationStep,
)
from liaison.commands.model import MXID_RE, Post, Priority
from liaison.commands.quiet_hours import QuietHours

LATE_AFTER_MS = 60_000
"""A step fired more than this after it fell due is marked late (the bot was down or busy)."""


class Phase(StrEnum):
    ACK = "ack"
    ANSWER = "answer"


class Action(StrEnum):
    REMIND = "remind"
    ESCALATE = "escalate"


CaseKind = Literal["alert", "request"]
CaseState = Literal["open", "closed", "cancelled"]


@dataclass(frozen=True)
class ChaseSubject:
    """What the chase of one delivery depends on."""

    kind: CaseKind
    priority: Priority
    routed_ms: int
    due_ms: int | None
    """The request's own deadline (`due:`), if it set one."""
    acknowledged_ms: int | None
    answered_ms: int | None
    case_state: CaseState


@dataclass(frozen=True)
class PlannedStep:
    """One step of a chase: `key` is unique within the delivery (`ack.remind.2`)."""

    key: str
    phase: Phase
    action: Action
    due_ms: int
    targets: tuple[str, ...] = ()


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


def answer_deadline_ms(subject: ChaseSubject, policy: ChasePolicy) -> int | None:
    """When a request's answer is due; None for an alert."""
    if subject.kind != "request":
        return None
    if subject.due_ms is not None:
        return subject.due_ms
    return subject.routed_ms + _ms(policy.answer.within)


def plan_chase(
    subject: ChaseSubject,
    policy: ChasePolicy,
    *,
    quiet_hours: QuietHours | None = None,
    timezone: str = "UTC",
) -> list[PlannedStep]:
    """Every step of the delivery's chase with its due time, in firing order.

    Quiet hours (the target post's, in its time zone) delay routine steps only.
    """
    steps = list(_phase_steps(Phase.ACK, subject.routed_ms + _ms(policy.acknowledge_within),
                              subject.routed_ms, policy.remind_every, policy.reminders,
                              policy.escalate))
    deadline = answer_deadline_ms(subject, policy)
    if deadline is not None:
        answer = policy.answer
        steps += _phase_steps(Phase.ANSWER, deadline, deadline, answer.remind_every,
                              answer.reminders, answer.escalate)
    if quiet_hours is not None and subject.priority is Priority.ROUTINE:
        steps = [_replace_due(step, quiet_hours.defer(step.due_ms, timezone)) for step in steps]
    return sorted(steps, key=_firing_order)


def plan_delivery(subject: ChaseSubject, target: Post | None,
                  policies: ChasePolicies) -> list[PlannedStep]:
    """`plan_chase` with the priority's policy and the target post's quiet hours."""
    quiet = QuietHours.parse(target.quiet_hours) if target and target.quiet_hours else None
    return plan_chase(subject, policies.of(subject.priority), quiet_hours=quiet,
                      timezone=target.timezone if target else "UTC")


def _phase_steps(phase: Phase, first_reminder_ms: int, escalation_base_ms: int,
                 every: timedelta, reminders: int,
                 escalate: Sequence[EscalationStep]) -> Iterable[PlannedStep]:
    for number in range(reminders):
        yield PlannedStep(f"{phase.value}.remind.{number + 1}", phase, Action.REMIND,
                          first_reminder_ms + number * _ms(every))
    for number, step in enumerate(escalate, start=1):
        yield PlannedStep(f"{phase.value}.escalate.{number}", phase, Action.ESCALATE,
                          escalation_base_ms + _ms(step.after), step.to)


def _firing_order(step: PlannedStep) -> tuple[int, int, int, str]:
    """By due time; at the same instant acknowledgement before answer, reminders first."""
    return (step.due_ms, 0 if step.phase is Phase.ACK else 1,
            0 if step.action is Action.REMIND else 1, step.key)


def _replace_due(step: PlannedStep, due_ms: int) -> PlannedStep:
    return PlannedStep(step.key, step.phase, step.action, due_ms, step.targets)


def phase_live(phase: Phase, subject: ChaseSubject) -> bool:
    """Whether steps of `phase` may still fire: nobody has taken that part of the case."""
    if subject.case_state != "open" or subject.answered_ms is not None:
        return False
    if phase is Phase.ACK:
        return subject.acknowledged_ms is None
    return subject.kind == "request"


TakenReason = Literal["acknowledged", "answered", "closed", "cancelled"]


def taken_reason(phase: Phase, subject: ChaseSubject) -> TakenReason | None:
    """Why the phase's chase is over, for telling the supervisors who were pinged; None
    while it is still live."""
    if phase_live(phase, subject):
        return None
    if subject.answered_ms is not None:
        return "answered"
    if subject.case_state != "open":
        return subject.case_state
    return "acknowledged"


def due_now(steps: Iterable[PlannedStep], now_ms: int) -> list[PlannedStep]:
    """The steps whose time has come, in firing order."""
    return sorted((step for step in steps if step.due_ms <= now_ms), key=_firing_order)


def is_late(due_ms: int, now_ms: int, started_ms: int) -> bool:
    """A step is late when it fell due before this run of the bot began (the bot was down)
    or it fires more than `LATE_AFTER_MS` after its time."""
    return due_ms < started_ms or now_ms - due_ms > LATE_AFTER_MS


def snoozed(
    pending: Mapping[str, int],
    *,
    until_ms: int,
    routine: bool,
    quiet_hours: QuietHours | None = None,
    timezone: str = "UTC",
) -> dict[str, int]:
    """New due times for a delivery's pending steps after `!snooze` until `until_ms`.

    The whole remaining chase moves later by the same amount, so that its next step is
    not before `until_ms` and the spacing between steps is kept; steps already later
    than that do not move earlier. Routine steps then wait out quiet hours again.
    """
    if not pending:
        return {}
    shift = max(0, until_ms - min(pending.values()))
    moved = {key: due + shift for key, due in pending.items()}
    if routine and quiet_hours is not None:
        moved = {key: quiet_hours.defer(due, timezone) for key, due in moved.items()}
    return moved


SUGGESTED_SNOOZE = timedelta(minutes=30)
"""What a reminder suggests for `!snooze`, when the policy allows that long."""


def suggested_snooze(policy: ChasePolicy) -> timedelta:
    """The snooze a reminder suggests: 30 minutes, or the policy's `snooze_max` when that
    is shorter, so the suggestion is always one `!snooze` accepts."""
    return min(SUGGESTED_SNOOZE, policy.snooze_max)


def snooze_allowed(duration: timedelta, policy: ChasePolicy) -> bool:
    """A snooze is bounded by the policy's `snooze_max`."""
    return timedelta(0) < duration <= policy.snooze_max


def overdue(subject: ChaseSubject, policy: ChasePolicy, now_ms: int) -> bool:
    """Past a deadline nobody has met: not acknowledged in time, or a request not answered
    by its deadline."""
    if subject.case_state != "open" or subject.answered_ms is not None:
        return False
    if subject.acknowledged_ms is None \
            and now_ms >= subject.routed_ms + _ms(policy.acknowledge_within):
        return True
    deadline = answer_deadline_ms(subject, policy)
    return deadline is not None and now_ms >= deadline


# --- who an escalation reaches ------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """Where one escalation message goes: a room the bot is in (a supervisors' room or a
    post's room), or a direct message to `user_id` that the shell opens.

    `reader` gives the language and time zone; `insider` is whether the reader belongs
    to the origin or target post and may read a summary of the case, not only its
    reference."""

    room_id: str | None
    user_id: str | None
    mentions: tuple[str, ...]
    reader: Post | None
    insider: bool

    @property
    def key(self) -> str:
        return self.room_id or f"dm:{self.user_id}"


def escalation_recipients(
    targets: Sequence[str],
    *,
    origin: Post | None,
    target: Post | None,
    posts: Mapping[str, Post],
    regional_centre: str | None,
    joined_rooms: frozenset[str],
) -> list[Recipient]:
    """The rooms and people an escalation step reaches, each once.

    Supervisors of a post are reached in the post's supervisors' room when one is
    configured and the bot is in it, otherwise each in a direct message. A post
    named as a target (the regional centre) is reached in its own room, mentioning its
    duty officers. Targets that resolve to nobody are left out."""
    found: dict[str, Recipient] = {}

    def add(recipient: Recipient) -> None:
        earlier = found.get(recipient.key)
        if earlier is None:
            found[recipient.key] = recipient
            return
        mentions = tuple(dict.fromkeys(earlier.mentions + recipient.mentions))
        found[recipient.key] = Recipient(earlier.room_id, earlier.user_id, mentions,
                                         earlier.reader, earlier.insider or recipient.insider)

    insiders = {post.id for post in (origin, target) if post is not None}
    for name in targets:
        if name in (TARGET_SUPERVISORS, ORIGIN_SUPERVISORS):
            post = target if name == TARGET_SUPERVISORS else origin
            if post is not None:
                for recipient in _supervisors_of(post, joined_rooms):
                    add(recipient)
            continue
        post_id = regional_centre if name == REGIONAL_CENTRE else name
        if post_id is not None and post_id in posts:
            centre = posts[post_id]
            add(Recipient(centre.room, None, centre.duty_officers, centre,
                          centre.id in insiders))
        elif MXID_RE.match(name):
            home = next((post for post in posts.values() if name in post.supervisors), None)
            insider = any(name in post.supervisors for post in (origin, target)
                          if post is not None)
            add(Recipient(None, name, (name,), home, insider))
    return list(found.values())


def direct_fallback(recipient: Recipient, joined_rooms: frozenset[str]) -> Recipient | None:
    """Where an escalation goes instead of a direct message the supervisor did not join in
    time: their post's supervisors' room, mentioning them, if the bot is in it."""
    post = recipient.reader
    if post is None or post.supervisors_room is None or post.supervisors_room not in joined_rooms:
        return None
    return Recipient(post.supervisors_room, None, recipient.mentions, post, recipient.insider)


def _supervisors_of(post: Post, joined_rooms: frozenset[str]) -> list[Recipient]:
    if post.supervisors_room is not None and post.supervisors_room in joined_rooms:
        return [Recipient(post.supervisors_room, None, post.supervisors, post, True)]
    return [Recipient(None, user, (user,), post, True) for user in post.supervisors]
