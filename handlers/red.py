"""TLP:RED to named people, by encrypted direct message — where each part is handled:

- `!alert … tlp:red to:@a:server,@b:server`: `open_red_case` (from `handlers.cases`):
  each named person (`commands.red.red_recipients`: a listed officer or supervisor of a
  post cleared for RED) gets one delivery whose `post` is their user id and whose room
  is the bot's direct room with them; the origin room gets only the reference and who
  was named.
- the direct rooms: every message for one person waits in `direct_waiting` until they
  have joined their direct room (`bot.direct_rooms`), then goes to the outbox under its
  stable txn id: `deliver_waiting`, called by the chaser each round.
- a reaction in the direct room acknowledges (`red_react`); a reply there answers and is
  carried back to the originator (`carry_red_reply`): into the origin's case thread only
  when that room is RED-cleared (`handling.red_cleared_rooms`) and its members are
  exactly the origin post's people (`commands.audience`), otherwise to the originator by
  direct message.

Chasing works per named person like any delivery; escalations about a RED case reach
the supervisors of the person's post with its reference only (`commands.audience`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol
from zoneinfo import ZoneInfo

from liaison.commands.audience import Detail
from liaison.commands.case_render import case_label, render_relayed_case, render_reply_notice
from liaison.commands.case_terms import delivery_due_ms
from liaison.commands.errors import CommandError
from liaison.commands.handling import Terms
from liaison.commands.model import Post, Tlp
from liaison.commands.notify import OutboxKind, msgtype_for
from liaison.commands.parser import CaseKind, parse_case
from liaison.commands.records import Case, Delivery, NewCase, TimelineKind
from liaison.commands.red import cleared_post, red_recipients, split_people
from liaison.commands.registry import Invocation, Reply
from liaison.commands.relations import Relation, acknowledges, reply_text
from liaison.commands.render import Strong, render_notice
from liaison.commands.texts import text
from liaison.commands.vocabulary import OPTION_KEYS, fold_word
from liaison.config import Config
from liaison.handlers.context import (
    Clock,
    Services,
    audience_in,
    case_disclosure,
    require_disclosure,
)
from liaison.storage import cases, outbox, request_terms
from liaison.storage.db import Database

log = logging.getLogger(__name__)

_TO_WORDS = frozenset(fold_word(word) for word in ("to", *OPTION_KEYS["to"]))


class DirectDestinations(Protocol):
    def members(self, room_id: str) -> frozenset[str] | None: ...

    async def direct_room(self, user_id: str) -> str | None: ...


def split_red_targets(first_line: str) -> tuple[list[str], str]:
    """The people named in `to:` (the value may run on after commas and spaces) and the
    first line without them."""
    tokens = first_line.split()
    for index, token in enumerate(tokens):
        head, sep, value = token.partition(":")
        if not sep or fold_word(head) not in _TO_WORDS:
            continue
        end = index + 1
        while end < len(tokens) and (value.endswith(",") or tokens[end].startswith((",", "@"))):
            value += tokens[end]
            end += 1
        return split_people(value), " ".join(tokens[:index] + tokens[end:])
    return [], first_line


async def open_red_case(kind: CaseKind, invocation: Invocation, services: Services,
                        origin: Post, split: Terms) -> Reply:
    """Store a TLP:RED case for named people and queue one direct message each; answer the
    origin room with the reference and the people only."""
    from liaison.handlers.cases import case_content  # (it imports this module)
    from liaison.handlers.requests import case_terms  # the terms check shared with !alert
    config, language = services.config, invocation.language
    people, rest = split_red_targets(split.rest)
    usage_id = f"command.{kind}.usage"
    draft = parse_case(kind, rest, invocation.lines, now=invocation.now,
                       tz=ZoneInfo(origin.timezone))
    try:
        if draft.tlp is not Tlp.RED:
            raise CommandError.of("red.error.not_red")
        posts = {post.id: post for post in config.posts}
        recipients = red_recipients(people, posts)
    except CommandError as error:
        raise error.with_usage(text(usage_id, language), usage_id) from None
    terms = case_terms(kind, split, draft, invocation, services, origin)
    now_ms = int(invocation.now.timestamp() * 1000)
    conn = services.conn
    case = await cases.create_case(conn, NewCase(
        kind=kind, origin_post=origin.id, origin_country=origin.country,
        priority=draft.priority, tlp=Tlp.RED, category=draft.category, grading=draft.grading,
        related_ref=None, fields=terms.fields, text=draft.text,
        due_ms=None if draft.due is None else int(draft.due.timestamp() * 1000),
        forwardable=False, origin_room=invocation.room_id, origin_event_id=invocation.event_id,
        origin_sender=invocation.sender, created_ms=now_ms,
        deadline_class=terms.deadline_class,
        handling=None if terms.handling is None else terms.handling.value,
        handling_text=terms.handling_text, action=terms.action))
    classes = config.requests.deadline_classes()
    for index, recipient in enumerate(recipients):
        home = posts[recipient.post]
        due_ms = delivery_due_ms(terms, due_ms=case.due_ms, routed_ms=now_ms,
                                 target_timezone=home.timezone, classes=classes)
        # The person reads it in their post's language and zone, mentioned so it rings.
        reader = red_reader(recipient.user_id, posts) or home
        notice = render_relayed_case(case, target=reader, posts=posts, due_ms=due_ms)
        msgtype = msgtype_for(OutboxKind.CASE_RELAY, priority=case.priority,
                              settings=config.notifications)
        txn_id = f"liaison-red-{case.ref}-{index}"
        await cases.add_delivery(conn, case.id, post=recipient.user_id, room_id="",
                                 relay_txn_id=txn_id, now_ms=now_ms, due_ms=due_ms,
                                 recipient=recipient.user_id)
        await request_terms.wait_for_direct_room(
            conn, txn_id=txn_id, user_id=recipient.user_id, case_id=case.id,
            kind=OutboxKind.CASE_RELAY.value,
            content=case_content(notice, case, msgtype=msgtype), now_ms=now_ms)
    named = ", ".join(recipient.user_id for recipient in recipients)
    await services.record("red-sent", actor=invocation.sender, case_ref=case.ref,
                          room_id=invocation.room_id,
                          detail={"recipients": [r.user_id for r in recipients]})
    return render_notice([case_label(case, language), " ",
                          Strong(text("red.sent", language, ref=case.ref, people=named))],
                         language=language)


# --- the direct rooms -------------------------------------------------------------------


async def deliver_waiting(db: Database, config: Config, destinations: DirectDestinations,
                          clock: Clock) -> tuple[int, int]:
    """Queue every waiting message whose person has joined their direct room, each once,
    into the outbox; how many were queued, and how many still wait."""
    async with db.read() as conn:
        found = await request_terms.waiting(conn)
    still = queued = 0
    for item in found:
        room_id = await destinations.direct_room(item.user_id)
        if room_id is None:
            still += 1
            continue
        async with db.transaction() as conn:
            case = await cases.case_by_id(conn, item.case_id)
            if case is None:
                continue
            audience = audience_in(config, room_id, destinations.members(room_id))
            needed = Detail.PARTICIPANT if item.kind != OutboxKind.CHASE_ESCALATE.value \
                else Detail.REFERENCE
            # The delivery learns its room first: the disclosure counts it as a target.
            disclosure = await case_disclosure(conn, config, audience, case, needed=needed)
            if disclosure is None:  # given up on, once: never into a room it may not reach
                log.warning("a TLP:RED message was withheld: its direct room's reader may "
                            "not see the case (not a configured officer or supervisor?)",
                            extra={"case_ref": case.ref, "room_id": room_id,
                                   "user_id": item.user_id})
                await request_terms.mark_waiting_sent(conn, item.txn_id, room_id="withheld",
                                                      now_ms=clock.now_ms())
                continue
            if not await request_terms.mark_waiting_sent(conn, item.txn_id, room_id=room_id,
                                                         now_ms=clock.now_ms()):
                continue
            require_disclosure(item.kind, room_id, case.ref, disclosure)
            await outbox.enqueue(conn, room_id=room_id, event_type="m.room.message",
                                 content=item.content, now_ms=clock.now_ms(),
                                 kind=OutboxKind(item.kind), case_ref=case.ref,
                                 txn_id=item.txn_id)
            queued += 1
    return queued, still


async def _red_delivery(services: Services, room_id: str, sender: str,
                        event_ids: list[str]) -> tuple[Case, Delivery] | None:
    """The RED case and delivery a message in a direct room is about: a message the bot
    sent into that room about the case, and the room is the sender's own delivery."""
    for event_id in event_ids:
        case = await cases.case_for_event(services.conn, room_id=room_id, event_id=event_id)
        if case is None or case.tlp is not Tlp.RED:
            continue
        delivery = await request_terms.delivery_in_room(services.conn, case.id, room_id)
        if delivery is not None and delivery.recipient == sender:
            return case, delivery
    return None


