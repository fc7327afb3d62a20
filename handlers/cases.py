"""The case commands — where each is handled:

- `!alert`, `!request`: `alert`, `request` (parse, route, store, relay, answer the sender)
- `!ack REF`: `ack`
- `!update REF text`: `update`
- `!close REF [outcome]`, `!cancel REF`: `close`, `cancel`
- `!status REF`: `status`;  `!pending`: `pending`

Every handler runs inside the command event's transaction (see `handlers.context`):
what it stores and every message it queues commit together with the claim of the
event, or not at all. Parsing, routing and rendering are the pure core
(`commands.parser`, `commands.routing`, `commands.case_render`); this module reads
and writes `storage.cases` and queues messages through the outbox.

Who may do what: the command's room must be a configured post's room — or, for
`!status`, `!update`, `!close` and `!cancel`, a supervisor's own room (their direct
room with the bot, a supervisors' room). What the answer may say is decided by who
reads the room (`commands.audience`), never only by who asked: a post's room sees the
cases its post sent or received, a supervisor's own room the cases of the posts they
supervise; to anyone else a case does not exist. Only a target post acknowledges;
only the origin post (or its supervisors) updates, closes or cancels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal
from zoneinfo import ZoneInfo

from liaison.commands.access import SUPERVISOR_ROOMS
from liaison.commands.audience import Audience, CaseParties, Detail, Disclosure, disclose
from liaison.commands.case_render import (
    CASE_KEY,
    case_metadata,
    post_label,
    render_ack_notice,
    render_finished_notice,
    render_not_sent,
    render_pending,
    render_relayed_case,
    render_routed,
    render_status,
    render_update_notice,
)
from liaison.commands.case_terms import CaseTerms, delivery_due_ms
from liaison.commands.errors import CommandError
from liaison.commands.handling import split_terms
from liaison.commands.links import Attachment as LinkAttachment
from liaison.commands.links import CaseEventKind
from liaison.commands.localtime import Moment
from liaison.commands.model import Post
from liaison.commands.notify import OutboxKind, case_notice_kind, msgtype_for
from liaison.commands.parser import (
    CaseDraft,
    CaseKind,
    parse_ack,
    parse_cancel,
    parse_case,
    parse_close,
    parse_ref_command,
    parse_status,
)
from liaison.commands.records import Case, Delivery, NewCase, TimelineKind
from liaison.commands.registry import CommandRegistry, CommandSpec, Invocation, Reply
from liaison.commands.render import Notice, notice_content, render_notice
from liaison.commands.routing import (
    Directory,
    Refusal,
    RefusalReason,
    RoutingDecision,
    route,
    still_reaches,
)
from liaison.commands.texts import Term, text
from liaison.config import Config
from liaison.handlers import links  # issue 18: cases across a link between bots
from liaison.handlers import requests as law  # issue 20: class:, h:, action:, RED, passing on
from liaison.handlers.context import Services, case_parties
from liaison.storage import cases

SUPERVISOR_COMMANDS = frozenset({"update", "close", "cancel", "status"})
"""Also served in a supervisor's own room, about the cases of the posts they supervise."""
_UNREACHABLE = frozenset({RefusalReason.NOT_JOINED, RefusalReason.NOT_ENCRYPTED})


def register_case_commands(registry: CommandRegistry) -> None:
    """Declare the case commands on `registry`, with aliases and texts from the catalogue."""
    for name, handler in (("alert", alert), ("request", request), ("ack", ack),
                          ("update", update), ("close", close), ("cancel", cancel),
                          ("status", status), ("pending", pending)):
        registry.register(CommandSpec.declare(name, handler,
                                              supervisor_rooms=name in SUPERVISOR_COMMANDS))


# --- !alert and !request ----------------------------------------------------------------


async def alert(invocation: Invocation) -> Reply:
    return await _open_case("alert", invocation)


async def request(invocation: Invocation) -> Reply:
    return await _open_case("request", invocation)


