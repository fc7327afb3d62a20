"""Hits: when two cases hold the same identifier or person, who is told what.

Hit/no-hit, as the Europol Information System and Prüm work: a match is told to the
*owner* of the earlier case (its origin post, and the posts it was delivered to) and to
the *newcomer* (the origin of the new case), each in their own case's thread. What a
reader learns about the *other* case is decided here (`hit_view`), from what that
reader may see of it (`commands.audience`) and its TLP:

| reader may see the other case | role | other case's TLP | told |
|---|---|---|---|
| yes (origin or target) | any | not RED | `LINKED`: its reference, owning post, what matched |
| no | owner | CLEAR, GREEN | `REFERENCE`: the same (any post may know a GREEN case exists) |
| no | owner | AMBER, AMBER+STRICT | `POINTER`: post X holds related information |
| no | newcomer | any but RED | `POINTER`: post X holds related information, ask it |
| — | — | RED | nothing (RED is never indexed) |

`may_match` says which pairs are matched at all: never RED, and AMBER+STRICT only with a
case of the same origin post. What matched is always told as the reader's *own* case
holds it, so nothing of the other case's content reaches a reader who may not see it.
Pure functions; the handler (`handlers.hits`) asks them and sends what they decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from liaison.commands.audience import REFERENCE_TLPS, CaseParties, Detail
from liaison.commands.entities import STRONG_KINDS, Entity, EntityKind
from liaison.commands.model import Post, Tlp
from liaison.commands.render import Code, Line, Notice, render_notice
from liaison.commands.texts import text


class HitRole(StrEnum):
    OWNER = "owner"
    """A party to the earlier case (its origin or a target), told of the newer one."""
    NEWCOMER = "newcomer"
    """The origin of the newer case (or whoever asks `!check`), told of the earlier one."""


class HitView(StrEnum):
    LINKED = "linked"
    REFERENCE = "reference"
    POINTER = "pointer"
    NONE = "none"


def may_match(a: CaseParties, b: CaseParties) -> bool:
    """Whether two cases may be matched at all."""
    if Tlp.RED in (a.tlp, b.tlp):
        return False
    if Tlp.AMBER_STRICT in (a.tlp, b.tlp):
        return a.origin == b.origin
    return True


def indexed(tlp: Tlp) -> bool:
    """RED content is never indexed."""
    return tlp is not Tlp.RED


def hit_view(seen: Detail, other_tlp: Tlp, role: HitRole) -> HitView:
    """What a reader who may see `seen` of the other case is told of it (the table above)."""
    if other_tlp is Tlp.RED:
        return HitView.NONE
    if seen >= Detail.PARTICIPANT:
        return HitView.LINKED
    if role is HitRole.OWNER and other_tlp in REFERENCE_TLPS:
        return HitView.REFERENCE
    return HitView.POINTER


@dataclass(frozen=True)
class Match:
    """One entity of a case that matched an entity of another case."""

    own: Entity
    """As the reader's own case holds it."""
    other_ref: str
    other_post: str
    """The other case's origin post: its owner."""
    score: int = 100
    """100 for a strong identifier; a name's score otherwise."""

    @property
    def possible(self) -> bool:
        return self.own.kind not in STRONG_KINDS


def entity_label(entity: Entity, language: str) -> str:
    """`plate 01A123BC`, `номер 01A123BC`, in the reader's language."""
    return f"{text(f'entity.{entity.kind.value}', language)} {entity.value}"


def _post(post_id: str, posts: Mapping[str, Post], language: str) -> str:
    post = posts.get(post_id)
    name = post.name(language) if post is not None else post_id
    return text("post.label", language, name=name, id=post_id)


def render_hit(match: Match, view: HitView, *, own_ref: str, posts: Mapping[str, Post],
               language: str) -> Notice:
    """The hit notice in the reader's own case thread."""
    entity = entity_label(match.own, language)
    post = _post(match.other_post, posts, language)
    possible = ".possible" if match.possible else ""
    if view is HitView.POINTER:
        return render_notice(
            text(f"hit.pointer{possible}", language, ref=own_ref, entity=entity, post=post,
                 score=match.score),
            [text("hit.ask", language) + " ",
             Code(f"!request to:{match.other_post} ref:{own_ref}")],
            language=language)
    return render_notice(text(f"hit.linked{possible}", language, ref=own_ref, entity=entity,
                              other=match.other_ref, post=post, score=match.score),
                         language=language)


def link_line(match: Match, view: HitView, *, own_ref: str, posts: Mapping[str, Post],
              language: str) -> Line:
    """One line of `!links` (and of `!status`)."""
    entity = entity_label(match.own, language)
    post = _post(match.other_post, posts, language)
    score = text("hit.score", language, score=match.score) if match.possible else ""
    if view is HitView.POINTER:
        return [text("links.pointer", language, post=post, entity=entity) + score + " — ",
                Code(f"!request to:{match.other_post} ref:{own_ref}")]
    return text("links.linked", language, other=match.other_ref, post=post,
                entity=entity) + score


def render_check(kind: EntityKind, value: str, found: list[tuple[Match, HitView]], *,
                 posts: Mapping[str, Post], language: str) -> Notice:
    """The answer to `!check`: hit or no hit, by the same rules as a hit notice."""
    entity = entity_label(Entity(kind, value), language)
    if not found:
        return render_notice(text("check.none", language, entity=entity), language=language)
    lines: list[Line] = [text("check.hit", language, entity=entity)]
    for match, view in found:
        post = _post(match.other_post, posts, language)
        score = text("hit.score", language, score=match.score) if match.possible else ""
        if view is HitView.POINTER:
            lines.append([text("check.pointer", language, post=post) + score + " — ",
                          Code(f"!request to:{match.other_post}")])
        else:
            lines.append(text("check.linked", language, other=match.other_ref,
                              post=post) + score)
    return render_notice(*lines, language=language)


@dataclass(frozen=True)
class Link:
    """A stored hit between two cases (`storage.hits`), the earlier first."""

    earlier_case_id: int
    later_case_id: int
    kind: EntityKind
    earlier_value: str | None
    later_value: str | None
    score: int
    found_ms: int
    unlinked_ms: int | None = None

    def own(self, case_id: int) -> Entity | None:
        """What matched, as case `case_id` holds it (None once that case was purged)."""
        value = self.earlier_value if case_id == self.earlier_case_id else self.later_value
        return None if value is None else Entity(self.kind, value)

    def other(self, case_id: int) -> int:
        return self.later_case_id if case_id == self.earlier_case_id else self.earlier_case_id

    def role(self, case_id: int) -> HitRole:
        """The role of case `case_id`'s readers: owner of the earlier case, or newcomer."""
        return HitRole.OWNER if case_id == self.earlier_case_id else HitRole.NEWCOMER
