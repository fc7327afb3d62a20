"""Requests as the law frames them (issue 20) — where each is handled:

- `class:`, `h:`, `action:` on `!alert`/`!request`: `case_terms` (hooked into
  `handlers.cases._open_case`; the decisions are `commands.case_terms`)
- `!delay REF 2d judicial …`: `delay`;  `!refuse REF law …`: `refuse`
- `!permit REF POST` (H2): `permit`;  `!update REF to:POST …` (passing a case on):
  `forward`, hooked into `handlers.cases.update`
- `!alert … tlp:red to:@user:server`: `open_red_case` (see `handlers.red`)

Each runs inside the command event's transaction (`handlers.context`). Only the target post
delays or refuses, in its own room; only the origin (or its supervisors) permits and
passes on. Every message about a case goes through `Services.send_case` (its readers'
disclosure); the requester is told at once, with a ringing `m.text`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from liaison.commands.audience import disclose
from liaison.commands.case_render import (
    case_label,
    post_label,
    render_not_sent,
    render_relayed_case,
)
from liaison.commands.case_terms import CaseTerms, resolve_terms
from liaison.commands.chasing import plan_delivery
from liaison.commands.deadlines import (
    class_deadline_ms,
    delayed_deadline_ms,
    parse_delay,
    parse_refusal,
)
from liaison.commands.durations import format_duration
from liaison.commands.errors import CommandError
from liaison.commands.handling import Forwarding, Handling, Terms, may_forward, parse_permit
from liaison.commands.links import CaseEventKind
from liaison.commands.localtime import Elapsed, Moment
from liaison.commands.model import Post
from liaison.commands.notify import OutboxKind, msgtype_for
from liaison.commands.parser import CaseDraft, CaseKind
from liaison.commands.records import Case, Delivery
from liaison.commands.red import is_person_list
from liaison.commands.registry import CommandRegistry, CommandSpec, Invocation, Reply
from liaison.commands.render import Line, Mention, Relayed, Span, Strong, render_notice
from liaison.commands.routing import RefusalReason, route
from liaison.commands.texts import text
from liaison.commands.vocabulary import OPTION_KEYS, fold_word
from liaison.handlers import cases as case_commands
from liaison.handlers import links, red
from liaison.handlers.context import Services, case_parties
from liaison.storage import cases, chasing, request_terms

Headline = Callable[[Post], list[Span]]
TO_WORDS = frozenset(fold_word(word) for word in ("to", *OPTION_KEYS["to"]))
"""`to:` as officers type it, in any of the three languages."""


def register_request_commands(registry: CommandRegistry) -> None:
    """Declare `!delay`, `!refuse` and `!permit` on `registry`."""
    registry.register(CommandSpec.declare("delay", delay))
    registry.register(CommandSpec.declare("refuse", refuse))
    registry.register(CommandSpec.declare("permit", permit, supervisor_rooms=True))


# --- the terms of a new case ------------------------------------------------------------


def case_terms(kind: CaseKind, split: Terms, draft: CaseDraft, invocation: Invocation,
               services: Services, origin: Post) -> CaseTerms:
    """The class, handling code and action typed on the first line, checked; a mistake
    is the sender's to fix before anything goes out (with the command's usage line)."""
    config = services.config
    try:
        return resolve_terms(
            kind, split, fields=draft.fields,
            due_ms=None if draft.due is None else int(draft.due.timestamp() * 1000),
            now_ms=_ms(invocation), timezone=origin.timezone,
            classes=config.requests.deadline_classes(), actions=config.handling.actions)
    except CommandError as error:
        raise invocation.command.usage_error(error, invocation.language) from None


def is_red_to_people(first_line: str) -> bool:
    """`to:` names people (`to:@name:server`): the TLP:RED path (`handlers.red`)."""
    tokens = first_line.split()
    for index, token in enumerate(tokens):
        head, sep, value = token.partition(":")
        if sep and fold_word(head) in TO_WORDS:
            following = tokens[index + 1] if index + 1 < len(tokens) else ""
            return is_person_list(value or following)
    return False


async def open_red_case(kind: CaseKind, invocation: Invocation, services: Services,
                        origin: Post, split: Terms) -> Reply:
    return await red.open_red_case(kind, invocation, services, origin, split)


async def acknowledge_red(invocation: Invocation, services: Services) -> Reply:
    """`!ack REF` in a named person's direct room: their own RED delivery only."""
    return await red.acknowledge_in_direct_room(invocation, services)