async def _open_case(kind: CaseKind, invocation: Invocation) -> Reply:
    services = _services(invocation)
    origin = room_post(invocation, services)
    split = split_terms(invocation.args)  # class:, h:, action: (issue 20)
    if law.is_red_to_people(split.rest):
        return await law.open_red_case(kind, invocation, services, origin, split)
    draft = parse_case(kind, split.rest, invocation.lines, now=invocation.now,
                       tz=ZoneInfo(origin.timezone))
    terms = law.case_terms(kind, split, draft, invocation, services, origin)
    if draft.ref is not None:
        try:
            await _visible_case(services, draft.ref, invocation)
        except CommandError as error:
            raise invocation.command.usage_error(error, invocation.language) from None
    posts = links.known_posts(services)  # a partner's posts too (`handlers.links`)
    decision = route(origin=origin, targets=draft.targets, tlp=draft.tlp,
                     category=draft.category, directory=directory_for(services))
    blocking = [refusal for refusal in decision.refusals if blocks(refusal, draft)]
    if blocking or not decision.deliveries:
        return render_not_sent(blocking or decision.refusals, tlp=draft.tlp,
                               category=draft.category, posts=posts,
                               language=invocation.language)
    new = _new_case(invocation, origin, draft, decision, terms)
    links.check_offers(services, new, decision.deliveries)  # a case too large for a link
    case = await _store_and_relay(invocation, services, new, draft, decision, posts, terms)
    return render_routed(case, decision.deliveries, decision.refusals, posts=posts,
                         language=invocation.language)


def _new_case(invocation: Invocation, origin: Post, draft: CaseDraft,
              decision: RoutingDecision, terms: CaseTerms) -> NewCase:
    """The routed draft as it is about to be stored."""
    return NewCase(
        kind=draft.kind, origin_post=origin.id, origin_country=origin.country,
        priority=draft.priority, tlp=draft.tlp, category=draft.category,
        grading=draft.grading, related_ref=draft.ref, fields=terms.fields, text=draft.text,
        due_ms=None if draft.due is None else int(draft.due.timestamp() * 1000),
        forwardable=decision.forwardable, origin_room=invocation.room_id,
        origin_event_id=invocation.event_id, origin_sender=invocation.sender,
        created_ms=_ms(invocation), deadline_class=terms.deadline_class,
        handling=None if terms.handling is None else terms.handling.value,
        handling_text=terms.handling_text, action=terms.action,
    )


async def _store_and_relay(invocation: Invocation, services: Services, new: NewCase,
                           draft: CaseDraft, decision: RoutingDecision,
                           posts: Mapping[str, Post], terms: CaseTerms) -> Case:
    """Store the case, queue one relayed message per delivery, record the refusals."""
    now_ms = new.created_ms
    conn = services.conn
    case = await cases.create_case(conn, new)
    parties = CaseParties(ref=case.ref, tlp=case.tlp, origin=case.origin_post,
                          targets=frozenset(decision.deliveries))
    related = None if draft.ref is None else await cases.case_by_ref(conn, draft.ref)
    related_parties = None if related is None else await case_parties(conn, related)
    for post_id in decision.deliveries:
        target = posts[post_id]
        audience = services.audience(target.room)
        disclosure = disclose(audience, parties, posts)
        related_visible = related_parties is not None and disclose(
            audience, related_parties, posts) is not None
        due_ms = delivery_due_ms(terms, due_ms=case.due_ms, routed_ms=now_ms,
                                 target_timezone=target.timezone,
                                 classes=services.config.requests.deadline_classes())
        link = services.links.link_for_post(post_id)
        if link is not None:  # the partner's bot relays and chases it (`handlers.links`)
            offered = await links.offer(
                services, case, target, link, disclosure=disclosure,
                targets=[other for other in decision.deliveries
                         if services.links.link_for_post(other) == link])
            if offered is not None:
                await cases.add_delivery(conn, case.id, post=post_id, room_id=link.room,
                                         relay_txn_id=offered.txn_id, now_ms=now_ms,
                                         due_ms=due_ms)
            continue
        notice = render_relayed_case(case, target=target, posts=posts,
                                     related_visible=related_visible, due_ms=due_ms)
        msgtype = msgtype_for(OutboxKind.CASE_RELAY, priority=case.priority, post=post_id,
                              settings=services.config.notifications)
        message = await services.send(  # refused without the disclosure; keeps the txn_id
            target.room, case_content(notice, case, msgtype=msgtype),
            kind=OutboxKind.CASE_RELAY, case_ref=case.ref, disclosure=disclosure)
        await cases.add_delivery(conn, case.id, post=post_id, room_id=target.room,
                                 relay_txn_id=message.txn_id, now_ms=now_ms, due_ms=due_ms)
    for refusal in decision.refusals:
        await cases.add_timeline(
            conn, case.id, TimelineKind.REFUSED, ms=now_ms,
            post=refusal.target if refusal.target in posts else None,
            detail={"target": refusal.target, "reason": refusal.reason.value,
                    "detail": refusal.detail},
        )
    from liaison.handlers import hits  # handlers.hits builds on this module
    await hits.match_case(services, case, fields=case.fields, free_text=case.text)
    return case


