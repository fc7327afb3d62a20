"""Who reads what the bot writes into a room, and how much of a case they may see.

Everyone in a room reads every message the bot writes there, so what a message may
say about a case is decided by the room's *audience*, never only by who asked:

- a post's room stands for that post: it sees the cases the post sent (in full) or
  received (as a target reads them), nothing else — whoever typed the command;
- a supervisors' room (`posts[].supervisors_room`) stands for the supervisors of its
  posts and for every other member in it: each of them must be allowed;
- a direct room with one configured person (the bot and that person, nobody else
  joined or invited) stands for that person alone: a supervisor's wider view — every
  case their posts sent or received — applies only there and in a supervisors' room
  whose readers all share it;
- the admins' room (`access.admins_room`) stands for its members and the admins;
- a link room (`commands.links`) stands for the partner bot: it sees the cases offered
  to one of its posts or offered by one (as a target reads them), never one above the
  link's highest TLP, never AMBER+STRICT or RED;
- any other room stands for nobody the bot knows: it sees nothing.

`case_detail` is the one answer to "may this audience see this case, and how much";
`disclose` wraps it into the `Disclosure` the shell demands before it queues any
message that carries case content (see `handlers.context.Services.send`). Pure functions
over the configured posts: no storage, no Matrix, no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from liaison.commands.model import Post, Tlp


class Detail(IntEnum):
    """How much of a case a reader may see; each level includes the ones below it."""

    NONE = 0
    """Nothing: to this reader the case does not exist."""
    REFERENCE = 1
    """That it exists: reference, TLP, kind and priority, the posts, times — never what
    officers wrote (a regional centre reached by an escalation)."""
    PARTICIPANT = 2
    """The case as a target post reads it: its content, deliveries, replies."""
    FULL = 3
    """The case as its origin reads it, refusals included."""


class AudienceKind(StrEnum):
    POST = "post"
    SUPERVISORS = "supervisors"
    DIRECT = "direct"
    ADMINS = "admins"
    LINK = "link"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Audience:
    """The readers of one room, as far as the bot can tell."""

    room_id: str
    kind: AudienceKind
    post: str | None = None
    """POST: the post whose room it is."""
    people: frozenset[str] = frozenset()
    """SUPERVISORS and DIRECT: the people who read it (without the bot)."""
    posts: tuple[str, ...] = ()
    """SUPERVISORS: the posts whose supervisors' room it is; LINK: the partner's posts."""
    red_cleared: bool = False
    """POST: the room is marked RED-cleared in the config and its members are exactly its
    post's people, so replies to the post's own TLP:RED cases may be carried into it."""
    ceiling: Tlp | None = None
    """LINK: the highest TLP the link carries (`Link.max_tlp`)."""

    @property
    def known(self) -> bool:
        return self.kind is not AudienceKind.UNKNOWN

    @property
    def person(self) -> str | None:
        """DIRECT: the one person the room is with."""
        return next(iter(self.people)) if self.kind is AudienceKind.DIRECT else None


@dataclass(frozen=True)
class CaseParties:
    """What visibility depends on: the case's TLP, its origin and the posts it reached."""

    ref: str
    tlp: Tlp
    origin: str
    targets: frozenset[str]


def configured_people(posts: Iterable[Post], admins: Collection[str] = ()) -> frozenset[str]:
    """The people the configuration names: supervisors, listed officers, admins."""
    people = set(admins)
    for post in posts:
        people.update(post.supervisors)
        people.update(post.officers)
    return frozenset(people)


def room_audience(room_id: str, *, posts: Iterable[Post], members: Collection[str] | None,
                  bot_user_id: str, admins: Collection[str] = (),
                  admins_room: str | None = None) -> Audience:
    """The audience of `room_id`. `members` are the room's joined and invited users
    (None when the bot does not know the room); the bot itself is not a reader."""
    posts = tuple(posts)
    for post in posts:
        if post.room == room_id:
            return Audience(room_id, AudienceKind.POST, post=post.id)
    readers = frozenset(members or ()) - {bot_user_id}
    if room_id == admins_room:
        return Audience(room_id, AudienceKind.ADMINS, people=readers | frozenset(admins))
    supervised = tuple(post for post in posts if post.supervisors_room == room_id)
    if supervised:
        people = readers.union(*(post.supervisors for post in supervised))
        return Audience(room_id, AudienceKind.SUPERVISORS, people=people,
                        posts=tuple(post.id for post in supervised))
    if len(readers) == 1 and readers <= configured_people(posts, admins):
        return Audience(room_id, AudienceKind.DIRECT, people=readers)
    return Audience(room_id, AudienceKind.UNKNOWN)


def link_audience(room_id: str, partner_posts: Iterable[str], ceiling: Tlp) -> Audience:
    """The audience of a link room: the partner bot, speaking for `partner_posts`."""
    return Audience(room_id, AudienceKind.LINK, posts=tuple(partner_posts), ceiling=ceiling)


LINK_NEVER = frozenset({Tlp.AMBER_STRICT, Tlp.RED})
"""TLPs that never cross a link, whatever its `max_tlp` (`docs/links.md`)."""


def link_view(audience: Audience, parties: CaseParties) -> Detail:
    """What a partner bot may see of a case: as a target reads it, when the case was
    offered to one of its posts or by one, and its TLP may cross the link."""
    ceiling = audience.ceiling or Tlp.CLEAR
    if parties.tlp in LINK_NEVER or not ceiling.covers(parties.tlp):
        return Detail.NONE
    posts = set(audience.posts)
    if parties.origin in posts or posts & parties.targets:
        return Detail.PARTICIPANT
    return Detail.NONE


