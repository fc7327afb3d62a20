"""Cases across a link between bots (`docs/links.md`) — where each part is handled:

- a case routed to a partner's post: `offer` (called by `handlers.cases._store_and_relay`
  and when a case is passed on; the delivery is recorded like any other, its room the
  link room), after `check_offers` refused, before anything was stored, a case no offer
  could carry
- a protocol event from the partner, already claimed and its sender and device verified
  by the shell (`bot.links`): `receive` — a directory (`_directory`), an offer (`_offer`:
  the inbound case, relayed to the local post by the normal path, and a receipt), a
  receipt (`_receipt`: a refusal told to the originating officer), a case event
  (`_case_event`: applied to the local record and told to the local rooms)
- what happens to a case that crossed, told to the other side: `tell_partner` (called
  wherever the flow would tell a room that is a link room: the acknowledgement, a reply,
  an attachment, an update or edit, the closure or cancellation, a delay or refusal) and
  `tell_from_shell` (a reminder or escalation by the chaser, a read receipt). The origin
  does not chase a post behind a link (`bot.chaser`): the partner's bot does
- `!posts`: the local posts and what each link offers (`posts`)

Everything runs in the event's transaction (`handlers.context.Services`). Every protocol
event sent, accepted or refused is on the audit log (`link.sent`, `link.received`,
`link.refused`) and in `storage.links`' `link_log`, whose key (the content's `id`) makes a
replayed event change nothing and an event sent twice leave once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import aiosqlite
from pydantic import ValidationError

from liaison.commands.attachments import EncryptedFile
from liaison.commands.audience import CaseParties, Disclosure, disclose, link_audience
from liaison.commands.case_render import (
    post_label,
    render_attachment_notice,
    render_finished_notice,
    render_relayed_case,
    render_reply_notice,
    render_update_notice,
)
from liaison.commands.deadlines import class_deadline_ms
from liaison.commands.errors import CommandError
from liaison.commands.links import (
    COUNTRY_RE,
    MAX_EVENT_BYTES,
    CaseEventContent,
    CaseEventKind,
    DirectoryContent,
    Link,
    LinkEventType,
    LinkRefusal,
    OfferContent,
    ParsedContent,
    ReceiptContent,
    RefusalReason,
    canonical_json,
    case_event_key,
    check_case_event,
    check_directory,
    check_offer,
    offer_key,
    oversized,
    parse_content,
    receipt_key,
)
from liaison.commands.links import Attachment as LinkAttachment
from liaison.commands.localtime import Moment
from liaison.commands.model import Post, Priority
from liaison.commands.notify import OutboxKind, msgtype_for
from liaison.commands.records import Case, Delivery, NewCase, TimelineKind
from liaison.commands.registry import CommandRegistry, CommandSpec, Invocation, Reply
from liaison.commands.render import Line, Notice, Relayed, Strong, render_notice
from liaison.commands.texts import MESSAGES, Term, text
from liaison.handlers.context import Services, case_parties
from liaison.storage import audit, cases, outbox, request_terms
from liaison.storage import links as link_store
from liaison.storage.outbox import OutboxMessage

log = logging.getLogger(__name__)

TEXT_LIMIT = 20_000
"""The longest text a protocol content carries (`commands.links`' `Text`)."""

SENT, RECEIVED, REFUSED = "link.sent", "link.received", "link.refused"
"""Audit actions of protocol events (the detail: link, type, key, reason)."""

_ABOUT_TO_EVENT: Mapping[str, CaseEventKind] = {
    "reply": CaseEventKind.REPLY,
    "update": CaseEventKind.UPDATE,
    "closed": CaseEventKind.CLOSE,
    "cancelled": CaseEventKind.CANCEL,
    "withdrawn": CaseEventKind.CANCEL,
    "attachment": CaseEventKind.ATTACHMENT,
    "edit": CaseEventKind.UPDATE,
}
"""What a notice to a case's targets (`handlers.cases.tell_targets`, its `about`) becomes
when the target is behind a link; an edit of the opening message crosses as an update
whose text says what changed (protocol version 1 has no edit of its own)."""


def known_posts(services: Services) -> dict[str, Post]:
    """Local posts and every partner's (as their directories publish them), by id: what a
    label, a routing answer or a relayed case names."""
    return {**services.links.partner_posts(),
            **{post.id: post for post in services.config.posts}}


def link_of_room(services: Services, room_id: str) -> Link | None:
    """The link whose room `room_id` is, if any."""
    return services.links.link_for_room(room_id)


# --- sending ----------------------------------------------------------------------------


async def _send(services: Services, link: Link, event_type: LinkEventType,
                content: ParsedContent,
                *, case_ref: str | None, disclosure: Disclosure | None = None,
                detail: Mapping[str, Any] | None = None) -> OutboxMessage | None:
    """Queue one protocol event for the link room, once per key: an event already sent
    under its `id` (a replayed offer's receipt, a handler run twice) is not queued again."""
    key = content.id
    now_ms = services.clock.now_ms()
    if not await link_store.log_event(services.conn, link=link.name, direction="sent",
                                      event_type=str(event_type), key=key, event_id=None,
                                      case_ref=case_ref, ms=now_ms, detail=dict(detail or {})):
        return None
    message = await services.send(link.room, content.model_dump(mode="json"),
                                  kind=OutboxKind.LINK_PROTOCOL, event_type=str(event_type),
                                  case_ref=case_ref, disclosure=disclosure)
    await services.record(SENT, actor=services.bot_user_id, case_ref=case_ref,
                          room_id=link.room,
                          detail={"link": link.name, "type": str(event_type), "key": key,
                                  **(detail or {})})
    return message


async def offer(services: Services, case: Case, target: Post, link: Link, *,
                targets: Sequence[str], disclosure: Disclosure | None) -> OutboxMessage | None:
    """Offer `case` to the partner's post `target` (`targets`: all of the case's posts at
    that partner). None, and nothing queued, when the link room's reader may not see the
    case (`commands.audience`: its TLP, the link's ceiling) or it was offered already."""
    if disclosure is None:
        log.warning("case withheld from a link whose partner may not see it",
                    extra={"case_ref": case.ref, "link": link.name, "post": target.id})
        return None
    try:
        content = _offer_content(case, target.id, targets)
    except ValidationError as error:  # checked before the case was stored: `check_offers`
        log.warning("case does not fit an offer", extra={"case_ref": case.ref,
                                                         "error": str(error)[:200]})
        return None
    message = await _send(services, link, LinkEventType.OFFER, content, case_ref=case.ref,
                          disclosure=disclosure, detail={"target": target.id})
    if message is not None:  # once per case and link, however many of its posts
        await link_store.add_link_case(services.conn, case.id, link.name, "outbound", case.ref)
    return message


async def _link_disclosure(services: Services, link: Link, case: Case) -> Disclosure | None:
    """May the partner behind `link` read about `case`? Its audience is the posts it
    publishes now and those the case crossed this link with (a post it has dropped from
    its directory since still hears the end of its cases), within the link's TLP."""
    audience = services.audience(link.room)
    crossed = {delivery.post for delivery in await cases.deliveries(services.conn, case.id)
               if delivery.room_id == link.room}
    if case.origin_room == link.room:
        crossed.add(case.origin_post)
    audience = link_audience(link.room, (*audience.posts, *sorted(crossed)), link.max_tlp)
    parties = await case_parties(services.conn, case)
    return disclose(audience, parties, known_posts(services))


def _offer_content(case: Case, target: str, targets: Sequence[str]) -> OfferContent:
    """The offer of `case` to the partner's post `target`; ValidationError when a field is
    beyond what the protocol carries."""
    return OfferContent(
        id=offer_key(case.ref, target), ref=case.ref, kind=case.kind,
        origin_post=case.origin_post, origin_sender=case.origin_sender, target=target,
        targets=tuple(targets), priority=case.priority.value, tlp=case.tlp,
        category=case.category, grading=case.grading, handling=case.handling,
        handling_text=case.handling_text, action=case.action,
        deadline_class=case.deadline_class, fields=case.fields, text=case.text,
        due_ms=case.due_ms, created_ms=case.created_ms)


def offer_refusal(new: NewCase, target: str, targets: Sequence[str]) -> LinkRefusal | None:
    """Whether the case about to be stored can be offered to the partner's post `target`:
    every field within the protocol's limits and the whole within `MAX_EVENT_BYTES`
    (under the longest reference it may get), so the origin refuses what the partner
    would."""
    provisional = Case(
        id=0, ref=f"{new.origin_country}-{'9' * 12}", kind=new.kind,
        origin_post=new.origin_post, priority=new.priority, tlp=new.tlp,
        category=new.category, grading=new.grading, related_ref=new.related_ref,
        fields=new.fields, text=new.text, due_ms=new.due_ms, state="open",
        forwardable=new.forwardable, origin_room=new.origin_room,
        origin_event_id=new.origin_event_id, origin_sender=new.origin_sender,
        created_ms=new.created_ms, closed_ms=None, closed_by=None, outcome=None,
        deadline_class=new.deadline_class, handling=new.handling,
        handling_text=new.handling_text, action=new.action)
    try:
        content = _offer_content(provisional, target, targets)
    except ValidationError as error:
        return LinkRefusal(RefusalReason.TOO_LARGE, str(error.errors()[0]["loc"])[:200])
    size = len(canonical_json(content.model_dump(mode="json")))
    if size > MAX_EVENT_BYTES:
        return LinkRefusal(RefusalReason.TOO_LARGE, f"{size} bytes")
    return None


def check_offers(services: Services, new: NewCase, post_ids: Sequence[str]) -> None:
    """Refuse, before anything is stored, a case that one of its partner posts could not be
    offered (`offer_refusal`): the officer shortens it or leaves that post out."""
    for post_id in post_ids:
        link = services.links.link_for_post(post_id)
        if link is None:
            continue
        at_link = [other for other in post_ids if services.links.link_for_post(other) == link]
        refusal = offer_refusal(new, post_id, at_link)
        if refusal is not None:
            raise CommandError.of("link.error.offer", post=post_id,
                                  reason=Term(f"link.reason.{refusal.reason.value}"))


async def _link_ref(services: Services, case: Case, link: Link) -> tuple[str, bool] | None:
    """The reference the partner knows `case` by (always the origin's) and whether this bot
    is the case's origin; None when the case never crossed this link."""
    for found in await link_store.link_case_of(services.conn, case.id):
        if found.link == link.name:
            return found.foreign_ref, found.direction == "outbound"
    return None


async def tell_partner(services: Services, case: Case, room_id: str, event: CaseEventKind, *,
                       post: str, by: str | None, said: str = "", outcome: str | None = None,
                       unique: str = "", attachment: LinkAttachment | None = None,
                       due_ms: int | None = None) -> bool:
    """Tell the partner behind the link room `room_id` what happened to `case` (about the
    target `post`); False when `room_id` is no link room, the case never crossed it, or
    its reader may not see the case (nothing queued)."""
    link = link_of_room(services, room_id)
    if link is None:
        return False
    known = await _link_ref(services, case, link)
    disclosure = await _link_disclosure(services, link, case)
    if known is None or disclosure is None:
        log.warning("case event not told to a link that does not hold the case",
                    extra={"case_ref": case.ref, "link": link.name, "event": str(event)})
        return False
    ref, _ = known
    if event is CaseEventKind.ATTACHMENT and attachment is None:
        return False  # nothing to carry
    content = _case_event_content(
        CaseEventContent(id=case_event_key(ref, event, post, unique), ref=ref, event=event,
                         post=post, by=by, ms=services.clock.now_ms(),
                         outcome=None if outcome is None else outcome[:200],
                         attachment=attachment, due_ms=due_ms), said)
    await _send(services, link, LinkEventType.CASE, content, case_ref=case.ref,
                disclosure=disclosure, detail={"event": str(event), "post": post})
    return True


async def tell_from_shell(conn: aiosqlite.Connection, configured: Sequence[Link], case_id: int,
                          post: str, event: CaseEventKind, *, by: str | None,
                          now_ms: int, unique: str = "") -> bool:
    """What the shell noticed about a delivery of an inbound case — a reminder or an
    escalation fired by the chaser (`bot.chaser`), a read receipt (`bot.seen`) — told to
    the partner that offered it, in the caller's transaction. Its reader offered the case,
    so it may know what became of it; False when the case did not come over a link."""
    case = await cases.case_by_id(conn, case_id)
    link = None if case is None else next(
        (link for link in configured if link.room == case.origin_room), None)
    if case is None or link is None:
        return False
    ref = next((found.foreign_ref for found in await link_store.link_case_of(conn, case.id)
                if found.link == link.name and found.direction == "inbound"), None)
    if ref is None:
        return False
    content = CaseEventContent(id=case_event_key(ref, event, post, unique), ref=ref, event=event,
                               post=post, by=by, ms=now_ms)
    key, event_type = content.id, str(LinkEventType.CASE)
    if not await link_store.log_event(conn, link=link.name, direction="sent",
                                      event_type=event_type, key=key, event_id=None,
                                      case_ref=case.ref, ms=now_ms,
                                      detail={"event": str(event), "post": post}):
        return False
    await outbox.enqueue(conn, room_id=link.room, event_type=event_type,
                         content=content.model_dump(mode="json"), now_ms=now_ms,
                         kind=OutboxKind.LINK_PROTOCOL, case_ref=case.ref)
    await audit.append(conn, ts_ms=now_ms, actor=audit.LIAISON, action=SENT,
                       case_ref=case.ref, room_id=link.room,
                       detail={"link": link.name, "type": event_type, "key": key,
                               "event": str(event), "post": post})
    return True


def link_attachment(media: Mapping[str, Any], *, name: str, mimetype: str, size: int,
                    sha256: str) -> LinkAttachment:
    """An attachment as it crosses a link: the encrypted upload's `file` object (its key
    travels inside the Megolm-encrypted protocol event), name, type, size and digest."""
    return LinkAttachment(name=name[:200], mimetype=mimetype[:200], size=size, sha256=sha256,
                          file=dict(media["file"]))


def media_of(attachment: LinkAttachment) -> dict[str, Any] | None:
    """What makes a notice about an attachment that crossed a link a media event: the
    partner's encrypted upload as it sent it (its homeserver serves the ciphertext over
    federation; the hashes in `file` prove it unchanged). None when `file` is no
    encrypted file object."""
    if EncryptedFile.of(attachment.file) is None:
        return None
    major = attachment.mimetype.partition("/")[0]
    msgtype = {"image": "m.image", "video": "m.video", "audio": "m.audio"}.get(major, "m.file")
    return {"msgtype": msgtype, "filename": attachment.name, "file": dict(attachment.file),
            "info": {"mimetype": attachment.mimetype, "size": attachment.size}}


def _case_event_content(content: CaseEventContent, said: str) -> CaseEventContent:
    """`content` with the officer's text, shortened (marked `…`) as far as the event must
    be to fit in `MAX_EVENT_BYTES` — Cyrillic or Arabic text is two bytes a letter."""
    said = said[:TEXT_LIMIT]
    while True:
        candidate = content.model_copy(update={"text": said})
        if oversized(candidate) is None or not said:
            return candidate
        said = said[:len(said) * 4 // 5].rstrip() + "…"
        if len(said) <= 1:
            said = ""


def event_for_notice(about: str) -> CaseEventKind | None:
    """The case event a notice to the targets becomes at a link (None: it does not cross)."""
    return _ABOUT_TO_EVENT.get(about)


# --- receiving --------------------------------------------------------------------------


async def receive(services: Services, link: Link, event_type: str, content: Mapping[str, Any],
                  *, sender: str, event_id: str) -> None:
    """Apply one protocol event from the partner of `link`, inside the transaction that
    claimed it. The shell verified the sender and its device; everything else is checked
    here, and whatever is refused is audited and changes nothing (a refused offer is
    answered with a receipt saying why)."""
    parsed = parse_content(event_type, content)
    if isinstance(parsed, LinkRefusal):
        raw = content.get("id")
        await _refuse(services, link, event_type, key=raw if isinstance(raw, str) else event_id,
                      event_id=event_id, case_ref=None, refusal=parsed)
        return
    if isinstance(parsed, DirectoryContent):
        await _directory(services, link, parsed, event_id=event_id)
    elif isinstance(parsed, OfferContent):
        await _offer(services, link, parsed, event_id=event_id)
    elif isinstance(parsed, ReceiptContent):
        await _receipt(services, link, parsed, event_id=event_id)
    else:
        await _case_event(services, link, parsed, event_id=event_id)


async def _refuse(services: Services, link: Link, event_type: str, *, key: str,
                  event_id: str, case_ref: str | None, refusal: LinkRefusal) -> None:
    """Audit a refused protocol event (once per key)."""
    detail = {"link": link.name, "type": event_type, "key": key,
              "reason": refusal.reason.value, "detail": refusal.detail, "event_id": event_id}
    log.warning("protocol event refused", extra={"link": link.name, "reason": refusal.reason,
                                                 "case_ref": case_ref})
    if await link_store.log_event(services.conn, link=link.name, direction="refused",
                                  event_type=event_type, key=key, event_id=event_id,
                                  case_ref=case_ref, ms=services.clock.now_ms(),
                                  detail={"reason": refusal.reason.value,
                                          "detail": refusal.detail}):
        await services.record(REFUSED, actor=link.partner, case_ref=case_ref,
                              room_id=link.room, detail=detail)


async def _accepted(services: Services, link: Link, event_type: LinkEventType, key: str, *,
                    event_id: str, case_ref: str | None,
                    detail: Mapping[str, Any] | None = None) -> bool:
    """Log an accepted protocol event; False when its key was accepted before (a replay,
    audited as such): the caller changes nothing."""
    if not await link_store.log_event(services.conn, link=link.name, direction="received",
                                      event_type=str(event_type), key=key, event_id=event_id,
                                      case_ref=case_ref, ms=services.clock.now_ms(),
                                      detail=dict(detail or {})):
        await services.record(REFUSED, actor=link.partner, case_ref=case_ref,
                              room_id=link.room,
                              detail={"link": link.name, "type": str(event_type), "key": key,
                                      "reason": "replay", "event_id": event_id})
        return False
    await services.record(RECEIVED, actor=link.partner, case_ref=case_ref, room_id=link.room,
                          detail={"link": link.name, "type": str(event_type), "key": key,
                                  "event_id": event_id, **(detail or {})})
    return True


# --- directory --------------------------------------------------------------------------


async def _directory(services: Services, link: Link, content: DirectoryContent, *,
                     event_id: str) -> None:
    event_type = str(LinkEventType.DIRECTORY)
    refusal = check_directory(link, content)
    if refusal is None and not await link_store.accept_directory(
            services.conn, link.name, content, event_id, services.clock.now_ms()):
        refusal = LinkRefusal(RefusalReason.STALE, f"version {content.version} is not newer")
    if refusal is not None:
        await _refuse(services, link, event_type, key=content.id, event_id=event_id,
                      case_ref=None, refusal=refusal)
        return
    await _accepted(services, link, LinkEventType.DIRECTORY, content.id, event_id=event_id,
                    case_ref=None, detail={"version": content.version,
                                           "posts": len(content.posts)})


# --- offers and receipts ----------------------------------------------------------------


async def _offer(services: Services, link: Link, content: OfferContent, *,
                 event_id: str) -> None:
    """Validate an offer and deliver it to the local post as an inbound case; answer with
    a receipt either way."""
    target = services.config.post_by_id(content.target)
    refusal = check_offer(link, content, target,
                          partner_directory=services.links.directories.get(link.name))
    if refusal is None and target is not None and not _reachable(services, target):
        refusal = LinkRefusal(RefusalReason.NOT_REACHABLE, target.id)
    event_type = str(LinkEventType.OFFER)
    if refusal is not None or target is None:
        refusal = refusal or LinkRefusal(RefusalReason.UNKNOWN_POST, content.target)
        await _refuse(services, link, event_type, key=content.id, event_id=event_id,
                      case_ref=content.ref, refusal=refusal)
        await _send(services, link, LinkEventType.RECEIPT, ReceiptContent(
            id=receipt_key(content.ref, content.target), ref=content.ref,
            target=content.target, accepted=False, reason=refusal.reason,
            detail=refusal.detail[:200]), case_ref=content.ref,
            detail={"target": content.target, "reason": refusal.reason.value})
        return
    if not await _accepted(services, link, LinkEventType.OFFER, content.id, event_id=event_id,
                           case_ref=content.ref,
                           detail={"ref": content.ref, "target": target.id}):
        return
    case, created = await _inbound_case(services, link, content, target, event_id=event_id)
    if await cases.delivery_for(services.conn, case.id, target.id) is None:
        await _relay(services, case, target)
    if created:  # matched against this bot's cases: its rooms hear of a hit, never the link
        from liaison.handlers import hits  # handlers.hits builds on handlers.cases
        origin = services.links.partner_posts().get(case.origin_post)
        await hits.match_case(services, case, fields=case.fields, free_text=case.text,
                              region=origin.country if origin is not None else None)
    await _send(services, link, LinkEventType.RECEIPT, ReceiptContent(
        id=receipt_key(content.ref, target.id), ref=content.ref, target=target.id,
        accepted=True, partner_ref=case.ref), case_ref=case.ref,
        disclosure=await _link_disclosure(services, link, case), detail={"target": target.id})


def _reachable(services: Services, post: Post) -> bool:
    return post.room in services.joined_rooms and post.room in services.encrypted_rooms


async def _inbound_case(services: Services, link: Link, content: OfferContent, target: Post,
                        *, event_id: str) -> tuple[Case, bool]:
    """The inbound case of `content.ref` from this partner: the one a first offer of the
    same reference created, or a new one under the origin's reference (this bot's own
    when that one is taken here); whether it is new."""
    conn = services.conn
    known = await link_store.case_id_by_foreign_ref(conn, link.name, "inbound", content.ref)
    if known is not None:
        found = await cases.case_by_id(conn, known)
        assert found is not None
        return found, False
    keep = await _may_keep_ref(services, content)
    new = NewCase(
        kind=content.kind, origin_post=content.origin_post, origin_country=target.country,
        priority=Priority(content.priority), tlp=content.tlp, category=content.category,
        grading=content.grading, related_ref=None, fields=tuple(content.fields),
        text=content.text, due_ms=content.due_ms, forwardable=False, origin_room=link.room,
        origin_event_id=event_id, origin_sender=content.origin_sender,
        created_ms=content.created_ms, deadline_class=content.deadline_class,
        handling=content.handling, handling_text=content.handling_text,
        action=content.action)
    case = await cases.create_case(conn, new, ref=content.ref if keep else None)
    await link_store.add_link_case(conn, case.id, link.name, "inbound", content.ref)
    return case, True


async def _may_keep_ref(services: Services, content: OfferContent) -> bool:
    """Whether the inbound case may carry the origin's reference: it is free here and of
    the form `<country>-…` of a country no local post is in, so this bot never numbers
    a case of its own under it (`storage.cases` numbers per origin country)."""
    country, dash, _ = content.ref.partition("-")
    local = {post.country for post in services.config.posts}
    if not dash or not COUNTRY_RE.match(country) or country in local:
        return False
    return await cases.case_by_ref(services.conn, content.ref) is None


async def _relay(services: Services, case: Case, target: Post) -> None:
    """Relay an inbound case to its local post exactly as a local case is relayed: in the
    post's language, ringing its duty officers, chased by the local policy."""
    conn, now_ms = services.conn, services.clock.now_ms()
    posts = known_posts(services)
    delivered = await cases.deliveries(conn, case.id)
    parties = CaseParties(ref=case.ref, tlp=case.tlp, origin=case.origin_post,
                          targets=frozenset({target.id, *(d.post for d in delivered)}))
    disclosure = disclose(services.audience(target.room), parties, posts)
    classes = services.config.requests.deadline_classes()
    due_ms = case.due_ms  # else its class, if this bot knows one of that name
    if due_ms is None and case.kind == "request" and case.deadline_class in classes:
        due_ms = class_deadline_ms(now_ms, classes[case.deadline_class or ""], target.timezone)
    notice = render_relayed_case(case, target=target, posts=posts, related_visible=False,
                                 due_ms=due_ms)
    msgtype = msgtype_for(OutboxKind.CASE_RELAY, priority=case.priority, post=target.id,
                          settings=services.config.notifications)
    from liaison.handlers.cases import case_content  # handlers.cases builds on this module
    message = await services.send(target.room, case_content(notice, case, msgtype=msgtype),
                                  kind=OutboxKind.CASE_RELAY, case_ref=case.ref,
                                  disclosure=disclosure)
    await cases.add_delivery(conn, case.id, post=target.id, room_id=target.room,
                             relay_txn_id=message.txn_id, now_ms=now_ms, due_ms=due_ms)


async def _receipt(services: Services, link: Link, content: ReceiptContent, *,
                   event_id: str) -> None:
    """The partner's answer to an offer: a refusal marks the delivery refused and tells
    the originating officer, in the case's thread and their language."""
    event_type = str(LinkEventType.RECEIPT)
    found = await _offered_case(services, link, content.ref)
    refusal = None
    delivery = None
    if found is None:
        refusal = LinkRefusal(RefusalReason.UNKNOWN_CASE, content.ref)
    else:
        delivery = await cases.delivery_for(services.conn, found.id, content.target)
        if delivery is None or delivery.room_id != link.room:
            refusal = LinkRefusal(RefusalReason.NOT_TARGET, content.target)
    if refusal is not None or found is None or delivery is None:
        await _refuse(services, link, event_type, key=content.id, event_id=event_id,
                      case_ref=content.ref, refusal=refusal or LinkRefusal(
                          RefusalReason.UNKNOWN_CASE, content.ref))
        return
    if not await _accepted(services, link, LinkEventType.RECEIPT, content.id,
                           event_id=event_id, case_ref=found.ref,
                           detail={"target": content.target, "accepted": content.accepted,
                                   "partner_ref": content.partner_ref,
                                   "reason": content.reason and content.reason.value}):
        return
    if content.accepted:
        return
    reason = content.reason or RefusalReason.SCHEMA
    if not await request_terms.refuse_delivery(
            services.conn, delivery, reason="link", by=link.partner,
            now_ms=services.clock.now_ms(),
            detail={"code": "link", "reason": reason.value, "detail": content.detail}):
        return
    await _tell_origin(services, found, "link.refused.notice", post=content.target,
                       reason=reason, about="declined")


async def _offered_case(services: Services, link: Link, ref: str) -> Case | None:
    """The local case `ref` if this bot offered it to the partner of `link`."""
    case = await cases.case_by_ref(services.conn, ref)
    if case is None:
        return None
    known = await _link_ref(services, case, link)
    return case if known is not None and known[1] else None


async def _tell_origin(services: Services, case: Case, msg_id: str, *, post: str,
                       reason: RefusalReason | str, about: str, said: str = "",
                       due_ms: int | None = None) -> None:
    """A ringing notice to the case's (local) origin room, in its thread and language."""
    origin = services.config.post_by_id(case.origin_post)
    if origin is None:
        return
    posts = known_posts(services)
    language = origin.language
    reason_text = (text(f"link.reason.{reason.value}", language)
                   if isinstance(reason, RefusalReason) else _reason_text(reason, language))
    moment = {} if due_ms is None else {"time": Moment(due_ms, origin.timezone)}
    lines: list[Line] = [Strong(text(msg_id, language, ref=case.ref,
                                     post=post_label(post, posts, language),
                                     reason=reason_text, **moment))]
    if said:
        lines.append(Relayed(said))
    notice = render_notice(*lines, language=language)
    kind = OutboxKind.CASE_DECLINED if about == "declined" else OutboxKind.CASE_DELAYED
    msgtype = msgtype_for(kind, priority=case.priority, post=origin.id,
                          settings=services.config.notifications)
    from liaison.handlers.cases import case_content  # handlers.cases builds on this module
    await services.send_case(case.origin_room,
                             case_content(notice, case, about=about,
                                          thread_root=case.origin_event_id, msgtype=msgtype),
                             case=case, kind=kind)


def _reason_text(code: str, language: str) -> str:
    """A request's delay or refusal reason as the partner's officer chose it (`!delay`,
    `!refuse`), in the reader's language; an unknown code reads as "other"."""
    msg_id = f"request.reason.{code}"
    return text(msg_id if msg_id in MESSAGES else "request.reason.other", language)


# --- case events ------------------------------------------------------------------------


async def _case_event(services: Services, link: Link, content: CaseEventContent, *,
                      event_id: str) -> None:
    """A case event from the partner: applied to this bot's record of the case and told to
    the rooms that follow it here."""
    event_type = str(LinkEventType.CASE)
    conn = services.conn
    case = await _offered_case(services, link, content.ref)
    we_are_origin = case is not None
    if case is None:
        inbound = await link_store.case_id_by_foreign_ref(conn, link.name, "inbound",
                                                          content.ref)
        case = None if inbound is None else await cases.case_by_id(conn, inbound)
    if case is None:
        await _refuse(services, link, event_type, key=content.id, event_id=event_id,
                      case_ref=None, refusal=LinkRefusal(RefusalReason.UNKNOWN_CASE,
                                                         content.ref))
        return
    offered = frozenset(delivery.post for delivery in await cases.deliveries(conn, case.id)
                        if not we_are_origin or delivery.room_id == link.room)
    refusal = check_case_event(content, we_are_origin=we_are_origin, offered_posts=offered)
    if refusal is not None:
        await _refuse(services, link, event_type, key=content.id, event_id=event_id,
                      case_ref=case.ref, refusal=refusal)
        return
    if not await _accepted(services, link, LinkEventType.CASE, content.id, event_id=event_id,
                           case_ref=case.ref, detail={"event": content.event.value,
                                                      "post": content.post}):
        return
    by = content.by or link.partner
    if we_are_origin:
        delivery = await cases.delivery_for(conn, case.id, content.post or "")
        if delivery is not None:
            await _from_target(services, case, delivery, content, by=by, event_id=event_id)
    else:
        await _from_origin(services, case, content, by=by, event_id=event_id)


def _when(services: Services, content: CaseEventContent, delivery: Delivery | None) -> int:
    """When it happened at the partner, never in the future nor before the routing."""
    now_ms = services.clock.now_ms()
    earliest = delivery.routed_ms if delivery is not None else 0
    return max(earliest, min(content.ms, now_ms))


async def _from_target(services: Services, case: Case, delivery: Delivery,
                       content: CaseEventContent, *, by: str, event_id: str) -> None:
    """At the origin: what the partner's post did with the case."""
    from liaison.handlers import cases as case_commands  # it builds on this module
    conn, at = services.conn, _when(services, content, delivery)
    kind = content.event
    if kind is CaseEventKind.SEEN:
        await cases.mark_delivery_seen(conn, delivery, reader=by, now_ms=at)
    elif kind is CaseEventKind.ACK:
        if case.is_open:
            await case_commands.acknowledge_delivery(services, case, delivery, by=by,
                                                     now_ms=at)
    elif kind is CaseEventKind.ANSWERED:
        await cases.mark_answered(conn, delivery, by=by, now_ms=at)
    elif kind in (CaseEventKind.REMINDED, CaseEventKind.ESCALATED):
        await cases.add_timeline(conn, case.id, TimelineKind(kind.value), ms=at,
                                 post=delivery.post, detail={"at_partner": True})
    elif kind is CaseEventKind.DELAYED and content.due_ms is not None:
        # the partner moved its deadline: the origin's record of that post moves with it
        # (its reports count it overdue from then; the partner chases it)
        await request_terms.delay_delivery(
            conn, delivery, new_due_ms=content.due_ms, by=by or "", now_ms=at,
            detail={"code": content.outcome or "other", "text": content.text,
                    "new_due_ms": content.due_ms, "due_ms": delivery.due_ms,
                    "at_partner": True})
        await _tell_origin(services, case, "link.delay.notice.due", post=delivery.post,
                           reason=content.outcome or "other", about="delayed",
                           said=content.text, due_ms=content.due_ms)
    elif kind is CaseEventKind.DELAYED:
        await cases.add_timeline(conn, case.id, TimelineKind.DELAYED, ms=at,
                                 post=delivery.post, actor=by,
                                 detail={"code": content.outcome or "other",
                                         "text": content.text})
        await _tell_origin(services, case, "link.delay.notice", post=delivery.post,
                           reason=content.outcome or "other", about="delayed",
                           said=content.text)
    elif kind is CaseEventKind.DECLINED:
        if await request_terms.refuse_delivery(
                conn, delivery, reason=content.outcome or "other", by=by, now_ms=at,
                detail={"code": content.outcome or "other", "text": content.text}):
            await _tell_origin(services, case, "request.refuse.notice", post=delivery.post,
                               reason=content.outcome or "other", about="declined",
                               said=content.text)
    elif kind is CaseEventKind.ATTACHMENT and case.is_open and content.attachment is not None:
        await _attached(services, case, content.attachment, post=delivery.post, by=by,
                        event_id=event_id, said=content.text, at=at, to_origin=True)
    elif kind is CaseEventKind.REPLY and case.is_open:
        await cases.add_timeline(conn, case.id, TimelineKind.REPLIED, ms=at,
                                 post=delivery.post, actor=by, detail={"event_id": event_id})
        await _reply_to_origin(services, case, content.text, from_post=delivery.post, who=by)
        if case.kind == "request":
            await cases.mark_answered(conn, delivery, by=by, now_ms=at)
        else:
            await cases.acknowledge(conn, delivery, by=by, now_ms=at)


async def _reply_to_origin(services: Services, case: Case, said: str, *, from_post: str,
                           who: str) -> None:
    from liaison.handlers.cases import case_content  # handlers.cases builds on this module
    origin = services.config.post_by_id(case.origin_post)
    if origin is None:
        return
    notice = render_reply_notice(case, said, from_post=from_post, who=who, reader=origin,
                                 posts=known_posts(services))
    await services.send_case(case.origin_room,
                             case_content(notice, case, about="reply",
                                          thread_root=case.origin_event_id),
                             case=case, kind=OutboxKind.CASE_REPLY)


async def _from_origin(services: Services, case: Case, content: CaseEventContent, *, by: str,
                       event_id: str) -> None:
    """At the target's side: what the origin did with the inbound case, told to its posts."""
    from liaison.handlers import cases as case_commands  # it builds on this module
    conn, at = services.conn, _when(services, content, None)
    posts = known_posts(services)
    kind = content.event
    if not case.is_open:
        return
    if kind is CaseEventKind.REPLY:
        await cases.add_timeline(conn, case.id, TimelineKind.REPLIED, ms=at,
                                 post=case.origin_post, actor=by, detail={"event_id": event_id})
        await case_commands.tell_targets(
            services, case, posts, about="reply",
            render=lambda reader: render_reply_notice(case, content.text,
                                                      from_post=case.origin_post, who=by,
                                                      reader=reader, posts=posts))
    elif kind is CaseEventKind.ATTACHMENT and content.attachment is not None:
        await _attached(services, case, content.attachment, post=case.origin_post, by=by,
                        event_id=event_id, said=content.text, at=at, to_origin=False)
    elif kind is CaseEventKind.UPDATE:
        await cases.add_timeline(conn, case.id, TimelineKind.UPDATED, ms=at,
                                 post=case.origin_post, actor=by,
                                 detail={"text": content.text})
        await case_commands.tell_targets(
            services, case, posts, about="update",
            render=lambda reader: render_update_notice(case, content.text, reader=reader,
                                                       posts=posts))
    elif kind in (CaseEventKind.CLOSE, CaseEventKind.CANCEL):
        state: Literal["closed", "cancelled"] = (
            "closed" if kind is CaseEventKind.CLOSE else "cancelled")
        if not await cases.finish_case(conn, case, state, post=case.origin_post, by=by,
                                       now_ms=at, outcome=content.outcome):
            return
        finished = await cases.case_by_id(conn, case.id)
        assert finished is not None
        await case_commands.tell_targets(
            services, finished, posts, about=state,
            render=lambda reader: render_finished_notice(finished, reader=reader,
                                                         posts=posts))


async def _attached(services: Services, case: Case, attachment: LinkAttachment, *, post: str,
                    by: str, event_id: str, said: str, at: int, to_origin: bool) -> None:
    """An attachment that crossed the link: on the case's timeline (its digest, size and
    type, never its content) and shown, as the partner's encrypted upload, in the origin
    room's thread (`to_origin`) or to every local target."""
    from liaison.handlers import cases as case_commands  # it builds on this module
    media = media_of(attachment)
    if media is None:
        return
    await cases.add_timeline(services.conn, case.id, TimelineKind.ATTACHED, ms=at, post=post,
                             actor=by, detail={"event_id": event_id,
                                               "sha256": attachment.sha256,
                                               "size": attachment.size,
                                               "mimetype": attachment.mimetype,
                                               "msgtype": media["msgtype"],
                                               "name": attachment.name})
    posts = known_posts(services)

    def render(reader: Post) -> Notice:
        return render_attachment_notice(
            case, name=attachment.name, mimetype=attachment.mimetype, size=attachment.size,
            sha256=attachment.sha256, caption=said, from_post=post, who=by, reader=reader,
            posts=posts)

    if not to_origin:
        await case_commands.tell_targets(services, case, posts, about="attachment",
                                         render=render, extra=media)
        return
    origin = services.config.post_by_id(case.origin_post)
    if origin is not None:
        content = case_commands.case_content(render(origin), case, about="attachment",
                                             thread_root=case.origin_event_id)
        await services.send_case(case.origin_room, {**content, **media}, case=case,
                                 kind=OutboxKind.CASE_ATTACHMENT)


# --- !posts -----------------------------------------------------------------------------


def register_link_commands(registry: CommandRegistry) -> None:
    """Declare `!posts` on `registry`."""
    registry.register(CommandSpec.declare("posts", posts, aliases=("посты", "مراكز")))


async def posts(invocation: Invocation) -> Reply:
    """The local posts, then per link the posts its partner offers (its directory)."""
    services = invocation.services
    if not isinstance(services, Services):
        raise TypeError("!posts needs the shell's Services")
    if services.config.post_by_room(invocation.room_id) is None:
        raise CommandError.of("error.case_room_not_post")
    language = invocation.language
    lines: list[Line] = [Strong(text("posts.local", language))]
    lines.extend(_post_line(post, language) for post in services.config.posts)
    partner_posts = services.links.partner_posts()
    for link in services.links.links:
        directory = services.links.directories.get(link.name)
        if directory is None:
            lines.append(text("posts.link.none", language, link=link.name,
                              partner=link.partner))
            continue
        lines.append(Strong(text("posts.link", language, link=link.name, partner=link.partner,
                                 version=directory.version)))
        offered = [partner_posts[entry.id] for entry in directory.posts
                   if entry.id in partner_posts and partner_posts[entry.id].room == link.room]
        lines.extend(_post_line(post, language) for post in offered)
        if not offered:
            lines.append(text("posts.link.empty", language))
    return render_notice(*lines, language=language)


def _post_line(post: Post, language: str) -> str:
    return text("posts.line", language, post=post_label(post.id, {post.id: post}, language),
                country=post.country, agency=post.agency, clearance=post.clearance.value)
