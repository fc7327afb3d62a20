"""What an edit of a routed `!alert` or `!request` changes.

An officer may edit the message that opened a case (`m.replace`). The case is not
routed again: the edit goes to the posts that already have the case, as an
update. It may change what the targets read — the `key: value` lines, the free
text, the grading and a request's deadline. What decided where the case went —
its kind, priority, TLP, category and related case — stays as routed; an edit
that changes any of those is refused as a whole (the `to:` option is not compared:
where a case went is settled, and the answer to the edit says so).
"""

from __future__ import annotations

from dataclasses import dataclass

from liaison.commands.parser import CaseDraft
from liaison.commands.records import Case, Revision


@dataclass(frozen=True)
class FieldChange:
    """One `key: value` line that changed; `old` None when added, `new` None when removed.
    A key typed on several lines counts as one, its values joined with `; `."""

    key: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class CaseEdit:
    """The comparison of a stored case with its edited command."""

    revision: Revision
    """The details as edited, to store."""
    blocked: tuple[str, ...] = ()
    """Options the edit tried to change that an edit may not (`priority`, `tlp`, ...)."""
    fields: tuple[FieldChange, ...] = ()
    text_changed: bool = False
    grading_changed: bool = False
    due_changed: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.fields or self.text_changed or self.grading_changed
                    or self.due_changed)

    @property
    def summary(self) -> tuple[str, ...]:
        """What changed, by name, for the timeline: field keys, then text, grade, due."""
        names = [change.key for change in self.fields]
        names += [name for name, changed in (("text", self.text_changed),
                                             ("grade", self.grading_changed),
                                             ("due", self.due_changed)) if changed]
        return tuple(names)


def compare_edit(case: Case, draft: CaseDraft) -> CaseEdit:
    """Compare the edited command (parsed as a draft) with the case as stored."""
    due_ms = None if draft.due is None else int(draft.due.timestamp() * 1000)
    revision = Revision(fields=draft.fields, text=draft.text, grading=draft.grading,
                        due_ms=due_ms)
    blocked = tuple(name for name, same in (
        ("kind", draft.kind == case.kind),
        ("priority", draft.priority == case.priority),
        ("tlp", draft.tlp == case.tlp),
        ("cat", draft.category == case.category),
        ("ref", draft.ref == case.related_ref),
    ) if not same)
    return CaseEdit(
        revision=revision, blocked=blocked,
        fields=field_changes(case.fields, draft.fields),
        text_changed=draft.text != case.text,
        grading_changed=draft.grading != case.grading,
        due_changed=due_ms != case.due_ms,
    )


def field_changes(old: tuple[tuple[str, str], ...],
                  new: tuple[tuple[str, str], ...]) -> tuple[FieldChange, ...]:
    """Changed and added keys in the new order, then removed keys in the old order."""
    before, after = _by_key(old), _by_key(new)
    changes = [FieldChange(key, before.get(key), value) for key, value in after.items()
               if before.get(key) != value]
    changes += [FieldChange(key, value, None) for key, value in before.items()
                if key not in after]
    return tuple(changes)


def _by_key(fields: tuple[tuple[str, str], ...]) -> dict[str, str]:
    grouped: dict[str, list[str]] = {}
    for key, value in fields:
        grouped.setdefault(key, []).append(value)
    return {key: "; ".join(values) for key, values in grouped.items()}
