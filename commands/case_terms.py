"""A case's terms beside its content: the deadline class, the handling code and the
action, read off the first line of `!alert`/`!request` (`commands.handling.split_terms`)
and checked against the configuration; and each target's answer deadline.

Pure: the classes and actions are passed in, times are epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from liaison.commands.deadlines import DeadlineClass, check_due, class_deadline_ms, resolve_class
from liaison.commands.errors import CommandError
from liaison.commands.handling import (
    Handling,
    Terms,
    check_h3,
    h3_restriction,
    parse_handling,
    resolve_action,
)


@dataclass(frozen=True)
class CaseTerms:
    """What a case carries besides its content; `fields` are the case's fields without the
    `h3:` line (its text is `handling_text`)."""

    deadline_class: str | None
    handling: Handling | None
    handling_text: str | None
    action: str | None
    fields: tuple[tuple[str, str], ...]


def resolve_terms(kind: str, terms: Terms, *, fields: tuple[tuple[str, str], ...],
                  due_ms: int | None, now_ms: int, timezone: str,
                  classes: Mapping[str, DeadlineClass],
                  actions: Mapping[str, Mapping[str, str]]) -> CaseTerms:
    """Check the typed terms: a class only on a request and one that exists, a `due:`
    no later than the class allows (in the sender's zone), a handling code, an action
    from the declared list, an H3 restriction exactly when H3. CommandError otherwise."""
    name = None
    if terms.deadline_class is not None:
        if kind != "request":
            raise CommandError.of("request.error.class_on_alert")
        name = resolve_class(terms.deadline_class, classes)
        if due_ms is not None:
            check_due(due_ms, now_ms=now_ms, name=name, deadline_class=classes[name],
                      timezone=timezone)
    handling = None if terms.handling is None else parse_handling(terms.handling)
    action = None if terms.action is None else resolve_action(terms.action, actions)
    restriction, rest = h3_restriction(fields)
    check_h3(handling, restriction)
    return CaseTerms(name, handling, restriction, action, rest)


def delivery_due_ms(terms: CaseTerms, *, due_ms: int | None, routed_ms: int,
                    target_timezone: str, classes: Mapping[str, DeadlineClass]) -> int | None:
    """A target's answer deadline: the request's `due:`, else its class counted from
    receipt in the target's zone, else none of its own (the chase policy decides)."""
    if due_ms is not None:
        return due_ms
    if terms.deadline_class is None:
        return None
    return class_deadline_ms(routed_ms, classes[terms.deadline_class], target_timezone)
