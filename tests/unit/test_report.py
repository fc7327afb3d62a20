"""The time maths of `!report`: medians, the 90th percentile, and the per-post figures."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison.commands.chase_policy import ChasePolicies
from liaison.commands.chasing import ChaseSubject
from liaison.commands.model import Priority
from liaison.commands.report import ReportDelivery, build_report, median_ms, percentile_ms

MIN = 60_000
T0 = 1_777_000_000_000
POLICIES = ChasePolicies.model_validate({})


def test_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    assert median_ms([]) is None
    assert median_ms([5]) == 5
    assert median_ms([1, 9, 3]) == 3
    assert median_ms([4, 1, 3, 2]) == 2  # (2 + 3) / 2, rounded down


def test_the_90th_percentile_is_the_nearest_rank() -> None:
    assert percentile_ms([], 90) is None
    assert percentile_ms(list(range(1, 11)), 90) == 9
    assert percentile_ms(list(range(1, 12)), 90) == 10
    assert percentile_ms([7], 90) == 7
    assert percentile_ms([3, 1, 2], 100) == 3
    with pytest.raises(ValueError):
        percentile_ms([1], 0)


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=60),
       st.floats(1, 100, allow_nan=False))
def test_a_percentile_is_a_value_with_enough_values_at_or_below_it(
        values: list[int], percent: float) -> None:
    found = percentile_ms(values, percent)
    assert found in values
    at_or_below = sum(1 for value in values if value <= found)
    assert at_or_below >= percent / 100 * len(values)
    below = sum(1 for value in values if value < found)
    assert below < percent / 100 * len(values)
    median = median_ms(values)
    assert median is not None and min(values) <= median <= max(values)


def delivery(post: str, *, kind: str = "alert", routed: int = 0, acked: int | None = None,
             answered: int | None = None, priority: Priority = Priority.FLASH,
             escalations: tuple[int, ...] = (), state: str = "open") -> ReportDelivery:
    return ReportDelivery(
        post=post, origin_post="KZ-ZHIBEK",
        subject=ChaseSubject(kind=kind, priority=priority,  # type: ignore[arg-type]
                             routed_ms=T0 + routed * MIN, due_ms=None,
                             acknowledged_ms=None if acked is None else T0 + acked * MIN,
                             answered_ms=None if answered is None else T0 + answered * MIN,
                             case_state=state),  # type: ignore[arg-type]
        escalations=tuple(T0 + minute * MIN for minute in escalations))


def test_per_post_figures_over_the_period() -> None:
    deliveries = [
        delivery("UZ-TERMEZ", routed=0, acked=4, state="closed"),
        delivery("UZ-TERMEZ", routed=10, acked=12),
        delivery("UZ-TERMEZ", kind="request", routed=20, acked=21, answered=50),
        delivery("UZ-TERMEZ", routed=30, escalations=(45, 60)),        # overdue at 100
        delivery("UZ-TERMEZ", routed=-5000, acked=-4990),             # before the period
        delivery("TJ-PANJ", routed=0),
    ]
    [uz, tj] = build_report(["UZ-TERMEZ", "TJ-PANJ"], deliveries, sent={"TJ-PANJ": 2},
                            policies=POLICIES, since_ms=T0 - 60 * MIN, now_ms=T0 + 100 * MIN)
    assert (uz.sent, uz.received, uz.acknowledged, uz.requests, uz.answered) == (0, 4, 3, 1, 1)
    assert (uz.ack_median_ms, uz.ack_p90_ms) == (2 * MIN, 4 * MIN)
    assert (uz.answer_median_ms, uz.answer_p90_ms) == (30 * MIN, 30 * MIN)
    assert (uz.overdue, uz.escalations) == (1, 2)
    assert (tj.sent, tj.received, tj.ack_median_ms, tj.overdue) == (2, 1, None, 1)