def post_view(post_id: str, parties: CaseParties) -> Detail:
    """What a post's room may see of a case."""
    if post_id == parties.origin:
        return Detail.FULL
    if post_id in parties.targets:
        return Detail.PARTICIPANT
    return Detail.NONE


def person_view(user_id: str, parties: CaseParties, posts: Mapping[str, Post]) -> Detail:
    """What one person may see of a case where they alone read it: what the posts they
    supervise (or are a listed officer of) may see; a TLP:RED case's named recipient
    (its delivery is to them, by user id: `commands.red`) reads it as a target."""
    best = Detail.PARTICIPANT if user_id in parties.targets else Detail.NONE
    for post in posts.values():
        if user_id in post.supervisors or user_id in post.officers:
            best = max(best, post_view(post.id, parties))
    return best


def case_detail(audience: Audience, parties: CaseParties, posts: Mapping[str, Post]) -> Detail:
    """How much of the case everyone in the room may see: the least any reader may."""
    if parties.tlp is Tlp.RED and audience.kind is not AudienceKind.DIRECT:
        if audience.red_cleared and audience.post == parties.origin:
            return Detail.FULL  # the originator's own room, cleared for RED replies
        return Detail.NONE  # RED never goes into a room
    if audience.kind is AudienceKind.POST and audience.post is not None:
        return post_view(audience.post, parties)
    if audience.kind is AudienceKind.LINK:
        return link_view(audience, parties)
    if audience.kind in _PEOPLE_ROOMS and audience.people:
        return min(person_view(user, parties, posts) for user in audience.people)
    return Detail.NONE


_PEOPLE_ROOMS = frozenset({AudienceKind.SUPERVISORS, AudienceKind.DIRECT, AudienceKind.ADMINS})

REFERENCE_TLPS = frozenset({Tlp.CLEAR, Tlp.GREEN})
"""The TLPs under which a configured post that is neither origin nor target may learn
that a case exists (an escalation to the regional centre): GREEN may go to any
configured post. AMBER is for the posts named, AMBER+STRICT never onward, RED never
into a room: those reach nobody else, not even by reference."""


def escalation_detail(audience: Audience, parties: CaseParties,
                      posts: Mapping[str, Post]) -> Detail:
    """What an escalation may say in this room: what the audience may see of the case,
    at least its reference when the case's TLP lets any configured post know of it."""
    detail = case_detail(audience, parties, posts)
    if (detail is Detail.NONE and audience.known and audience.kind is not AudienceKind.LINK
            and parties.tlp in REFERENCE_TLPS):
        return Detail.REFERENCE
    if detail is Detail.NONE and parties.tlp is Tlp.RED and _supervise_red(audience, parties,
                                                                           posts):
        return Detail.REFERENCE  # who has not acknowledged, never the content
    return detail


def _supervise_red(audience: Audience, parties: CaseParties, posts: Mapping[str, Post]) -> bool:
    """Every reader supervises the origin of a TLP:RED case or the post of one of its
    named recipients: they may learn its reference from an escalation."""
    if audience.kind not in _PEOPLE_ROOMS or not audience.people:
        return False
    involved = [post for post in posts.values()
                if post.id == parties.origin
                or any(user in post.officers or user in post.supervisors
                       for user in parties.targets)]
    return all(any(user in post.supervisors for post in involved) for user in audience.people)


def post_figures_visible(audience: Audience, post_id: str, posts: Mapping[str, Post],
                         admins: Collection[str] = ()) -> bool:
    """Whether a post's response-time figures (`!report`) may be shown in the room: in the
    post's own room, or where every reader supervises it (or administers the bot)."""
    if audience.kind is AudienceKind.POST:
        return audience.post == post_id
    post = posts.get(post_id)
    if post is None or not audience.people or audience.kind is AudienceKind.UNKNOWN:
        return False
    return all(user in post.supervisors or user in admins for user in audience.people)


CASE_CONTENT_PREFIXES = ("case-", "chase-")
"""Outbox kinds that carry a case into a room: relays, updates, replies, attachments,
acknowledgements, closures, reminders, escalations, "taken" notices."""


def carries_case_content(kind: str) -> bool:
    """Whether an outgoing message of this kind says something about a case."""
    return kind.startswith(CASE_CONTENT_PREFIXES)


_ISSUED = object()


@dataclass(frozen=True)
class Disclosure:
    """Proof that case `ref` may be written into `room_id` at `detail`: only `disclose`
    makes one, and the shell queues no message carrying case content without it."""

    room_id: str
    ref: str
    detail: Detail
    issued: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.issued is not _ISSUED:
            raise TypeError("a Disclosure comes from commands.audience.disclose only")

    def covers(self, room_id: str, ref: str | None, needed: Detail) -> bool:
        return self.room_id == room_id and self.ref == ref and self.detail >= needed


def disclose(audience: Audience, parties: CaseParties, posts: Mapping[str, Post], *,
             needed: Detail = Detail.PARTICIPANT, escalation: bool = False) -> Disclosure | None:
    """A `Disclosure` of the case to the room if its audience may see at least `needed`
    of it (an escalation may fall back to the reference); None if it may not."""
    detail = (escalation_detail if escalation else case_detail)(audience, parties, posts)
    if detail < needed:
        return None
    return Disclosure(audience.room_id, parties.ref, detail, issued=_ISSUED)
