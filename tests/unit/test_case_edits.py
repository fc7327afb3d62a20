"""What an edit of a routed case changes, and what it may not change."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from liaison.commands.case_edits import FieldChange, compare_edit, field_changes
from liaison.commands.model import Priority, Tlp
from liaison.commands.parser import CaseDraft
from liaison.commands.records import Case

CASE = Case(
    id=1, ref="KZ-0001", kind="alert", origin_post="KZ-ZHIBEK", priority=Priority.URGENT,
    tlp=Tlp.AMBER, category="drugs", grading="B2", related_ref=None,
    fields=(("vehicle", "white Kamaz"), ("route", "Hairatan -> Termez")),
    text="Suspected heroin.", due_ms=None, state="open", forwardable=True,
    origin_room="!kz:example.org", origin_event_id="$alert", origin_sender="@kz:example.org",
    created_ms=0, closed_ms=None, closed_by=None, outcome=None,
)
SAME = CaseDraft(kind="alert", priority=Priority.URGENT, targets=("UZ-TERMEZ",),
                 tlp=Tlp.AMBER, category="drugs", grading="B2", fields=CASE.fields,
                 text=CASE.text)


def edited(**changes: object) -> CaseDraft:
    """The same command with some options or lines changed (validated like a parse)."""
    return CaseDraft.model_validate({**SAME.model_dump(), **changes})


def test_an_identical_command_changes_nothing() -> None:
    edit = compare_edit(CASE, SAME)
    assert not edit.changed and edit.blocked == () and edit.summary == ()


def test_targets_are_not_compared_an_edit_is_never_routed_again() -> None:
    edit = compare_edit(CASE, edited(targets=("TJ-PANJ", "caricc")))
    assert not edit.changed and edit.blocked == ()


def test_changed_added_and_removed_fields_text_and_grading_are_carried() -> None:
    draft = edited(fields=(("vehicle", "white Kamaz, plate 01A999BC"),
                                  ("driver", "known")),
                    text="Heroin confirmed.", grading="A1")
    edit = compare_edit(CASE, draft)
    assert edit.fields == (
        FieldChange("vehicle", "white Kamaz", "white Kamaz, plate 01A999BC"),
        FieldChange("driver", None, "known"),
        FieldChange("route", "Hairatan -> Termez", None),
    )
    assert edit.text_changed and edit.grading_changed and not edit.due_changed
    assert edit.summary == ("vehicle", "driver", "route", "text", "grade")
    assert edit.revision.fields == draft.fields and edit.revision.text == "Heroin confirmed."


def test_what_decided_the_routing_cannot_be_edited() -> None:
    draft = edited(priority=Priority.FLASH, tlp=Tlp.GREEN, category="weapons",
                    ref="KZ-0007", text="changed too")
    assert compare_edit(CASE, draft).blocked == ("priority", "tlp", "cat", "ref")


def test_a_request_deadline_can_move() -> None:
    due = datetime(2026, 5, 1, 18, 0, tzinfo=UTC)
    request = replace(CASE, kind="request", due_ms=int(due.timestamp() * 1000))
    later = datetime(2026, 5, 1, 20, 0, tzinfo=UTC)
    draft = edited(kind="request", due=later)
    edit = compare_edit(request, draft)
    assert edit.due_changed and edit.revision.due_ms == int(later.timestamp() * 1000)
    assert edit.summary == ("due",)


def test_a_key_on_several_lines_is_compared_as_one() -> None:
    old = (("phone", "+998 1"), ("phone", "+998 2"))
    assert field_changes(old, old) == ()
    assert field_changes(old, (("phone", "+998 1"),)) == (
        FieldChange("phone", "+998 1; +998 2", "+998 1"),)
