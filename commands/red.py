"""TLP:RED to named individuals: who may be named, and what each room learns.

RED never goes into a room. `!alert … tlp:red to:@a:server,@b:server` names people,
each of whom must be a listed officer or supervisor of a post cleared for RED; each gets
the case in an encrypted direct message with the bot. The origin room learns only the
reference and who was named. Escalations about a RED case name the reference and who
has not acknowledged, never the content.

Pure: the configured posts are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from liaison.commands.errors import CommandError
from liaison.commands.identifiers import strip_invisible
from liaison.commands.model import MXID_RE, ROOM_ID_RE, Post, Tlp


@dataclass(frozen=True)
class RedRecipient:
    """A named person and the post whose clearance lets them read RED."""

    user_id: str
    post: str


def is_person_list(targets: str) -> bool:
    """Whether `to:` names people (`@user:server`) rather than posts."""
    return any(part.strip().startswith("@") for part in strip_invisible(targets).split(","))


def red_recipients(targets: Iterable[str], posts: Mapping[str, Post]) -> list[RedRecipient]:
    """Each named user with the RED-cleared post they act for, in the order named; a
    CommandError for the first that is not a person, or not a cleared officer or
    supervisor."""
    found: list[RedRecipient] = []
    for raw in targets:
        user = strip_invisible(raw).strip()
        if not user:
            continue
        if ROOM_ID_RE.match(user) or user.startswith("#"):
            raise CommandError.of("red.error.room", value=user)
        if not MXID_RE.match(user):
            raise CommandError.of("red.error.not_person", value=user)
        post = cleared_post(user, posts)
        if post is None:
            raise CommandError.of("red.error.not_cleared", user=user)
        if user not in (recipient.user_id for recipient in found):
            found.append(RedRecipient(user, post.id))
    if not found:
        raise CommandError.of("red.error.nobody")
    return found


def cleared_post(user: str, posts: Mapping[str, Post]) -> Post | None:
    """The first post cleared for RED that lists `user` as an officer or supervisor."""
    return next((post for post in posts.values()
                 if post.clearance is Tlp.RED
                 and (user in post.officers or user in post.supervisors)), None)


def split_people(value: str) -> list[str]:
    return [part.strip() for part in strip_invisible(value).split(",") if part.strip()]
