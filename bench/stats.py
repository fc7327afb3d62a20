"""Percentiles and ratios: the arithmetic every scenario reports with."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """A latency (or any) sample summarised; values in the unit the caller used."""

    n: int
    p50: float
    p95: float
    p99: float
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(n=len(values), p50=percentile(values, 50), p95=percentile(values, 95),
                   p99=percentile(values, 99), mean=sum(values) / len(values),
                   min=min(values), max=max(values))

    def as_dict(self, digits: int = 1) -> dict[str, Any]:
        return {key: value if key == "n" else round(value, digits)
                for key, value in asdict(self).items()}


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, rounded for reports; inf when the floor is zero."""
    return round(numerator / denominator, 3) if denominator else math.inf


@dataclass(frozen=True)
class Target:
    """One figure against its target: `value` must be <= `limit` (or >= when `at_least`)."""

    name: str
    value: float
    limit: float
    at_least: bool = False

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value,
                "target": f"{'>=' if self.at_least else '<='} {self.limit:g}", "met": self.met}