def blocks(refusal: Refusal, draft: CaseDraft) -> bool:
    """Whether a refusal stops the whole case: a target the officer named that cannot
    get it as typed (a typo, a TLP it may not receive, RED) is a mistake to fix before
    anything goes out. An unreachable room, or a post reached through a group, a
    country or a rule, only drops that post."""
    if refusal.reason is RefusalReason.TLP_RED_ROOM:
        return True
    if refusal.reason in _UNREACHABLE:
        return False
    return refusal.target in draft.targets


# --- !ack -------------------------------------------------------------------------------


async def ack(invocation: Invocation) -> Reply:
    services = _services(invocation)
    if services.config.post_by_room(invocation.room_id) is None:  # a TLP:RED direct room
        return await law.acknowledge_red(invocation, services)
    post = room_post(invocation, services)
    language = invocation.language
    ref = parse_ack(invocation.args, invocation.lines, context_ref=invocation.context_ref)
    case, _ = await _visible_case(services, ref, invocation)
    if case.origin_post == post.id:
        raise CommandError.of("error.ack_own", ref=case.ref)
    delivery = await cases.delivery_for(services.conn, case.id, post.id)
    if delivery is None:  # visible, but not as a target
        raise CommandError.of("error.case_unknown", ref=case.ref)
    if not case.is_open:
        return render_notice(text("case.ack.finished", language, ref=case.ref,
                                  state=text(f"case.state.{case.state}", language)),
                             language=language)
    if not await acknowledge_delivery(services, case, delivery, by=invocation.sender,
                                      now_ms=_ms(invocation)):
        return render_notice(text(
            "case.ack.already", language, ref=case.ref, who=delivery.acknowledged_by,
            time=Moment(delivery.acknowledged_ms or 0, post.timezone)), language=language)
    return render_notice(text("case.ack.done", language, ref=case.ref, origin=post_label(
        case.origin_post, links.known_posts(services), language)), language=language)


async def acknowledge_delivery(services: Services, case: Case, delivery: Delivery, *, by: str,
                               now_ms: int) -> bool:
    """Store the acknowledgement and tell the origin room, in the case's thread; False (and
    nothing stored or said) when the delivery was already acknowledged, so the origin
    hears of each target's acknowledgement once however it came (`!ack`, reaction)."""
    if not await cases.acknowledge(services.conn, delivery, by=by, now_ms=now_ms):
        return False
    if links.link_of_room(services, case.origin_room) is not None:
        # an inbound case: its origin is the partner's bot (`handlers.links`)
        await links.tell_partner(services, case, case.origin_room, CaseEventKind.ACK,
                                 post=delivery.post, by=by)
        return True
    posts = links.known_posts(services)
    acknowledged = await cases.delivery_for(services.conn, case.id, delivery.post)
    origin = posts.get(case.origin_post)
    if acknowledged is not None and origin is not None:
        msgtype = msgtype_for(OutboxKind.CASE_ACK, priority=case.priority, post=origin.id,
                              settings=services.config.notifications)
        notice = render_ack_notice(case, acknowledged, origin=origin, posts=posts,
                                   mention=case.origin_sender if msgtype == "m.text" else None)
        await services.send_case(case.origin_room,
                                 case_content(notice, case, about="ack",
                                              thread_root=case.origin_event_id, msgtype=msgtype),
                                 case=case, kind=OutboxKind.CASE_ACK)
    return True


