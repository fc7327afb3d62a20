"""The figures of `!report`: per post, cases sent and received, how fast they were
acknowledged and answered, what is overdue now, how often supervisors were called.

Pure functions over plain records; the shell reads the records from the database.
Medians of an even count are the mean of the two middle values; the 90th percentile
is the nearest-rank value (the smallest time within which 90% were handled).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median

from liaison.commands.chase_policy import ChasePolicies
from liaison.commands.chasing import ChaseSubject, overdue

MAX_REPORT_DAYS = 366
"""The longest period a report covers."""


@dataclass(frozen=True)
class ReportDelivery:
    """One delivery as the report counts it."""

    post: str
    """The target post."""
    origin_post: str
    subject: ChaseSubject
    escalations: tuple[int, ...] = ()
    """When each of its escalation steps fired (epoch ms)."""
    deadline_class: str | None = None
    """The request's deadline class (`commands.deadlines`), if any."""


@dataclass(frozen=True)
class ClassFigure:
    """A post's answers to requests of one deadline class: how many, how many on time."""

    deadline_class: str
    answered: int
    on_time: int


@dataclass(frozen=True)
class PostReport:
    post: str
    sent: int
    received: int
    acknowledged: int
    ack_median_ms: int | None
    ack_p90_ms: int | None
    requests: int
    answered: int
    answer_median_ms: int | None
    answer_p90_ms: int | None
    overdue: int
    escalations: int
    on_time: tuple[ClassFigure, ...] = ()
    """Per deadline class, answers and answers by the deadline (the on-time share)."""


def median_ms(values: Sequence[int]) -> int | None:
    """The median, rounded down to a whole millisecond; None for no values."""
    return None if not values else int(median(values))


def percentile_ms(values: Sequence[int], percent: float) -> int | None:
    """The nearest-rank percentile: the smallest value with at least `percent`% of the
    values at or below it; None for no values."""
    if not values:
        return None
    if not 0 < percent <= 100:
        raise ValueError("percent must be in (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(percent / 100 * len(ordered))
    return ordered[rank - 1]


def post_report(
    post: str,
    deliveries: Sequence[ReportDelivery],
    *,
    sent: int,
    policies: ChasePolicies,
    since_ms: int,
    now_ms: int,
) -> PostReport:
    """The report line of one post over the period from `since_ms` to `now_ms`, as it
    stood at `now_ms` (an acknowledgement or answer after it does not count yet: a chart
    drawn later, or a late scheduled report, shows what the table of `now_ms` shows)."""
    mine = [item for item in deliveries if item.post == post]
    received = [item.subject for item in mine if since_ms <= item.subject.routed_ms <= now_ms]
    ack_times = [subject.acknowledged_ms - subject.routed_ms for subject in received
                 if subject.acknowledged_ms is not None and subject.acknowledged_ms <= now_ms]
    requests = [subject for subject in received if subject.kind == "request"]
    answer_times = [subject.answered_ms - subject.routed_ms for subject in requests
                    if subject.answered_ms is not None and subject.answered_ms <= now_ms]
    late = [item for item in mine
            if overdue(item.subject, policies.of(item.subject.priority), now_ms)]
    escalations = sum(1 for item in mine for fired_ms in item.escalations
                      if since_ms <= fired_ms <= now_ms)
    return PostReport(
        on_time=class_figures([item for item in mine
                               if since_ms <= item.subject.routed_ms <= now_ms], now_ms),
        post=post, sent=sent, received=len(received), acknowledged=len(ack_times),
        ack_median_ms=median_ms(ack_times), ack_p90_ms=percentile_ms(ack_times, 90),
        requests=len(requests), answered=len(answer_times),
        answer_median_ms=median_ms(answer_times), answer_p90_ms=percentile_ms(answer_times, 90),
        overdue=len(late), escalations=escalations,
    )


def class_figures(deliveries: Sequence[ReportDelivery], now_ms: int) -> tuple[ClassFigure, ...]:
    """For each deadline class (in the order first met), the requests answered by
    `now_ms` and how many of them by their deadline."""
    found: dict[str, list[int]] = {}
    for item in deliveries:
        subject = item.subject
        if item.deadline_class is None or subject.kind != "request":
            continue
        counts = found.setdefault(item.deadline_class, [0, 0])
        if subject.answered_ms is None or subject.answered_ms > now_ms:
            continue
        counts[0] += 1
        if subject.due_ms is not None and subject.answered_ms <= subject.due_ms:
            counts[1] += 1
    return tuple(ClassFigure(name, answered, timely)
                 for name, (answered, timely) in found.items())


def build_report(
    posts: Sequence[str],
    deliveries: Sequence[ReportDelivery],
    *,
    sent: Mapping[str, int],
    policies: ChasePolicies,
    since_ms: int,
    now_ms: int,
) -> list[PostReport]:
    """One `PostReport` per post, in the order given."""
    return [post_report(post, deliveries, sent=sent.get(post, 0), policies=policies,
                        since_ms=since_ms, now_ms=now_ms) for post in posts]
