"""Where a case may go: targets resolved to posts, filtered by room state and TLP.

`route()` is a pure function of the origin post, the typed targets, the TLP, the
category and a `Directory` (configuration plus live room state). It never drops
a target silently: every target it does not deliver to comes back as a
`Refusal` with a reason the sender can act on.

TLP 2.0 policy, enforced here:

- CLEAR and GREEN: any configured post whose room qualifies.
- AMBER: only posts named by id; a group, a country code or `neighbours` is
  refused as a whole (name the posts instead), and the post's clearance must
  be AMBER or higher.
- AMBER+STRICT: as AMBER, and the decision says it may not be forwarded onward.
- RED: never into a room; everything is refused (RED is for named individuals).

Partner posts (`commands.links.LinkView`: the posts each linked bot published, each
in its link room) are routed like local ones — by id, country code, group (a partner
post's published group memberships join the local group of that name) and the origin's
`neighbours` — with their clearance as published. On top of that, a case crosses a link
only if the link lets its TLP cross (`commands.links.may_cross`): AMBER+STRICT and RED
never do, nor anything above the link's `max_tlp` (`LINK_TLP`).

Category rules (`cat:financial` adds the national FIU) are routing the operator
configured on purpose, so their posts count as named explicitly and are allowed
for AMBER when the clearance covers it. For AMBER+STRICT, where the sender limits
the case to the posts they name, rule additions are not applied; each is reported
so the sender can name the post if it should receive the case.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from liaison.commands.links import Link, LinkView, may_cross
from liaison.commands.model import CategoryRule, Group, Post, Tlp
from liaison.commands.parser import NEIGHBOURS
from liaison.commands.texts import NEIGHBOUR_WORDS, fold_word

SAME_COUNTRY = "same-country:"


class RefusalReason(StrEnum):
    UNKNOWN_TARGET = "unknown_target"
    """Not a post id, group, country code or `neighbours` (or the config names a missing post)."""
    EMPTY = "empty"
    """A group, country or `neighbours` with no post other than the origin."""
    SELF = "self"
    """The origin post itself, named explicitly."""
    TLP_RED_ROOM = "tlp_red_room"
    """RED is never delivered into a room."""
    TLP_AMBER_FANOUT = "tlp_amber_fanout"
    """AMBER cases go only to posts named by id."""
    TLP_STRICT_RULE = "tlp_strict_rule"
    """A category rule's post left out of an AMBER+STRICT case."""
    CLEARANCE = "clearance"
    """The post's clearance is below the case's TLP."""
    NOT_JOINED = "not_joined"
    """The bot is not in the post's room."""
    NOT_ENCRYPTED = "not_encrypted"
    """The post's room is not end-to-end encrypted."""
    LINK_TLP = "link_tlp"
    """A partner post behind a link that does not let the case's TLP cross: AMBER+STRICT
    and RED never cross a link, nor anything above the link's `max_tlp`."""


@dataclass(frozen=True)
class Directory:
    """What routing knows: posts, groups and rules from the config, live room state, and
    the partner posts of the links (`links`; none by default)."""

    posts: Mapping[str, Post]
    groups: Mapping[str, Group]
    category_rules: Sequence[CategoryRule]
    joined_rooms: frozenset[str]
    encrypted_rooms: frozenset[str]
    links: LinkView = field(default_factory=LinkView)

    def all_posts(self) -> dict[str, Post]:
        """Local and partner posts by id; a local post wins over a partner's of the
        same id (a partner cannot shadow a configured post)."""
        return {**self.links.partner_posts(), **self.posts}

    def post(self, post_id: str) -> Post | None:
        """The local or partner post `post_id` (exact id), if any."""
        local = self.posts.get(post_id)
        return local if local is not None else self.links.partner_posts().get(post_id)

    def link_of(self, post: Post) -> Link | None:
        """The link `post` is behind when it is a partner post (its room is a link
        room and it is not a local post); None for a local post."""
        if post.id in self.posts:
            return None
        return self.links.link_for_room(post.room)


@dataclass(frozen=True)
class Refusal:
    """One target that will not get the case. `target` is the post id when the target
    resolved to a post, otherwise the token as typed; `detail` says how it was reached
    or what to do (English, for logs and the audit trail; the shell renders `reason`)."""

    target: str
    reason: RefusalReason
    suggestions: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class RoutingDecision:
    deliveries: tuple[str, ...]
    """Post ids, in the order the targets named them, each once, never the origin."""
    refusals: tuple[Refusal, ...]
    forwardable: bool = True
    """False for AMBER+STRICT (and RED): no post may pass the case on to another."""