# --- !update ----------------------------------------------------------------------------


async def update(invocation: Invocation) -> Reply:
    services = _services(invocation)
    post = case_room_post(invocation, services)
    language = invocation.language
    targets, args = law.split_forward_targets(invocation.args)  # passing it on (issue 20)
    command = parse_ref_command("update", args, invocation.lines,
                                text_rule="optional" if targets else "required",
                                context_ref=invocation.context_ref)
    case, _ = await _visible_case(services, command.ref, invocation)
    _require_origin(case, post, invocation, services.config, "error.update_not_origin")
    if not case.is_open:
        raise CommandError.of("error.update_finished", ref=case.ref,
                              state=Term(f"case.state.{case.state}"))
    refused = await law.forward(invocation, services, case, targets) if targets else None
    if refused is not None:
        return refused
    if not command.text:
        return render_notice(text("handling.forward.done", language, ref=case.ref,
                                  posts=", ".join(targets)), language=language)
    await cases.add_timeline(services.conn, case.id, TimelineKind.UPDATED, ms=_ms(invocation),
                             post=post.id if post else case.origin_post, actor=invocation.sender,
                             detail={"text": command.text})
    from liaison.handlers import hits  # handlers.hits builds on this module
    await hits.match_case(services, case, fields=(), free_text=command.text)
    posts = links.known_posts(services)
    told = await tell_targets(services, case, posts, about="update",
                               render=lambda reader: render_update_notice(
                                   case, command.text, reader=reader, posts=posts),
                               said=command.text, by=invocation.sender,
                               unique=invocation.event_id)
    return render_notice(text("case.update.done", language, ref=case.ref,
                              posts=", ".join(told)), language=language)


# --- !close and !cancel -----------------------------------------------------------------


async def close(invocation: Invocation) -> Reply:
    command = parse_close(invocation.args, invocation.lines, context_ref=invocation.context_ref)
    return await _finish(invocation, command.ref, "closed", command.text)


async def cancel(invocation: Invocation) -> Reply:
    ref = parse_cancel(invocation.args, invocation.lines, context_ref=invocation.context_ref)
    return await _finish(invocation, ref, "cancelled", "")


async def _finish(invocation: Invocation, ref: str, state: Literal["closed", "cancelled"],
                  outcome: str) -> Reply:
    services = _services(invocation)
    post = case_room_post(invocation, services)
    language = invocation.language
    case, _ = await _visible_case(services, ref, invocation)
    refused_id = "error.close_not_origin" if state == "closed" else "error.cancel_not_origin"
    _require_origin(case, post, invocation, services.config, refused_id)
    if not await cases.finish_case(services.conn, case, state,
                                   post=post.id if post else case.origin_post,
                                   by=invocation.sender, now_ms=_ms(invocation),
                                   outcome=outcome or None):
        return render_notice(text(
            "case.finished.already", language, ref=case.ref,
            state=text(f"case.state.{case.state}", language),
            time=Moment(case.closed_ms or 0, reader_timezone(invocation, services))),
            language=language)
    finished = await cases.case_by_id(services.conn, case.id)
    assert finished is not None
    posts = links.known_posts(services)
    told = await tell_targets(services, finished, posts, about=state,
                               render=lambda reader: render_finished_notice(
                                   finished, reader=reader, posts=posts),
                               by=invocation.sender, outcome=finished.outcome)
    origin = posts.get(case.origin_post)
    if origin is not None and invocation.room_id != case.origin_room:  # a supervisor elsewhere
        notice = render_finished_notice(finished, reader=origin, posts=posts)
        await services.send_case(case.origin_room,
                                 case_content(notice, finished, about=state,
                                              thread_root=case.origin_event_id),
                                 case=finished, kind=case_notice_kind(state))
    return render_notice(text(f"case.{state}.done", language, ref=case.ref,
                              posts=", ".join(told)), language=language)


