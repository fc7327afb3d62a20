"""Chasing policies as the operator writes them in the `chasing:` section of the config.

One policy per priority: how long the target post has to acknowledge, how often
and how many times its duty officers are reminded, when supervisors are told
(escalation steps), how long a snooze may be, and — for requests — the default
deadline for the answer and how the answer is chased after it. A priority the
operator leaves out, or a key left out of a priority, keeps the defaults below.

Validation here is about one policy at a time (durations, order of steps); whether
an escalation target names a configured post or supervisor is checked against the
rest of the file by `escalation_target_problems`, which the config loader calls.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Annotated, Any, TypeAlias

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from liaison.commands.durations import Duration, format_duration
from liaison.commands.model import MXID_RE, POST_ID_RE, Priority

TARGET_SUPERVISORS = "target-supervisors"
ORIGIN_SUPERVISORS = "origin-supervisors"
REGIONAL_CENTRE = "regional-centre"
TARGET_WORDS = (TARGET_SUPERVISORS, ORIGIN_SUPERVISORS, REGIONAL_CENTRE)
"""Escalation targets besides a post id or a supervisor's user id."""

_TARGET_HINT = (
    f"{TARGET_SUPERVISORS}, {ORIGIN_SUPERVISORS}, {REGIONAL_CENTRE}, a post id such as "
    "KZ-CARICC, or a supervisor's user id"
)



def _one_or_many(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


class _Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EscalationStep(_Policy):
    """`after` this long, tell `to`: supervisors of the target or origin post, the regional
    centre, a post (its room) or named supervisors."""

    after: Duration
    to: Annotated[tuple[str, ...], BeforeValidator(_one_or_many), Field(min_length=1)]

    @field_validator("to")
    @classmethod
    def _check_targets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for target in value:
            if target not in TARGET_WORDS and not POST_ID_RE.match(target) \
                    and not MXID_RE.match(target):
                raise PydanticCustomError(
                    "escalation_target", f"{target!r} is not an escalation target; use "
                    f"{_TARGET_HINT}")
        if len(set(value)) != len(value):
            raise PydanticCustomError("escalation_target", "a target is listed twice")
        return value


def _check_order(steps: tuple[EscalationStep, ...]) -> tuple[EscalationStep, ...]:
    for index in range(1, len(steps)):
        earlier, later = steps[index - 1], steps[index]
        if later.after <= earlier.after:
            raise PydanticCustomError(
                "step_order",
                f"escalation steps are out of order: step {index + 1} (after "
                f"{format_duration(later.after)}) does not come after step {index} (after "
                f"{format_duration(earlier.after)}); list them in the order they fire")
    return steps


class AnswerPolicy(_Policy):
    """Requests only: the answer is due `within` of routing unless the request set `due:`;
    from the deadline on, reminders every `remind_every` (`reminders` of them) and the
    escalation steps, each `after` the deadline."""

    within: Duration
    remind_every: Duration
    reminders: Annotated[int, Field(ge=0, le=20, strict=True)]
    escalate: tuple[EscalationStep, ...] = ()

    @field_validator("escalate")
    @classmethod
    def _check_order(cls, value: tuple[EscalationStep, ...]) -> tuple[EscalationStep, ...]:
        return _check_order(value)


class ChasePolicy(_Policy):
    """How one priority is chased until the target post acknowledges (and, for a request,
    answers). Reminders start when `acknowledge_within` runs out; escalation steps count
    from routing."""

    acknowledge_within: Duration
    remind_every: Duration
    reminders: Annotated[int, Field(ge=0, le=20, strict=True)]
    escalate: tuple[EscalationStep, ...] = ()
    snooze_max: Duration
    answer: AnswerPolicy

    @field_validator("escalate")
    @classmethod
    def _check_order(cls, value: tuple[EscalationStep, ...]) -> tuple[EscalationStep, ...]:
        return _check_order(value)

    @model_validator(mode="after")
    def _escalate_after_deadline(self) -> ChasePolicy:
        if self.escalate and self.escalate[0].after < self.acknowledge_within:
            raise PydanticCustomError(
                "step_order",
                f"escalation steps are out of order: the first (after "
                f"{format_duration(self.escalate[0].after)}) comes before acknowledge_within "
                f"({format_duration(self.acknowledge_within)}) runs out")
        return self


DEFAULT_POLICIES: Mapping[str, Mapping[str, Any]] = {
    Priority.FLASH.value: {
        "acknowledge_within": "10m", "remind_every": "5m", "reminders": 4,
        "escalate": [{"after": "15m", "to": [TARGET_SUPERVISORS]},
                     {"after": "30m", "to": [ORIGIN_SUPERVISORS, REGIONAL_CENTRE]}],
        "snooze_max": "10m",
        "answer": {"within": "1h", "remind_every": "15m", "reminders": 2,
                   "escalate": [{"after": "30m", "to": [TARGET_SUPERVISORS]}]},
    },
    Priority.URGENT.value: {
        "acknowledge_within": "1h", "remind_every": "30m", "reminders": 2,
        "escalate": [{"after": "2h", "to": [TARGET_SUPERVISORS]},
                     {"after": "4h", "to": [ORIGIN_SUPERVISORS, REGIONAL_CENTRE]}],
        "snooze_max": "2h",
        "answer": {"within": "8h", "remind_every": "2h", "reminders": 2,
                   "escalate": [{"after": "4h", "to": [TARGET_SUPERVISORS]}]},
    },
    Priority.ROUTINE.value: {
        "acknowledge_within": "24h", "remind_every": "12h", "reminders": 1,
        "escalate": [{"after": "48h", "to": [TARGET_SUPERVISORS]}],
        "snooze_max": "1d",
        "answer": {"within": "3d", "remind_every": "1d", "reminders": 1,
                   "escalate": [{"after": "2d", "to": [TARGET_SUPERVISORS]}]},
    },
}
"""flash: acknowledge within 10 min, reminders every 5 min, target supervisors at 15 min,
origin supervisors and the regional centre at 30 min; urgent: 1 h, then 2 h and 4 h;
routine: 24 h, then 48 h."""


def _with_defaults(priority: str, written: Any) -> Any:
    """The operator's keys over the priority's defaults (`answer` merged the same way)."""
    default = DEFAULT_POLICIES[priority]
    if written is None:
        return dict(default)
    if not isinstance(written, dict):
        return written
    merged = {**default, **written}
    if isinstance(written.get("answer"), dict):
        merged["answer"] = {**default["answer"], **written["answer"]}
    return merged


class ChasePolicies(_Policy):
    """One policy per priority; each key left out keeps its default."""

    flash: ChasePolicy
    urgent: ChasePolicy
    routine: ChasePolicy

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, value: Any) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            return value
        return {**value, **{priority: _with_defaults(priority, value.get(priority))
                            for priority in DEFAULT_POLICIES}}

    def of(self, priority: Priority) -> ChasePolicy:
        policy: ChasePolicy = getattr(self, priority.value)
        return policy