async def red_react(services: Services, *, room_id: str, sender: str, event_id: str,
                    reacts_to: str, key: str) -> None:
    """A ✅/👍 on the relayed RED case in the person's direct room acknowledges it."""
    if not acknowledges(key):
        return
    found = await _red_delivery(services, room_id, sender, [reacts_to])
    if found is None or not found[0].is_open:
        return
    if not await services.claim(event_id, room_id):
        return
    case, delivery = found
    now_ms = services.clock.now_ms()
    if await cases.acknowledge(services.conn, delivery, by=sender, now_ms=now_ms):
        await _to_originator(services, case, text("red.ack.notice", _origin_language(
            services, case), ref=case.ref, who=sender), said=None,
            kind=OutboxKind.CASE_ACK, txn=f"liaison-red-ack-{delivery.id}")


async def acknowledge_in_direct_room(invocation: Invocation, services: Services) -> Reply:
    """`!ack REF` (or `!ack` in reply to the case) in the person's direct room."""
    from liaison.commands.parser import parse_ack
    ref = parse_ack(invocation.args, invocation.lines, context_ref=invocation.context_ref)
    case = await cases.case_by_ref(services.conn, ref)
    delivery = None if case is None else await request_terms.delivery_in_room(
        services.conn, case.id, invocation.room_id)
    if case is None or delivery is None or delivery.recipient != invocation.sender:
        raise CommandError.of("error.case_unknown", ref=ref)
    language = invocation.language
    if not case.is_open:
        return render_notice(text("case.ack.finished", language, ref=case.ref,
                                  state=text(f"case.state.{case.state}", language)),
                             language=language)
    now_ms = services.clock.now_ms()
    if await cases.acknowledge(services.conn, delivery, by=invocation.sender, now_ms=now_ms):
        await _to_originator(services, case, text("red.ack.notice", _origin_language(
            services, case), ref=case.ref, who=invocation.sender), said=None,
            kind=OutboxKind.CASE_ACK, txn=f"liaison-red-ack-{delivery.id}")
    return render_notice(text("red.ack.done", language, ref=case.ref), language=language)