def route(
    *,
    origin: Post,
    targets: Sequence[str],
    tlp: Tlp,
    category: str | None,
    directory: Directory,
) -> RoutingDecision:
    """Decide which posts receive a case and why the others do not."""
    forwardable = tlp not in (Tlp.AMBER_STRICT, Tlp.RED)
    if tlp is Tlp.RED:
        refusals = tuple(
            Refusal(token, RefusalReason.TLP_RED_ROOM,
                    detail="RED is only for named individuals, in direct messages")
            for token in dict.fromkeys(targets)
        )
        return RoutingDecision((), refusals, forwardable)
    plan = _Plan(origin, tlp, directory)
    for token in targets:
        plan.add_target(token)
    if category is not None:
        plan.add_category(category)
    return RoutingDecision(tuple(plan.deliveries), tuple(plan.refusals), forwardable)


def still_reaches(post: Post, room_id: str, tlp: Tlp,
                  directory: Directory) -> RefusalReason | None:
    """Why a post the case was delivered to (in `room_id`) may not get more of it now.

    Replies, updates and edits of a case travel only between its origin and the
    posts it was routed to; nothing of it ever goes to a post it was not delivered
    to. That is what "never forwarded onward" means for AMBER+STRICT, and it holds
    for every TLP. Those posts are checked again each time, because the operator
    may have lowered a clearance or the room may have changed since routing. A partner
    post (its room a link room) is checked against the link's TLP rule first."""
    link = directory.links.link_for_room(room_id)
    if link is not None and not may_cross(link, tlp):
        return RefusalReason.LINK_TLP
    if tlp is Tlp.RED or not post.clearance.covers(tlp):
        return RefusalReason.CLEARANCE
    if room_id not in directory.joined_rooms:
        return RefusalReason.NOT_JOINED
    if room_id not in directory.encrypted_rooms:
        return RefusalReason.NOT_ENCRYPTED
    return None