# --- !delay and !refuse -----------------------------------------------------------------


async def _target_delivery(services: Services, invocation: Invocation,
                           ref: str) -> tuple[Post, Case, Delivery]:
    """The request `ref` as the post whose room this is received it; only there."""
    post = case_commands.room_post(invocation, services)
    case, _ = await case_commands._visible_case(services, ref, invocation)
    delivery = await cases.delivery_for(services.conn, case.id, post.id)
    if delivery is None or delivery.room_id != invocation.room_id:
        raise CommandError.of("request.error.not_target", ref=case.ref)
    if case.kind != "request":
        raise CommandError.of("request.error.not_request", ref=case.ref)
    settled = ("answered" if delivery.answered_ms is not None else
               "refused" if delivery.refused_ms is not None else
               None if case.is_open else case.state)
    if settled is not None:
        raise CommandError.of("request.error.settled", ref=case.ref,
                              state=text(f"request.state.{settled}", invocation.language))
    return post, case, delivery


def _current_due(case: Case, delivery: Delivery, services: Services) -> int:
    """The delivery's deadline now: its own, the request's `due:`, or the policy's."""
    if delivery.due_ms is not None:
        return delivery.due_ms
    if case.due_ms is not None:
        return case.due_ms
    policy = services.config.chasing.policies.of(case.priority)
    return delivery.routed_ms + int(policy.answer.within.total_seconds() * 1000)


async def delay(invocation: Invocation) -> Reply:
    services = _services(invocation)
    command = parse_delay(invocation.args, invocation.lines, context_ref=invocation.context_ref)
    post, case, delivery = await _target_delivery(services, invocation, command.ref)
    config = services.config
    classes = config.requests.deadline_classes()
    current = _current_due(case, delivery, services)
    original = delivery.first_due_ms or current
    new_due = delayed_deadline_ms(
        current_due_ms=current, original_due_ms=original, delay=command.delay,
        name=case.deadline_class, deadline_class=classes.get(case.deadline_class or ""),
        default_max=config.requests.max_delay)
    conn, now_ms = services.conn, _ms(invocation)
    delays = sum(1 for entry in await cases.timeline(conn, case.id)
                 if entry.kind == "delayed" and entry.post == post.id)
    await request_terms.delay_delivery(
        conn, delivery, new_due_ms=new_due, by=invocation.sender, now_ms=now_ms,
        detail={"code": command.reason, "delay": format_duration(command.delay),
                "new_due_ms": new_due, "due_ms": current, "text": command.text})
    await _replan_answer(services, delivery, new_due, suffix=f"d{delays + 1}", now_ms=now_ms)
    await _tell_requester(services, case, "delayed", lambda origin: [
        Strong(text("request.delay.notice", origin.language,
                    post=post_label(post.id, _posts(services), origin.language),
                    ref=case.ref, delay=Elapsed(command.delay),
                    time=Moment(new_due, origin.timezone),
                    reason=text(f"request.reason.{command.reason}", origin.language)))],
        said=command.text, kind=OutboxKind.CASE_DELAYED,
        link_event=(CaseEventKind.DELAYED, post.id, invocation.sender, command.reason,
                    invocation.event_id), due_ms=new_due)
    return render_notice(text("request.delay.done", invocation.language, ref=case.ref,
                              time=Moment(new_due, post.timezone),
                              origin=_origin_label(case, services, invocation.language)),
                         language=invocation.language)


async def _replan_answer(services: Services, delivery: Delivery, new_due: int, *,
                         suffix: str, now_ms: int) -> None:
    """The answer phase of the delivery's chase starts over from the new deadline."""
    conn, config = services.conn, services.config
    for unplanned in await chasing.unplanned_deliveries(conn, delivery_id=delivery.id):
        await chasing.save_plan(conn, unplanned.delivery_id, plan_delivery(
            unplanned.subject, config.post_by_id(unplanned.post), config.chasing.policies),
            now_ms=now_ms)
    chased = next(iter(await chasing.steps_of(conn, delivery.id)), None)
    if chased is None:
        return
    steps = plan_delivery(replace(chased.delivery.subject, due_ms=new_due),
                          config.post_by_id(delivery.post), config.chasing.policies)
    await request_terms.replan_answer(conn, delivery.id, steps, suffix=suffix)


