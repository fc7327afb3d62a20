"""Hits: matching a case against every case the bot holds, and the commands about it.

- a new case (`handlers.cases`, `_store_and_relay`), an update (`update`), a reply
  carried on a case, an attachment (its SHA-256) and an edit of the opening message
  (`handlers.case_events`) call `match_case`: the entities (`commands.entities`) not yet
  held are stored in the index (`storage.hits`), matched, and each new link is told,
  once per pair of cases, in the threads of both cases by the hit/no-hit rules of
  `commands.hits`;
- `!check KIND VALUE` answers hit or no hit without opening a case;
- `!links REF` lists a case's links (and `!status` shows them, `status_links`);
- `!unlink REF OTHER` dismisses a link: kept as dismissed, never told again.

Every hit, check and dismissal is on the audit log; RED cases are never indexed, and
AMBER+STRICT ones only match cases of their own origin post. What a room is told of the
other case goes through `Services.send_case` (the room may see the case whose thread it
is) and `commands.hits.hit_view` (what it may learn of the other one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiosqlite

from liaison.commands.audience import CaseParties, Detail
from liaison.commands.entities import (
    STRONG_KINDS,
    Entity,
    EntityKind,
    EntityLimits,
    extract,
    normalise,
    normalise_dob,
)
from liaison.commands.errors import CommandError
from liaison.commands.hits import (
    HitRole,
    HitView,
    Link,
    Match,
    hit_view,
    indexed,
    link_line,
    may_match,
    render_check,
    render_hit,
)
from liaison.commands.identifiers import parse_ref
from liaison.commands.model import Tlp
from liaison.commands.names import name_score
from liaison.commands.notify import OutboxKind
from liaison.commands.records import Case
from liaison.commands.ref_commands import parse_ref_command
from liaison.commands.registry import CommandRegistry, CommandSpec, Invocation, Reply
from liaison.commands.render import Line, render_notice
from liaison.commands.routing import still_reaches
from liaison.commands.texts import FIELD_KEYS, fold_word, text
from liaison.commands.vocabulary import ENTITY_FIELDS
from liaison.handlers import cases as case_commands
from liaison.handlers.context import Services, case_parties
from liaison.handlers.links import known_posts
from liaison.storage import audit, cases
from liaison.storage import hits as index

_KIND_WORDS: Mapping[str, EntityKind] = {
    **{fold_word(kind.value): kind for kind in EntityKind},
    **{fold_word(typed): EntityKind(ENTITY_FIELDS[key]) for key, words in FIELD_KEYS.items()
       if ENTITY_FIELDS.get(key) in set(EntityKind) for typed in words},
}


def register_hit_commands(registry: CommandRegistry) -> None:
    for name, handler in (("check", check), ("links", links), ("unlink", unlink)):
        registry.register(CommandSpec.declare(name, handler))


# --- matching ----------------------------------------------------------------------------


async def match_case(services: Services, case: Case, *, fields: tuple[tuple[str, str], ...],
                     free_text: str, region: str | None = None,
                     extra: tuple[Entity, ...] = ()) -> None:
    """Index what `fields` and `free_text` of `case` hold (and `extra`: an attachment's
    digest), phones read in `region` (default: the origin post's country), and tell each
    new link."""
    settings = services.config.hits
    if not settings.enabled or not indexed(case.tlp):
        return
    origin = services.config.post_by_id(case.origin_post)
    extraction = extract(fields, free_text, region=region or (origin.country if origin else None),
                         limits=EntityLimits(max_entities=settings.max_entities_per_case,
                                             max_value_chars=settings.max_value_chars))
    now_ms = services.clock.now_ms()
    added = await index.add_entities(services.conn, case.id,
                                     (*extra, *extraction.entities), now_ms=now_ms)
    if extraction.dropped:
        await _tell_origin(services, case, "hit.capped", limit=settings.max_entities_per_case,
                           count=extraction.dropped)
    parties = await case_parties(services.conn, case)
    told = 0
    for found in await find_matches(services.conn, case.id, added,
                                    threshold=settings.name_threshold):
        other = await cases.case_by_id(services.conn, found.other_case_id)
        if other is None or not may_match(parties, await case_parties(services.conn, other)):
            continue
        earlier, later = (other, case) if other.id < case.id else (case, other)
        own, theirs = ((found.other, found.entity) if earlier is other
                       else (found.entity, found.other))
        if not await index.record_link(services.conn, earlier_case_id=earlier.id,
                                       later_case_id=later.id, kind=found.entity.kind,
                                       earlier_value=own.value, later_value=theirs.value,
                                       score=found.score, now_ms=now_ms):
            continue  # the pair was linked (or dismissed) before: told once, never again
        await services.record("hit", actor=audit.LIAISON, case_ref=later.ref, detail={
            "other": earlier.ref, "kind": found.entity.kind.value, "score": found.score})
        told += 1
        if told <= settings.max_notices_per_case:  # the rest are in !links: no hit storm
            link = Link(earlier.id, later.id, found.entity.kind, own.value, theirs.value,
                        found.score, now_ms)
            await _tell_link(services, link, earlier=earlier, later=later)
    if told > settings.max_notices_per_case:
        await _tell_origin(services, case, "hit.more",
                           count=told - settings.max_notices_per_case)


async def _tell_origin(services: Services, case: Case, msg_id: str, **params: int) -> None:
    """A note about the case's matching in its origin room, in the case's thread."""
    origin = services.config.post_by_id(case.origin_post)
    if origin is None:
        return
    notice = render_notice(text(msg_id, origin.language, ref=case.ref, **params),
                           language=origin.language)
    await services.send_case(case.origin_room, case_commands.case_content(
        notice, case, about="hit", thread_root=case.origin_event_id), case=case,
        kind=OutboxKind.CASE_HIT)


@dataclass(frozen=True)
class Found:
    """The best match of one other case for a case's entities."""

    other_case_id: int
    entity: Entity
    other: Entity
    score: int


async def find_matches(conn: aiosqlite.Connection, case_id: int | None,
                       entities: Iterable[Entity], *, threshold: int) -> list[Found]:
    """Each other case that holds one of `entities` (a strong identifier first, then a
    name from `threshold`), once, with the first entity that matched it. What matching
    costs inside a case's transaction (the bench measures this)."""
    found: dict[int, Found] = {}
    ordered = sorted(entities, key=lambda one: one.kind not in STRONG_KINDS)
    every = await index.candidates_of(conn, ordered, exclude_case_id=case_id)
    for entity, candidates in zip(ordered, every, strict=True):
        for other_id, other_entity in candidates:
            if other_id in found:
                continue
            score = _score(entity, other_entity, threshold)
            if score is not None:
                found[other_id] = Found(other_id, entity, other_entity, score)
    return list(found.values())


def _score(entity: Entity, other: Entity, threshold: int) -> int | None:
    """100 for the same identifier, a name's score from `threshold`, else None."""
    if entity.kind is not other.kind:
        return None
    if entity.kind in STRONG_KINDS:
        return 100 if entity.value == other.value else None
    score = name_score(entity.person, other.person)
    return score if score >= threshold else None


async def _tell_link(services: Services, link: Link, *, earlier: Case, later: Case) -> None:
    """The newcomer (the later case's origin) in its thread, then every post of the
    earlier case in its own thread of it; each room once."""
    rooms: set[str] = set()
    await _tell(services, link, own=later, other=earlier, room_id=later.origin_room,
                thread=later.origin_event_id, rooms=rooms)
    await _tell(services, link, own=earlier, other=later, room_id=earlier.origin_room,
                thread=earlier.origin_event_id, rooms=rooms)
    directory = case_commands.directory_for(services)
    for delivery in await cases.deliveries(services.conn, earlier.id):
        target = services.config.post_by_id(delivery.post)
        if target is None or still_reaches(target, delivery.room_id, earlier.tlp, directory):
            continue  # a room the case may no longer reach hears nothing more of it
        await _tell(services, link, own=earlier, other=later, room_id=delivery.room_id,
                    thread=delivery.relayed_event_id, rooms=rooms)


async def _tell(services: Services, link: Link, *, own: Case, other: Case, room_id: str,
                thread: str | None, rooms: set[str]) -> None:
    if room_id in rooms:
        return
    entity = link.own(own.id)
    view = await _view(services, room_id, other, link.role(own.id))
    if entity is None or view is HitView.NONE:
        return
    language = _language(services, room_id)
    notice = render_hit(Match(entity, other.ref, other.origin_post, link.score), view,
                        own_ref=own.ref, posts=known_posts(services),
                        language=language)
    content = case_commands.case_content(notice, own, about="hit", thread_root=thread)
    if await services.send_case(room_id, content, case=own, kind=OutboxKind.CASE_HIT):
        rooms.add(room_id)


async def _view(services: Services, room_id: str, other: Case, role: HitRole) -> HitView:
    seen = await services.disclosure(room_id, other)
    return hit_view(seen.detail if seen is not None else Detail.NONE, other.tlp, role)


def _language(services: Services, room_id: str) -> str:
    post = services.config.post_by_room(room_id)
    return post.language if post is not None else "en"


# --- !check ------------------------------------------------------------------------------


async def check(invocation: Invocation) -> Reply:
    services = case_commands._services(invocation)
    post = case_commands.room_post(invocation, services)
    language = invocation.language
    word, _, typed = invocation.args.strip().partition(" ")
    kind = _KIND_WORDS.get(fold_word(word)) if word else None
    if kind is None or kind is EntityKind.FILE:
        raise invocation.command.usage_error(CommandError.of(
            "check.kind_unknown", kind=word, kinds=", ".join(
                k.value for k in EntityKind if k is not EntityKind.FILE)), language)
    value = normalise(kind, typed, region=post.country) if typed.strip() else None
    if value is None:
        raise invocation.command.usage_error(CommandError.of(
            "check.value_bad", value=typed.strip(), kind=text(f"entity.{kind.value}",
                                                               language)), language)
    probe = Entity(kind, value, dob=normalise_dob(typed) if kind is EntityKind.NAME else None)
    asking = CaseParties(ref="", tlp=Tlp.GREEN, origin=post.id, targets=frozenset())
    found: list[tuple[Match, HitView]] = []
    seen_cases: set[int] = set()
    for case_id, other_entity in await index.candidates(services.conn, probe,
                                                        exclude_case_id=None):
        score = _score(probe, other_entity, services.config.hits.name_threshold)
        other = None if score is None or case_id in seen_cases else await cases.case_by_id(
            services.conn, case_id)
        if other is None or not may_match(asking, await case_parties(services.conn, other)):
            continue
        seen_cases.add(case_id)
        view = await _view(services, invocation.room_id, other, HitRole.NEWCOMER)
        if view is not HitView.NONE:
            found.append((Match(probe, other.ref, other.origin_post, score or 0), view))
    await services.record("hit-check", actor=invocation.sender, room_id=invocation.room_id,
                          detail={"kind": kind.value, "hits": len(found),
                                  "refs": [match.other_ref for match, _ in found]})
    return render_check(kind, value, found, posts=known_posts(services),
                        language=language)


# --- !links and !status ------------------------------------------------------------------


async def links(invocation: Invocation) -> Reply:
    services = case_commands._services(invocation)
    case_commands.case_room_post(invocation, services)
    ref = parse_ref_command("links", invocation.args, invocation.lines, text_rule="none",
                            context_ref=invocation.context_ref).ref
    case, disclosure = await case_commands._visible_case(services, ref, invocation)
    await services.record_disclosure(disclosure, case, asked_by=invocation.sender,
                                     shown="links")
    lines = await status_links(services, case, invocation.room_id, invocation.language)
    if not lines:
        return render_notice(text("links.none", invocation.language, ref=case.ref),
                             language=invocation.language)
    return render_notice(text("links.title", invocation.language, ref=case.ref), *lines,
                         language=invocation.language)


async def status_links(services: Services, case: Case, room_id: str,
                       language: str) -> list[Line]:
    """One line per link of `case` that is not dismissed, as `room_id` may read it."""
    lines: list[Line] = []
    posts = known_posts(services)
    for link in await index.links_of(services.conn, case.id):
        other = await cases.case_by_id(services.conn, link.other(case.id))
        entity = link.own(case.id)
        if other is None or entity is None:
            continue
        view = await _view(services, room_id, other, link.role(case.id))
        if view is not HitView.NONE:
            lines.append(link_line(Match(entity, other.ref, other.origin_post, link.score),
                                   view, own_ref=case.ref, posts=posts, language=language))
    return lines


# --- !unlink -----------------------------------------------------------------------------


async def unlink(invocation: Invocation) -> Reply:
    services = case_commands._services(invocation)
    post = case_commands.case_room_post(invocation, services)
    language = invocation.language
    words = invocation.args.split()
    if len(words) != 2:
        raise CommandError.of("error.ref_missing").with_usage(
            invocation.command.usage(language), invocation.command.usage_id)
    ref, other_ref = (parse_ref(word) for word in words)
    case, _ = await case_commands._visible_case(services, ref, invocation)
    if not case_commands.acts_for_origin(case, post, invocation.sender, services.config):
        raise CommandError.of("unlink.not_party", ref=case.ref, other=other_ref)
    other = await cases.case_by_ref(services.conn, other_ref)
    if other is None or not await index.unlink(services.conn, case.id, other.id,
                                               by=invocation.sender,
                                               now_ms=services.clock.now_ms()):
        return render_notice(text("unlink.none", language, ref=case.ref, other=other_ref),
                             language=language)
    await services.record("hit-unlinked", actor=invocation.sender, case_ref=case.ref,
                          room_id=invocation.room_id, detail={"other": other.ref})
    return render_notice(text("unlink.done", language, ref=case.ref, other=other.ref),
                         language=language)
