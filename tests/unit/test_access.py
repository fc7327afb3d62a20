"""Who may act for a post, and the roles a command needs, as a table."""

from __future__ import annotations

import pytest

from liaison.commands.access import acts_for, command_refusal, held_role
from liaison.commands.model import Agency, Post
from liaison.commands.registry import CommandSpec, Invocation, Reply, Role

OPEN = Post(id="UZ-TERMEZ", names={"en": "Termez"}, country="UZ", agency=Agency.BORDER,
            room="!uz:example.org")
LISTED = Post(id="TJ-PANJ", names={"en": "Panj"}, country="TJ", agency=Agency.BORDER,
              room="!tj:example.org", officers=("@farhod:example.org",),
              supervisors=("@tj-boss:example.org",))
POSTS = (OPEN, LISTED)
ADMINS = ("@operator:example.org",)


async def _handler(invocation: Invocation) -> Reply:
    raise AssertionError("not run")


def spec(role: Role) -> CommandSpec:
    return CommandSpec(name="alert" if role is Role.OFFICER else "report", handler=_handler,
                       role=role)


@pytest.mark.parametrize(("post", "user", "expected"), [
    (OPEN, "@anyone:example.org", True),
    (LISTED, "@farhod:example.org", True),
    (LISTED, "@tj-boss:example.org", True),
    (LISTED, "@visitor:example.org", False),
    (LISTED, "@operator:example.org", False),
])
def test_a_post_that_lists_officers_is_worked_only_by_them_and_its_supervisors(
    post: Post, user: str, expected: bool
) -> None:
    assert acts_for(post, user) is expected


@pytest.mark.parametrize(("user", "post", "role"), [
    ("@operator:example.org", None, Role.ADMIN),
    ("@tj-boss:example.org", OPEN, Role.SUPERVISOR),
    ("@farhod:example.org", LISTED, Role.OFFICER),
    ("@visitor:example.org", LISTED, Role.ANYONE),
    ("@visitor:example.org", OPEN, Role.OFFICER),
    ("@visitor:example.org", None, Role.ANYONE),
])
def test_held_role(user: str, post: Post | None, role: Role) -> None:
    assert held_role(user, post=post, posts=POSTS, admins=ADMINS) is role


@pytest.mark.parametrize(("role", "user", "post", "refused"), [
    (Role.ANYONE, "@visitor:example.org", None, None),
    (Role.OFFICER, "@visitor:example.org", OPEN, None),
    (Role.OFFICER, "@farhod:example.org", LISTED, None),
    (Role.OFFICER, "@visitor:example.org", LISTED, "error.not_post_officer"),
    (Role.OFFICER, "@operator:example.org", LISTED, "error.not_post_officer"),
    (Role.OFFICER, "@tj-boss:example.org", None, "error.case_room_not_post"),
    (Role.SUPERVISOR, "@tj-boss:example.org", None, None),
    (Role.SUPERVISOR, "@operator:example.org", OPEN, None),
    (Role.SUPERVISOR, "@farhod:example.org", LISTED, "error.role_required"),
    (Role.ADMIN, "@tj-boss:example.org", LISTED, "error.role_required"),
    (Role.ADMIN, "@operator:example.org", None, None),
])
def test_command_refusal(role: Role, user: str, post: Post | None, refused: str | None) -> None:
    error = command_refusal(spec(role), user, post=post, posts=POSTS, admins=ADMINS)
    assert (error.msg_id if error else None) == refused


def test_refusals_say_what_to_do() -> None:
    not_listed = command_refusal(spec(Role.OFFICER), "@visitor:example.org", post=LISTED,
                                 posts=POSTS, admins=ADMINS)
    assert not_listed is not None and not_listed.message.startswith(
        "You are not listed as an officer of TJ-PANJ")
    supervisors_only = command_refusal(spec(Role.SUPERVISOR), "@farhod:example.org",
                                       post=LISTED, posts=POSTS, admins=ADMINS)
    assert supervisors_only is not None
    assert supervisors_only.message == "!report is only for supervisors."
