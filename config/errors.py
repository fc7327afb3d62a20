"""Configuration problems: where (dotted path, YAML line) and what."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

Loc: TypeAlias = tuple[str | int, ...]
Finding: TypeAlias = tuple[Loc, str]


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration: where (dotted path, line) and what."""

    path: str
    line: int | None
    message: str

    def render(self, source: str | None = None) -> str:
        """`config.yaml:12: bot.user_id: Field required`; parts that are unknown are left out."""
        where = source or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        return ": ".join(part for part in (where, self.path, self.message) if part)


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists everything that is wrong."""

    def __init__(self, problems: Sequence[ConfigProblem], *, source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(problem.render(self.source) for problem in self.problems)