async def refuse(invocation: Invocation) -> Reply:
    services = _services(invocation)
    command = parse_refusal(invocation.args, invocation.lines,
                            context_ref=invocation.context_ref)
    post, case, delivery = await _target_delivery(services, invocation, command.ref)
    now_ms = _ms(invocation)
    await request_terms.refuse_delivery(
        services.conn, delivery, reason=command.reason, by=invocation.sender, now_ms=now_ms,
        detail={"code": command.reason, "text": command.text})
    await _tell_requester(services, case, "declined", lambda origin: [
        Strong(text("request.refuse.notice", origin.language,
                    post=post_label(post.id, _posts(services), origin.language),
                    ref=case.ref,
                    reason=text(f"request.reason.{command.reason}", origin.language)))],
        said=command.text, kind=OutboxKind.CASE_DECLINED,
        link_event=(CaseEventKind.DECLINED, post.id, invocation.sender, command.reason, ""))
    return render_notice(text("request.refuse.done", invocation.language, ref=case.ref,
                              origin=_origin_label(case, services, invocation.language)),
                         language=invocation.language)


async def _tell_requester(services: Services, case: Case, about: str, headline: Headline, *,
                          said: str, kind: OutboxKind,
                          link_event: tuple[CaseEventKind, str, str, str, str],
                          due_ms: int | None = None) -> None:
    """The origin room, in the case's thread, mentioning the officer who sent it: it
    rings (`commands.notify`), the requester must know at once. A request that came over a
    link is told to the partner's bot instead (`link_event`: what, the post, who, the
    reason code, what tells this one from another of its kind; `handlers.links`)."""
    event, post_id, by, code, unique = link_event
    if links.link_of_room(services, case.origin_room) is not None:
        await links.tell_partner(services, case, case.origin_room, event, post=post_id, by=by,
                                 said=said, outcome=code, unique=unique, due_ms=due_ms)
        return
    origin = services.config.post_by_id(case.origin_post)
    if origin is None:
        return
    msgtype = msgtype_for(kind, priority=case.priority, post=origin.id,
                          settings=services.config.notifications)
    first: list[Span] = [case_label(case, origin.language), " ", *headline(origin)]
    if msgtype == "m.text":
        first += [" ", Mention(case.origin_sender)]
    lines: list[Line] = [first]
    if said:
        lines.append(Relayed(said))
    notice = render_notice(*lines, language=origin.language)
    await services.send_case(case.origin_room,
                             case_commands.case_content(notice, case, about=about,
                                                        thread_root=case.origin_event_id,
                                                        msgtype=msgtype),
                             case=case, kind=kind)


# --- H2: !permit and passing a case on --------------------------------------------------


async def permit(invocation: Invocation) -> Reply:
    services = _services(invocation)
    post = case_commands.case_room_post(invocation, services)
    command = parse_permit(invocation.args, invocation.lines)
    case, _ = await case_commands._visible_case(services, command.ref, invocation)
    language = invocation.language
    if not case_commands.acts_for_origin(case, post, invocation.sender, services.config):
        raise CommandError.of("handling.error.permit_not_origin", ref=case.ref,
                              origin=_origin_label(case, services, language))
    if case.handling != Handling.H2.value:
        raise CommandError.of("handling.error.permit_not_h2", ref=case.ref)
    if services.config.post_by_id(command.post) is None:
        raise CommandError.of("handling.error.permit_unknown_post", post=command.post)
    added = await request_terms.add_permit(services.conn, case.id, command.post,
                                           by=invocation.sender, now_ms=_ms(invocation),
                                           origin_post=case.origin_post)
    msg_id = "handling.permit.done" if added else "handling.permit.already"
    return render_notice(text(msg_id, language, ref=case.ref, post=command.post),
                         language=language)


def split_forward_targets(args: str) -> tuple[list[str], str]:
    """`KZ-0042 to:UZ-TERMEZ,TJ-PANJ more text` → the new targets and the rest."""
    tokens = args.split()
    for index, token in enumerate(tokens):
        head, sep, value = token.partition(":")
        if sep and fold_word(head) in TO_WORDS:
            targets = [part.strip().upper() for part in value.split(",") if part.strip()]
            return targets, " ".join(tokens[:index] + tokens[index + 1:])
    return [], args