class ChasingConfig(_Policy):
    """The `chasing:` section: policies, the regional centre, how often the bot looks."""

    check_every: Duration = timedelta(minutes=1)
    regional_centre: str | None = Field(
        default=None, description="Post id that the `regional-centre` escalation target means")
    policies: ChasePolicies = Field(default_factory=lambda: ChasePolicies.model_validate({}))
    direct_room_wait: Duration = Field(
        default=timedelta(minutes=10),
        description="How long an escalation waits for a supervisor to join the direct room "
        "the bot opened before it goes to their supervisors' room (if any) instead")

    @field_validator("regional_centre")
    @classmethod
    def _check_centre(cls, value: str | None) -> str | None:
        if value is not None and not POST_ID_RE.match(value):
            raise PydanticCustomError("post_id", f"{value!r} is not a post id like KZ-CARICC")
        return value


# --- cross-checks against the rest of the file --------------------------------------------

Loc: TypeAlias = tuple[str | int, ...]


def escalation_target_problems(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Escalation targets and the regional centre that name no configured post or supervisor.

    Works on the raw YAML data, so it runs (and reports with line numbers) even when
    other parts of the file failed validation."""
    posts = [post for post in _listed(data.get("posts")) if isinstance(post, dict)]
    post_ids = [post["id"] for post in posts if isinstance(post.get("id"), str)]
    supervisors = {user for post in posts for user in _listed(post.get("supervisors"))
                   if isinstance(user, str)}
    chasing = data.get("chasing")
    if not isinstance(chasing, dict):
        return []
    problems: list[tuple[Loc, str]] = []
    centre = chasing.get("regional_centre")
    if isinstance(centre, str) and POST_ID_RE.match(centre) and centre not in post_ids:
        problems.append((("chasing", "regional_centre"), _unknown_post(centre, post_ids)))
    for loc, target in _written_targets(chasing.get("policies")):
        if target == REGIONAL_CENTRE and not isinstance(centre, str):
            problems.append((loc, f"{REGIONAL_CENTRE} is named but chasing.regional_centre is "
                                  "not set; set it to the regional centre's post id"))
        elif POST_ID_RE.match(target) and target not in post_ids:
            problems.append((loc, _unknown_post(target, post_ids)))
        elif MXID_RE.match(target) and target not in supervisors:
            problems.append((loc, f"{target} is not a supervisor of any post; list them under "
                                  "a post's supervisors first"))
    return problems


def _written_targets(policies: Any) -> Iterator[tuple[Loc, str]]:
    if not isinstance(policies, dict):
        return
    for priority, policy in policies.items():
        if not isinstance(policy, dict):
            continue
        yield from _step_targets(policy.get("escalate"),
                                 ("chasing", "policies", priority, "escalate"))
        answer = policy.get("answer")
        if isinstance(answer, dict):
            yield from _step_targets(answer.get("escalate"),
                                     ("chasing", "policies", priority, "answer", "escalate"))


def _step_targets(steps: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    for index, step in enumerate(_listed(steps)):
        if not isinstance(step, dict):
            continue
        targets = step.get("to")
        if isinstance(targets, str):
            yield (*loc, index, "to"), targets
            continue
        for position, target in enumerate(_listed(targets)):
            if isinstance(target, str):
                yield (*loc, index, "to", position), target


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _unknown_post(post_id: str, known: list[str]) -> str:
    close = difflib.get_close_matches(post_id, known, n=1)
    hint = f"did you mean {close[0]}?" if close else "expected a configured post id"
    return f"unknown post id {post_id!r}; {hint}"