class _Plan:
    """Accumulates deliveries and refusals, each post decided once."""

    def __init__(self, origin: Post, tlp: Tlp, directory: Directory) -> None:
        self.origin = origin
        self.tlp = tlp
        self.directory = directory
        self.deliveries: list[str] = []
        self.refusals: list[Refusal] = []
        self._decided: set[str] = set()
        every = directory.all_posts()
        self._posts = {post_id.upper(): post for post_id, post in every.items()}
        self._groups = _merged_groups(directory.groups, directory.links.partner_groups())
        self._countries = {post.country for post in every.values()}

    def add_target(self, token: str) -> None:
        key = token.strip()
        if fold_word(key) in _NEIGHBOUR_FOLDED:
            self._fan_out(key, self.origin.neighbours, f"neighbours of {self.origin.id}")
            return
        post = self._posts.get(key.upper())
        if post is not None:
            if post.id == self.origin.id:
                self._refuse(Refusal(post.id, RefusalReason.SELF,
                                     detail="the case starts at this post"))
                return
            self._consider(post, via="")
            return
        group = self._groups.get(key.lower())
        if group is not None:
            self._fan_out(group.name, group.posts, f"group {group.name}")
            return
        if key.upper() in self._countries:
            country = key.upper()
            members = [post.id for post in self._posts.values() if post.country == country]
            self._fan_out(country, members, f"country {country}")
            return
        self._refuse(Refusal(key, RefusalReason.UNKNOWN_TARGET, self._nearest(key),
                             detail="not a post id, group, country code or neighbours"))

    def add_category(self, category: str) -> None:
        for rule in self.directory.category_rules:
            if rule.category.lower() != category.lower():
                continue
            for entry in rule.add:
                for post_id in self._rule_posts(entry):
                    self._add_rule_post(post_id, rule.category)

    def _rule_posts(self, entry: str) -> list[str]:
        if not entry.startswith(SAME_COUNTRY):
            return [entry]
        agency = entry.removeprefix(SAME_COUNTRY)
        return [post.id for post in self.directory.posts.values()
                if post.country == self.origin.country and post.agency.value == agency]

    def _add_rule_post(self, post_id: str, category: str) -> None:
        via = f"added by the category rule for {category}"
        post = self._posts.get(post_id.upper())
        if post is None:
            self._refuse(Refusal(post_id, RefusalReason.UNKNOWN_TARGET,
                                 detail=f"{via}, but no such post is configured"))
            return
        if post.id == self.origin.id or post.id in self._decided:
            return
        if self.tlp is Tlp.AMBER_STRICT:
            self._refuse(Refusal(post.id, RefusalReason.TLP_STRICT_RULE, (post.id,),
                                 detail=f"{via}; AMBER+STRICT goes only to posts you name, "
                                 f"so name {post.id} if it should receive this"))
            return
        self._consider(post, via=via)

    def _fan_out(self, token: str, members: Sequence[str], label: str) -> None:
        others = [post_id for post_id in members if post_id.upper() != self.origin.id]
        if self.tlp in (Tlp.AMBER, Tlp.AMBER_STRICT):
            named = tuple(post_id for post_id in others if post_id.upper() in self._posts)
            self._refusals_add(Refusal(
                token, RefusalReason.TLP_AMBER_FANOUT, named,
                detail=f"TLP:{self.tlp.value} goes only to posts named by id, not to the "
                f"{label}; name the posts explicitly",
            ))
            return
        if not others:
            self._refusals_add(Refusal(token, RefusalReason.EMPTY,
                                       detail=f"{label}: no other post is configured"))
            return
        for post_id in others:
            post = self._posts.get(post_id.upper())
            if post is None:
                self._refuse(Refusal(post_id, RefusalReason.UNKNOWN_TARGET,
                                     detail=f"listed in {label}, but no such post is configured"))
            else:
                self._consider(post, via=f"via {label}")

    def _consider(self, post: Post, *, via: str) -> None:
        """Deliver to the post if its clearance and room allow; refuse it otherwise."""
        if post.id in self._decided:
            return
        link = self.directory.link_of(post)
        if link is not None and not may_cross(link, self.tlp):
            self._refuse(Refusal(post.id, RefusalReason.LINK_TLP, detail=_joined(
                f"TLP:{self.tlp.value} does not cross the link {link.name}: AMBER+STRICT "
                f"and RED never cross a link, and this one carries at most "
                f"TLP:{link.max_tlp.value}", via)))
        elif not post.clearance.covers(self.tlp):
            self._refuse(Refusal(post.id, RefusalReason.CLEARANCE, detail=_joined(
                f"cleared up to {post.clearance.value}, the case is {self.tlp.value}", via)))
        elif post.room not in self.directory.joined_rooms:
            self._refuse(Refusal(post.id, RefusalReason.NOT_JOINED,
                                 detail=_joined(f"the bot is not in {post.room}", via)))
        elif post.room not in self.directory.encrypted_rooms:
            self._refuse(Refusal(post.id, RefusalReason.NOT_ENCRYPTED,
                                 detail=_joined(f"{post.room} is not encrypted", via)))
        else:
            self._decided.add(post.id)
            self.deliveries.append(post.id)

    def _refuse(self, refusal: Refusal) -> None:
        """Record a refusal for a post (once), so it is not reconsidered via another target."""
        if refusal.target in self._decided:
            return
        self._decided.add(refusal.target)
        self.refusals.append(refusal)

    def _refusals_add(self, refusal: Refusal) -> None:
        """Record a refusal of a whole target (a group, a country), once per target."""
        if refusal not in self.refusals:
            self.refusals.append(refusal)

    def _nearest(self, token: str) -> tuple[str, ...]:
        candidates = {post_id: post_id for post_id in self._posts if post_id != self.origin.id}
        candidates.update({name: name for name in self._groups})
        candidates.update({code: code for code in self._countries})
        candidates[NEIGHBOURS] = NEIGHBOURS
        by_fold = {candidate.lower(): shown for candidate, shown in candidates.items()}
        near = difflib.get_close_matches(token.lower(), list(by_fold), n=3, cutoff=0.6)
        return tuple(by_fold[match] for match in near)


_NEIGHBOUR_FOLDED = frozenset(fold_word(word) for word in NEIGHBOUR_WORDS)


def _merged_groups(local: Mapping[str, Group],
                   partner: Mapping[str, tuple[str, ...]]) -> dict[str, Group]:
    """Groups by lower-case name: the configured ones, each joined by the partner posts
    that published membership of it, and the groups only partners published."""
    merged = {name.lower(): group for name, group in local.items()}
    for name, members in partner.items():
        known = merged.get(name.lower())
        if known is None:
            merged[name.lower()] = Group.model_construct(name=name, posts=members)
        else:
            extra = tuple(post_id for post_id in members if post_id not in known.posts)
            merged[name.lower()] = Group.model_construct(name=known.name,
                                                         posts=known.posts + extra)
    return merged


def _joined(reason: str, via: str) -> str:
    return f"{reason} ({via})" if via else reason
