"""Who may act for a post, and who holds which role.

A room maps to a post. Whoever is in the post's room acts for it, unless the post
lists its `officers`: then only those users and the post's own supervisors do.
Roles rank anyone < officer < supervisor < admin: an officer acts for the room's
post, a supervisor is on any post's `supervisors` list, an admin on
`access.admins`. Pure functions over the configured posts; the shell asks them
before it runs a command or lets a reaction, reply or edit work a case.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from liaison.commands.audience import Audience, AudienceKind
from liaison.commands.errors import CommandError
from liaison.commands.model import Post
from liaison.commands.registry import CommandSpec, Role
from liaison.commands.texts import Term

AUTHORITY_REFUSALS = frozenset({
    "error.case_room_not_post", "error.not_post_officer", "error.role_required",
    "error.update_not_origin", "error.close_not_origin", "error.cancel_not_origin",
    "chase.error.not_supervisor",
})
"""The refusals that say the sender may not do this here (as opposed to bad input); the
shell records them on the audit log. `error.case_unknown` is one too when the case
exists: the post asked about a case it may not see."""


SUPERVISOR_ROOMS = frozenset({AudienceKind.DIRECT, AudienceKind.SUPERVISORS})
DIRECT_ROOM_COMMANDS = frozenset({"ack"})
"""Officers' commands also taken in a person's own direct room with the bot: a named
recipient acknowledges a TLP:RED case there (its handler checks the delivery is theirs)."""


def acts_for(post: Post, user_id: str) -> bool:
    """Whether `user_id`, a member of the post's room, may act for the post."""
    return not post.officers or user_id in post.officers or user_id in post.supervisors


def held_role(user_id: str, *, post: Post | None, posts: Iterable[Post],
              admins: Collection[str]) -> Role:
    """The highest role `user_id` holds in the room of `post` (None: not a post's room)."""
    if user_id in admins:
        return Role.ADMIN
    if any(user_id in other.supervisors for other in posts):
        return Role.SUPERVISOR
    if post is not None and acts_for(post, user_id):
        return Role.OFFICER
    return Role.ANYONE


def command_refusal(spec: CommandSpec, user_id: str, *, post: Post | None,
                    posts: Iterable[Post], admins: Collection[str],
                    audience: Audience | None = None,
                    language: str = "en") -> CommandError | None:
    """Why `user_id` may not run `spec` in the room of `post`, or None when they may.

    An officer's command acts for the room's post, so it needs that post whatever
    else the sender is: a supervisor of one post does not act for another post that
    lists its officers. The few declared with `supervisor_rooms` also serve
    supervisors in their own rooms (`commands.audience`: a direct room, a supervisors'
    room), where what they may see is decided by the room's readers."""
    posts = tuple(posts)
    if spec.role is Role.OFFICER:
        if post is None:
            if (spec.name in DIRECT_ROOM_COMMANDS and audience is not None
                    and audience.kind is AudienceKind.DIRECT):
                return None
            if (spec.supervisor_rooms and audience is not None
                    and audience.kind in SUPERVISOR_ROOMS
                    and any(user_id in other.supervisors for other in posts)):
                return None
            return CommandError.of("error.case_room_not_post")
        if not acts_for(post, user_id):
            return CommandError.of("error.not_post_officer", post=post.id)
        return None
    if spec.role.admits(held_role(user_id, post=post, posts=posts, admins=admins)):
        return None
    return CommandError.of("error.role_required", command="!" + spec.name,
                           role=Term(f"role.{spec.role.value}"))