# --- !status and !pending ---------------------------------------------------------------


async def status(invocation: Invocation) -> Reply:
    services = _services(invocation)
    case_room_post(invocation, services)
    ref = parse_status(invocation.args, invocation.lines, context_ref=invocation.context_ref)
    case, disclosure = await _visible_case(services, ref, invocation)
    conn = services.conn
    await services.record_disclosure(disclosure, case, asked_by=invocation.sender,
                                     shown="status")
    from liaison.handlers import hits  # handlers.hits builds on this module
    return render_status(
        case, await cases.deliveries(conn, case.id), await cases.timeline(conn, case.id),
        posts=links.known_posts(services), language=invocation.language,
        timezone=reader_timezone(invocation, services),
        show_refusals=disclosure.detail is Detail.FULL,
        links=await hits.status_links(services, case, invocation.room_id, invocation.language),
    )


async def pending(invocation: Invocation) -> Reply:
    services = _services(invocation)
    post = room_post(invocation, services)
    conn = services.conn
    sent = [(case, await cases.deliveries(conn, case.id))
            for case in await _shown(services, invocation, await cases.open_cases_from(
                conn, post.id))]
    incoming = await cases.open_cases_to(conn, post.id)
    visible = {case.id for case in await _shown(services, invocation,
                                                 [case for case, _ in incoming])}
    received = [(case, delivery) for case, delivery in incoming if case.id in visible]
    return render_pending(post, sent, received, posts=links.known_posts(services),
                          language=invocation.language)


async def _shown(services: Services, invocation: Invocation, listed: list[Case]) -> list[Case]:
    """The cases of `listed` the room's readers may see, each disclosure recorded."""
    shown = []
    for case in listed:
        disclosure = await services.disclosure(invocation.room_id, case)
        if disclosure is not None:
            await services.record_disclosure(disclosure, case, asked_by=invocation.sender,
                                             shown=invocation.command.name)
            shown.append(case)
    return shown


# --- shared -----------------------------------------------------------------------------


def _services(invocation: Invocation) -> Services:
    services = invocation.services
    if not isinstance(services, Services):
        raise TypeError("case commands need the shell's Services")
    return services


def room_post(invocation: Invocation, services: Services) -> Post:
    """The post whose room the command came from; other rooms cannot work cases."""
    post = services.config.post_by_room(invocation.room_id)
    if post is None:
        raise CommandError.of("error.case_room_not_post")
    return post


def case_room_post(invocation: Invocation, services: Services) -> Post | None:
    """The post whose room the command came from, or None in a supervisor's own room
    (`commands.audience`); any other room cannot work cases."""
    post = services.config.post_by_room(invocation.room_id)
    if post is None and _audience(invocation, services).kind not in SUPERVISOR_ROOMS:
        raise CommandError.of("error.case_room_not_post")
    return post


def _audience(invocation: Invocation, services: Services) -> Audience:
    return invocation.audience or services.audience(invocation.room_id)


def reader_timezone(invocation: Invocation, services: Services) -> str:
    """The time zone answers in this room are shown in: the room's post, else the first
    post the sender supervises."""
    config = services.config
    post = config.post_by_room(invocation.room_id) or next(
        (post for post in config.posts if invocation.sender in post.supervisors), None)
    return post.timezone if post is not None else "UTC"


def posts_by_id(config: Config) -> Mapping[str, Post]:
    return {post.id: post for post in config.posts}


def directory_for(services: Services) -> Directory:
    config = services.config
    return Directory(
        posts=posts_by_id(config), groups={group.name: group for group in config.groups},
        category_rules=config.category_rules, joined_rooms=services.joined_rooms,
        encrypted_rooms=services.encrypted_rooms, links=services.links,
    )