async def carry_red_reply(services: Services, *, room_id: str, sender: str, event_id: str,
                          relation: Relation, body: str) -> Reply | None:
    """A reply on the RED case in the person's direct room: it answers a request (or
    acknowledges an alert) and is carried back to the originator."""
    found = await _red_delivery(services, room_id, sender, list(relation.candidates))
    said = reply_text(body)
    if found is None or not said:
        return None
    if not await services.claim(event_id, room_id):
        return None
    case, delivery = found
    home = _post_of(services, sender)
    language = home.language if home is not None else "en"
    if not case.is_open:
        return render_notice(text("case.reply.finished", language, ref=case.ref,
                                  state=text(f"case.state.{case.state}", language)),
                             language=language)
    now_ms = services.clock.now_ms()
    conn = services.conn
    await cases.add_timeline(conn, case.id, TimelineKind.REPLIED, ms=now_ms, post=delivery.post,
                             actor=sender, detail={"event_id": event_id})
    if case.kind == "request":
        await cases.mark_answered(conn, delivery, by=sender, now_ms=now_ms)
    else:
        await cases.acknowledge(conn, delivery, by=sender, now_ms=now_ms)
    await _to_originator(services, case, None, said=said, who=sender, kind=OutboxKind.CASE_REPLY,
                         txn=f"liaison-red-reply-{event_id}")
    origin = services.config.post_by_id(case.origin_post)
    return render_notice(text("red.reply.done", language, ref=case.ref,
                              origin=origin.id if origin else case.origin_post),
                         language=language)


async def _to_originator(services: Services, case: Case, headline: str | None, *,
                         said: str | None, kind: OutboxKind, txn: str,
                         who: str | None = None) -> None:
    """Into the origin's case thread when its readers may read RED (a cleared room of
    exactly the origin post's people), else to the officer who sent it, by DM."""
    from liaison.handlers.cases import case_content
    config = services.config
    posts = {post.id: post for post in config.posts}
    origin = posts.get(case.origin_post)
    if origin is None:
        return
    if said is not None:
        notice = render_reply_notice(case, said, from_post=who or "", who=who or "",
                                     reader=origin, posts=posts)
    else:
        notice = render_notice([case_label(case, origin.language), " ", headline or ""],
                               language=origin.language)
    msgtype = msgtype_for(kind, priority=case.priority, settings=config.notifications)
    if await services.disclosure(case.origin_room, case) is not None:
        await services.send_case(case.origin_room, case_content(
            notice, case, about=kind.value.removeprefix("case-"),
            thread_root=case.origin_event_id, msgtype=msgtype), case=case, kind=kind)
        return
    await request_terms.wait_for_direct_room(
        services.conn, txn_id=txn, user_id=case.origin_sender, case_id=case.id,
        kind=kind.value, content=case_content(notice, case, about=kind.value.removeprefix(
            "case-"), msgtype=msgtype), now_ms=services.clock.now_ms())


def _post_of(services: Services, user: str) -> Post | None:
    posts: Mapping[str, Post] = {post.id: post for post in services.config.posts}
    return cleared_post(user, posts)


def _origin_language(services: Services, case: Case) -> str:
    origin = services.config.post_by_id(case.origin_post)
    return origin.language if origin is not None else "en"


def red_home(post_or_user: str, posts: Mapping[str, Post]) -> Post | None:
    """The post a RED delivery's person acts for (its `post` is their user id)."""
    return cleared_post(post_or_user, posts) if post_or_user.startswith("@") else None


def red_reader(post_or_user: str, posts: Mapping[str, Post]) -> Post | None:
    """A RED delivery's person as a reader: their post's language and zone, and they alone
    mentioned (so a reminder in their direct room rings them)."""
    home = red_home(post_or_user, posts)
    return None if home is None else home.model_copy(update={"duty_officers": (post_or_user,)})