async def forward(invocation: Invocation, services: Services, case: Case,
                  targets: list[str]) -> Reply | None:
    """`!update REF to:POST [text]`: pass the case on to more posts, under TLP and H2; the
    new posts read the case (then the update, if any, like every target). None when it
    went to every new post; else the answer saying what was refused (nothing was sent)."""
    language, conn = invocation.language, services.conn
    if not case.forwardable:
        raise CommandError.of("handling.error.strict_forward", ref=case.ref,
                              tlp=case.tlp.value)
    delivered = [delivery.post for delivery in await cases.deliveries(conn, case.id)]
    permitted = await request_terms.permits(conn, case.id)
    first = await _first_targets(services, case)
    new = [post for post in targets if post not in delivered]
    if not new:
        return None
    barred = [post for post in new
              if not may_forward(case.handling, post, first_targets=first, permitted=permitted)]
    if barred:
        await services.record("h2-forward-refused", actor=invocation.sender, case_ref=case.ref,
                              room_id=invocation.room_id,
                              detail={"target": barred, "reason": Forwarding.UPDATE.value})
        raise CommandError.of("handling.error.h2_forward", ref=case.ref,
                              posts=", ".join(barred),
                              origin=_origin_label(case, services, language))
    origin = services.config.post_by_id(case.origin_post)
    assert origin is not None
    decision = route(origin=origin, targets=tuple(new), tlp=case.tlp, category=None,
                     directory=case_commands.directory_for(services))
    blocking = [refusal for refusal in decision.refusals
                if refusal.reason not in (RefusalReason.NOT_JOINED, RefusalReason.NOT_ENCRYPTED)]
    posts = _posts(services)
    if blocking or not decision.deliveries:
        return render_not_sent(blocking or decision.refusals, tlp=case.tlp, category=None,
                               posts=posts, language=language)
    await _relay_to(services, case, decision.deliveries, now_ms=_ms(invocation))
    return None


async def _first_targets(services: Services, case: Case) -> frozenset[str]:
    """The posts the case was routed to when it was sent (its first `routed` entries)."""
    history = await cases.timeline(services.conn, case.id)
    first = [entry.post for entry in history
             if entry.kind == "routed" and entry.ms == case.created_ms and entry.post]
    return frozenset(first)


async def _relay_to(services: Services, case: Case, post_ids: tuple[str, ...], *,
                    now_ms: int) -> None:
    """Relay the stored case to more posts, as `!alert` does (one delivery each)."""
    posts = _posts(services)
    conn = services.conn
    parties = await case_parties(conn, case)
    parties = replace(parties, targets=parties.targets | frozenset(post_ids))
    classes = services.config.requests.deadline_classes()
    for post_id in post_ids:
        target = posts[post_id]
        disclosure = disclose(services.audience(target.room), parties, posts)
        link = services.links.link_for_post(post_id)
        if link is not None:  # the partner's bot relays it (`handlers.links`)
            offered = await links.offer(
                services, case, target, link, disclosure=disclosure,
                targets=[other for other in post_ids
                         if services.links.link_for_post(other) == link])
            if offered is not None:
                await cases.add_delivery(conn, case.id, post=post_id, room_id=link.room,
                                         relay_txn_id=offered.txn_id, now_ms=now_ms,
                                         due_ms=case.due_ms)
            continue
        due_ms = None
        if case.kind == "request" and case.deadline_class in classes:
            due_ms = case.due_ms or class_deadline_ms(now_ms, classes[case.deadline_class or ""],
                                                      target.timezone)
        notice = render_relayed_case(case, target=target, posts=posts, due_ms=due_ms)
        msgtype = msgtype_for(OutboxKind.CASE_RELAY, priority=case.priority, post=post_id,
                              settings=services.config.notifications)
        message = await services.send(  # refused without the disclosure; keeps the txn_id
            target.room, case_commands.case_content(notice, case, msgtype=msgtype),
            kind=OutboxKind.CASE_RELAY, case_ref=case.ref, disclosure=disclosure)
        await cases.add_delivery(conn, case.id, post=post_id, room_id=target.room,
                                 relay_txn_id=message.txn_id, now_ms=now_ms, due_ms=due_ms)


# --- shared -----------------------------------------------------------------------------


def _services(invocation: Invocation) -> Services:
    services = invocation.services
    if not isinstance(services, Services):
        raise TypeError("request commands need the shell's Services")
    return services


def _posts(services: Services) -> dict[str, Post]:
    """Local posts and the partners' (`handlers.links.known_posts`), by id."""
    return links.known_posts(services)


def _origin_label(case: Case, services: Services, language: str) -> str:
    return post_label(case.origin_post, _posts(services), language)


def _ms(invocation: Invocation) -> int:
    return int(invocation.now.timestamp() * 1000)