async def _visible_case(services: Services, ref: str,
                        invocation: Invocation) -> tuple[Case, Disclosure]:
    """The case `ref` if everyone who reads the command's room may see it, with the proof;
    a case they may not see is answered exactly like one that does not exist — whoever
    asked (a supervisor of the origin in another post's room sees nothing there)."""
    case = await cases.case_by_ref(services.conn, ref)
    if case is not None:
        disclosure = await services.disclosure(invocation.room_id, case)
        if disclosure is not None:
            return case, disclosure
    raise CommandError.of("error.case_unknown", ref=ref)


def acts_for_origin(case: Case, post: Post | None, sender: str, config: Config) -> bool:
    """The command comes from the origin post's room, or from one of its supervisors."""
    if post is not None and case.origin_post == post.id:
        return True
    origin = config.post_by_id(case.origin_post)
    return origin is not None and sender in origin.supervisors


def _require_origin(case: Case, post: Post | None, invocation: Invocation, config: Config,
                    msg_id: str) -> None:
    if not acts_for_origin(case, post, invocation.sender, config):
        raise CommandError.of(msg_id, ref=case.ref, origin=post_label(
            case.origin_post, posts_by_id(config), invocation.language))


async def tell_targets(services: Services, case: Case, posts: Mapping[str, Post], *,
                       about: str, render: Callable[[Post], Notice],
                       extra: Mapping[str, Any] | None = None, said: str = "",
                       by: str | None = None, outcome: str | None = None,
                       unique: str = "", attachment: LinkAttachment | None = None) -> list[str]:
    """Queue `render(target_post)` in the room of every delivery that may still receive the
    case (`routing.still_reaches`), in the relayed case's thread when its event id is known;
    the post ids told, in delivery order. `extra` is merged into each message's content
    (an attachment's `msgtype`, `file`, `info`). A target behind a link is told as a case
    event instead (`handlers.links.tell_partner`: `said`, `by`, `outcome`, `unique`,
    `attachment`)."""
    told = []
    directory = directory_for(services)
    for delivery in await cases.deliveries(services.conn, case.id):
        if links.link_of_room(services, delivery.room_id) is not None:
            event = links.event_for_notice(about)
            partner_post = posts.get(delivery.post)
            told_text = said
            if not said and about == "edit" and partner_post is not None:
                told_text = render(partner_post).text  # what changed, in its language
            if (event is not None and delivery.refused_ms is None
                    and await links.tell_partner(services, case, delivery.room_id, event,
                                                 post=delivery.post, by=by, said=told_text,
                                                 outcome=outcome, unique=unique,
                                                 attachment=attachment)):
                told.append(delivery.post)
            continue
        target = posts.get(delivery.post)
        if target is None or still_reaches(target, delivery.room_id, case.tlp, directory):
            continue
        notice = render(target)
        content = case_content(notice, case, about=about, thread_root=delivery.relayed_event_id)
        if await services.send_case(delivery.room_id, {**content, **(extra or {})}, case=case,
                                    kind=case_notice_kind(about)):
            told.append(delivery.post)
    return told


def case_content(notice: Notice, case: Case, *, about: str | None = None,
                 thread_root: str | None = None, msgtype: str = "m.notice") -> dict[str, Any]:
    """An m.notice (m.text when it must ring) carrying the case's machine-readable key; in
    the case's thread if known."""
    metadata: dict[str, Any] = case_metadata(case)
    if about is not None:
        metadata["about"] = about
    extra: dict[str, Any] = {CASE_KEY: metadata}
    if thread_root is not None:
        extra["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread_root,
                                 "is_falling_back": True,
                                 "m.in_reply_to": {"event_id": thread_root}}
    return notice_content(notice.text, notice.html, mentions=notice.mentions, extra=extra,
                          msgtype=msgtype)


def _ms(invocation: Invocation) -> int:
    return int(invocation.now.timestamp() * 1000)
