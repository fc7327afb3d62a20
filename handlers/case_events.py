"""What happens to a case through events that are not commands — where each is handled:

- a reaction (✅ 👍, see `commands.relations.acknowledges`) on a relayed case: `react`,
  or `plaintext_reaction` when it came in the clear and only encrypted ones count
- a reply or thread message on a case, in a target room or in the origin room:
  `carry_reply`
- an edit (`m.replace`) of the `!alert`/`!request` that opened a case: `carry_edit`
- a redaction of that message: `withdraw`
- a photo or file in a case's thread, as a reply to it, or right after an alert:
  `carry_attachment` (taken) or `refuse_attachment` (see `commands.attachments`)

The shell (`bot.events`) calls each inside one database transaction with `Services`
bound to it. A handler first decides from the database alone whether the event is
about a case it may touch — an event id is looked up among the cases' opening
messages and the bot's own outbox, in the same room (`case_in_room`); what an
event says about itself, `org.liaison.case` included, is never believed. Only then
does it claim the event (`Services.claim`) and act, so a replayed event finds its
claim and changes nothing. It returns the answer for the sender, if any, which the
shell queues in the same transaction; a `CommandError` is raised only after the
claim, for the same reason.

A reply travels between the origin and the posts the case was delivered to, never
from one target to another and never to a post the case did not go to (see
`routing.still_reaches`). A request counts as answered only by a reply; a reaction
or a reply to an alert acknowledges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from liaison.commands.access import acts_for
from liaison.commands.attachments import (
    Attachment,
    AttachmentRefusal,
    Fetched,
    in_window,
    timeline_detail,
)
from liaison.commands.case_edits import compare_edit
from liaison.commands.case_render import (
    render_attachment_notice,
    render_edit_notice,
    render_refusal,
    render_reply_notice,
    render_withdrawn_notice,
)
from liaison.commands.entities import Entity, EntityKind
from liaison.commands.errors import CommandError
from liaison.commands.links import CaseEventKind
from liaison.commands.model import Post
from liaison.commands.notify import OutboxKind
from liaison.commands.parser import CaseKind, parse_case
from liaison.commands.records import Case, Delivery, TimelineKind
from liaison.commands.registry import Reply, split_command
from liaison.commands.relations import Relation, acknowledges, reply_text
from liaison.commands.render import Line, Notice, render_notice
from liaison.commands.routing import Refusal, RefusalReason, still_reaches
from liaison.commands.texts import COMMAND_ALIASES, fold_word, text
from liaison.handlers.cases import (
    acknowledge_delivery,
    case_content,
    directory_for,
    tell_targets,
)
from liaison.handlers.context import Services
from liaison.handlers.hits import match_case
from liaison.handlers.links import known_posts, link_attachment, link_of_room, tell_partner
from liaison.handlers.red import red_react
from liaison.storage import cases
from liaison.storage.audit import AuditAction

_CASE_WORDS: dict[str, CaseKind] = {
    fold_word(word): kind
    for kind in ("alert", "request")
    for word in (kind, *COMMAND_ALIASES[kind])
}


@dataclass(frozen=True)
class CaseLink:
    """A case as one room sees it: its origin's room (`delivery` None) or a target's."""

    case: Case
    post: Post
    """The post whose room it is."""
    delivery: Delivery | None

    @property
    def at_origin(self) -> bool:
        return self.delivery is None


async def case_in_room(services: Services, room_id: str,
                       event_ids: Sequence[str]) -> CaseLink | None:
    """The case that the first of `event_ids` belongs to in this post's room: the officer's
    opening message (origin room) or a message the bot sent there about the case."""
    post = services.config.post_by_room(room_id)
    if post is None:
        return None
    for event_id in event_ids:
        case = await cases.case_for_event(services.conn, room_id=room_id, event_id=event_id)
        if case is None:
            continue
        if case.origin_room == room_id and case.origin_post == post.id:
            return CaseLink(case, post, None)
        delivery = await cases.delivery_for(services.conn, case.id, post.id)
        if delivery is not None and delivery.room_id == room_id:
            return CaseLink(case, post, delivery)
    return None


async def case_after_alert(services: Services, room_id: str, sender: str,
                           sent_ms: int) -> CaseLink | None:
    """The case a bare attachment sent at `sent_ms` belongs to: the newest one `sender`
    opened in this origin room within the configured window (counted from when the bot
    took the alert; events are handled in timeline order, so the alert came first)."""
    post = services.config.post_by_room(room_id)
    if post is None:
        return None
    window_ms = int(services.config.attachments.window.total_seconds() * 1000)
    case = await cases.latest_case_by(services.conn, room_id=room_id, sender=sender,
                                      since_ms=sent_ms - window_ms)
    if (case is None or case.origin_post != post.id
            or not in_window(case.created_ms, sent_ms, window_ms)):
        return None
    return CaseLink(case, post, None)


# --- reactions --------------------------------------------------------------------------


async def react(services: Services, *, room_id: str, sender: str, event_id: str,
                reacts_to: str, key: str) -> None:
    """A reaction on the relayed case, by someone acting for the target post, acknowledges
    the delivery; the origin hears of it once. Anything else changes nothing, silently."""
    if not acknowledges(key):
        return
    delivery = await cases.delivery_by_relayed_event(services.conn, reacts_to)
    post = services.config.post_by_room(room_id)
    if post is None and delivery is not None and delivery.recipient is not None:
        await red_react(services, room_id=room_id, sender=sender, event_id=event_id,
                        reacts_to=reacts_to, key=key)  # a TLP:RED direct message
        return
    if (delivery is None or delivery.room_id != room_id or post is None
            or post.id != delivery.post or not acts_for(post, sender)):
        return
    case = await cases.case_by_id(services.conn, delivery.case_id)
    if case is None or not case.is_open:
        return
    if not await services.claim(event_id, room_id):
        return
    await acknowledge_delivery(services, case, delivery, by=sender, now_ms=_now_ms(services))


async def plaintext_reaction(services: Services, *, room_id: str, sender: str, event_id: str,
                             reacts_to: str, key: str) -> Reply | None:
    """A reaction sent in the clear where only encrypted acknowledgements count (trust
    policy `cross-signed`: no device vouches for a plaintext event). Nothing is
    acknowledged; an officer of the post who reacts to a case still waiting for its
    acknowledgement is told what to do instead, each officer once per case — Element
    sends every reaction unencrypted, so without this a 👍 would look taken and do
    nothing."""
    if not acknowledges(key):
        return None
    delivery = await cases.delivery_by_relayed_event(services.conn, reacts_to)
    post = services.config.post_by_room(room_id)
    if (delivery is None or delivery.room_id != room_id or post is None
            or post.id != delivery.post or not acts_for(post, sender)
            or delivery.acknowledged_ms is not None):
        return None
    case = await cases.case_by_id(services.conn, delivery.case_id)
    if case is None or not case.is_open:
        return None
    if not await services.claim(event_id, room_id):
        return None
    # One explanation per officer and case: a second claim under a key no event id can
    # take (event ids start with "$") marks that this officer was told about this case.
    if not await services.claim(f"plaintext-reaction:{delivery.id}:{sender}", room_id):
        return None
    await services.record(AuditAction.COMMAND_REFUSED, actor=sender, case_ref=case.ref,
                          room_id=room_id,
                          detail={"reason": "plaintext_reaction", "event_id": event_id})
    return render_notice(text("case.reaction.plaintext", post.language, ref=case.ref),
                         language=post.language)


# --- replies and thread messages ------------------------------------------------------------


async def carry_reply(services: Services, *, room_id: str, sender: str, event_id: str,
                      relation: Relation, body: str) -> Reply | None:
    """Carry a reply on a case to the other side: from a target to the origin's case thread
    (acknowledging, or answering a request), from the origin to every target's."""
    link = await case_in_room(services, room_id, relation.candidates)
    said = reply_text(body)
    if link is None or not said:
        return None
    if not await services.claim(event_id, room_id):
        return None
    if not acts_for(link.post, sender):
        raise CommandError.of("error.not_post_officer", post=link.post.id)
    case, language = link.case, link.post.language
    if not case.is_open:
        return render_notice(text("case.reply.finished", language, ref=case.ref,
                                  state=text(f"case.state.{case.state}", language)),
                             language=language)
    now_ms = _now_ms(services)
    await cases.add_timeline(services.conn, case.id, TimelineKind.REPLIED, ms=now_ms,
                             post=link.post.id, actor=sender, detail={"event_id": event_id})
    await match_case(services, case, fields=(), free_text=said, region=link.post.country)
    if link.delivery is None:
        return await _to_targets(services, case, said, from_post=link.post, who=sender,
                                 event_id=event_id)
    await _to_origin(services, case, said, from_post=link.post, who=sender, event_id=event_id)
    if case.kind == "request":
        await cases.mark_answered(services.conn, link.delivery, by=sender, now_ms=now_ms)
    else:
        await cases.acknowledge(services.conn, link.delivery, by=sender, now_ms=now_ms)
    return None


async def _to_origin(services: Services, case: Case, said: str, *, from_post: Post,
                     who: str, event_id: str) -> None:
    """The origin room reads the reply in the thread of its opening message; that also
    tells it of the acknowledgement, so no separate acknowledgement notice follows. An
    inbound case's origin is the partner's bot (`handlers.links`): it is told so."""
    if link_of_room(services, case.origin_room) is not None:
        await tell_partner(services, case, case.origin_room, CaseEventKind.REPLY,
                           post=from_post.id, by=who, said=said, unique=event_id)
        return
    posts = known_posts(services)
    origin = posts.get(case.origin_post)
    if origin is None:
        return
    notice = render_reply_notice(case, said, from_post=from_post.id, who=who, reader=origin,
                                 posts=posts)
    await services.send_case(case.origin_room,
                             case_content(notice, case, about="reply",
                                          thread_root=case.origin_event_id),
                             case=case, kind=OutboxKind.CASE_REPLY)


async def _to_targets(services: Services, case: Case, said: str, *, from_post: Post,
                      who: str, event_id: str) -> Reply | None:
    """Every target that may still receive the case reads the reply in its case thread;
    the sender hears only about targets that could not."""
    posts = known_posts(services)
    told = await tell_targets(services, case, posts, about="reply",
                              render=lambda reader: render_reply_notice(
                                  case, said, from_post=from_post.id, who=who, reader=reader,
                                  posts=posts),
                              said=said, by=who, unique=event_id)
    return await _withheld(services, case, told, from_post, "case.reply.withheld")


# --- attachments ------------------------------------------------------------------------


def _link_room(link: CaseLink) -> str:
    """The room the linked event was sent in: the target's, or the origin's."""
    return link.delivery.room_id if link.delivery is not None else link.case.origin_room


async def _claim_attachment(services: Services, link: CaseLink, sender: str,
                            event_id: str) -> Case | None:
    """Claim an attachment event once (None if it was already handled) and check the sender
    acts for the post; the case as it is now."""
    if not await services.claim(event_id, _link_room(link)):
        return None
    if not acts_for(link.post, sender):
        raise CommandError.of("error.not_post_officer", post=link.post.id)
    case = await cases.case_by_id(services.conn, link.case.id)
    assert case is not None
    return case


async def carry_attachment(services: Services, *, link: CaseLink, sender: str, event_id: str,
                           attachment: Attachment, fetched: Fetched,
                           media: dict[str, Any]) -> Reply | None:
    """Attach a fetched, verified attachment to the case and relay it — `media` holds the
    re-encrypted upload's `msgtype`, `file` and `info` — like a reply: from the origin to
    every target that may still see the case, from a target to the origin's case thread.
    Its digest, size, type, sender and time go into the timeline (and the audit log)."""
    case = await _claim_attachment(services, link, sender, event_id)
    if case is None:
        return None
    if not case.is_open:
        return _finished(case, link.post.language)
    await cases.add_timeline(services.conn, case.id, TimelineKind.ATTACHED,
                             ms=_now_ms(services), post=link.post.id, actor=sender,
                             detail=timeline_detail(attachment, fetched, event_id))
    await match_case(services, case, fields=(), free_text=attachment.caption or "",
                     region=link.post.country, extra=(Entity(EntityKind.FILE, fetched.sha256),))
    posts = known_posts(services)

    def render(reader: Post) -> Notice:
        return render_attachment_notice(
            case, name=attachment.filename, mimetype=attachment.mimetype,
            size=len(fetched.data), sha256=fetched.sha256, caption=attachment.caption,
            from_post=link.post.id, who=sender, reader=reader, posts=posts)

    crossing = link_attachment(media, name=attachment.filename, mimetype=attachment.mimetype,
                               size=len(fetched.data), sha256=fetched.sha256)
    if link.delivery is None:
        told = await tell_targets(services, case, posts, about="attachment", render=render,
                                  extra=media, said=attachment.caption or "", by=sender,
                                  unique=event_id, attachment=crossing)
        return await _withheld(services, case, told, link.post, "case.attachment.withheld")
    if link_of_room(services, case.origin_room) is not None:  # an inbound case's origin
        await tell_partner(services, case, case.origin_room, CaseEventKind.ATTACHMENT,
                           post=link.post.id, by=sender, said=attachment.caption or "",
                           unique=event_id, attachment=crossing)
        return None
    origin = posts.get(case.origin_post)
    if origin is not None:
        content = case_content(render(origin), case, about="attachment",
                               thread_root=case.origin_event_id)
        await services.send_case(case.origin_room, {**content, **media}, case=case,
                                 kind=OutboxKind.CASE_ATTACHMENT)
    return None


async def refuse_attachment(services: Services, *, link: CaseLink, sender: str,
                            event_id: str, refusal: AttachmentRefusal) -> Reply | None:
    """Answer an attachment that is not taken, once, and put the refusal on the audit log;
    a finished case is answered as such whatever else is wrong."""
    case = await _claim_attachment(services, link, sender, event_id)
    if case is None:
        return None
    language = link.post.language
    reason = "finished" if not case.is_open else refusal.reason
    await services.record(AuditAction.COMMAND_REFUSED, actor=sender, case_ref=case.ref,
                          room_id=_link_room(link),
                          detail={"reason": f"attachment_{reason}",
                                                   "event_id": event_id})
    if not case.is_open:
        return _finished(case, language)
    return render_notice(text(refusal.msg_id, language, **refusal.params), language=language)


def _finished(case: Case, language: str) -> Reply:
    return render_notice(text("attachment.refused.finished", language, ref=case.ref,
                              state=text(f"case.state.{case.state}", language)),
                         language=language)


async def _withheld(services: Services, case: Case, told: Sequence[str], from_post: Post,
                    msg_id: str) -> Reply | None:
    """The deliveries that were not told (a room the bot left, a clearance lowered since),
    for the sender; None when every target was."""
    posts = known_posts(services)
    directory = directory_for(services)
    withheld = []
    for delivery in await cases.deliveries(services.conn, case.id):
        target = posts.get(delivery.post)
        reason = (RefusalReason.UNKNOWN_TARGET if target is None
                  else still_reaches(target, delivery.room_id, case.tlp, directory))
        if reason is not None and delivery.post not in told:
            withheld.append(Refusal(delivery.post, reason))
    if not withheld:
        return None
    language = from_post.language
    lines: list[Line] = [text(msg_id, language, ref=case.ref)]
    lines.extend(render_refusal(refusal, tlp=case.tlp, category=case.category, posts=posts,
                                language=language) for refusal in withheld)
    return render_notice(*lines, language=language)


# --- edits ------------------------------------------------------------------------------


async def carry_edit(services: Services, *, room_id: str, sender: str, event_id: str,
                     original: str, new_body: str) -> Reply | None:
    """An edit of a case's opening message goes to the targets as an update of what
    changed (see `commands.case_edits`); it is never routed again."""
    case = await cases.case_opened_by(services.conn, room_id=room_id, event_id=original)
    if case is None or sender != case.origin_sender:  # only the author edits a message
        return None
    post = services.config.post_by_room(room_id)
    if post is None or post.id != case.origin_post:
        return None
    if not await services.claim(event_id, room_id):
        return None
    if not acts_for(post, sender):
        raise CommandError.of("error.not_post_officer", post=post.id)
    language = post.language
    if not case.is_open:
        return render_notice(text("case.edit.finished", language, ref=case.ref,
                                  state=text(f"case.state.{case.state}", language)),
                             language=language)
    parsed = split_command(new_body)
    kind = _CASE_WORDS.get(fold_word(parsed[0])) if parsed is not None else None
    if parsed is None or kind != case.kind:
        return _blocked(case, ("kind",), language)
    _, args, lines = parsed
    try:
        draft = parse_case(kind, args, lines, now=services.clock.now(),
                           tz=ZoneInfo(post.timezone))
    except CommandError as error:
        raise CommandError(text("error.edit_invalid", language, ref=case.ref) + " "
                           + error.message_in(language), usage=error.usage_in(language),
                           suggestions=error.suggestions) from None
    edit = compare_edit(case, draft)
    if edit.blocked:
        return _blocked(case, edit.blocked, language)
    if not edit.changed:
        return None
    await cases.revise_case(services.conn, case, edit.revision, post=post.id, by=sender,
                            now_ms=_now_ms(services),
                            detail={"changes": list(edit.summary), "event_id": event_id})
    revised = await cases.case_by_id(services.conn, case.id)
    assert revised is not None
    await match_case(services, revised, fields=revised.fields, free_text=revised.text)
    posts = known_posts(services)
    told = await tell_targets(services, revised, posts, about="edit",
                              render=lambda reader: render_edit_notice(
                                  revised, edit, reader=reader, posts=posts),
                              by=sender, unique=event_id)
    return render_notice(text("case.edit.done", language, ref=case.ref,
                              posts=", ".join(told) or "-"), language=language)


def _blocked(case: Case, what: Sequence[str], language: str) -> Reply:
    names = ", ".join(text(f"case.edit.what.{name}", language) for name in what)
    return render_notice(text("case.edit.blocked", language, ref=case.ref, what=names),
                         language=language)


# --- redactions -------------------------------------------------------------------------


async def withdraw(services: Services, *, room_id: str, sender: str, event_id: str,
                   redacts: str) -> None:
    """The opening message was deleted in the origin room: the case is withdrawn — cancelled
    if still open — and every target and the origin room are told so, once.

    The homeserver decided the deletion was allowed (its author or a room moderator);
    Liaison follows it when the one who deleted acts for the origin post. Redactions are
    never encrypted, so no device can be checked; a deletion is no less real for that."""
    case = await cases.case_opened_by(services.conn, room_id=room_id, event_id=redacts)
    post = services.config.post_by_room(room_id)
    if case is None or post is None or post.id != case.origin_post:
        return
    if sender != case.origin_sender and not acts_for(post, sender):
        return
    history = await cases.timeline(services.conn, case.id)
    if any(entry.kind == TimelineKind.REDACTED for entry in history):
        return  # deleted twice: withdrawn once
    if not await services.claim(event_id, room_id):
        return
    now_ms = _now_ms(services)
    await cases.add_timeline(services.conn, case.id, TimelineKind.REDACTED, ms=now_ms,
                             post=post.id, actor=sender, detail={"event_id": redacts})
    cancelled = await cases.finish_case(services.conn, case, "cancelled", post=post.id,
                                        by=sender, now_ms=now_ms)
    current = await cases.case_by_id(services.conn, case.id)
    assert current is not None
    posts = known_posts(services)
    told = await tell_targets(services, current, posts, about="withdrawn",
                              render=lambda reader: render_withdrawn_notice(
                                  current, reader=reader, posts=posts, cancelled=cancelled))
    if cancelled:  # not in the thread: its root is gone
        notice = render_notice(text("case.withdrawn.done", post.language, ref=case.ref,
                                    posts=", ".join(told) or "-"), language=post.language)
        await services.send_case(case.origin_room,
                                 case_content(notice, current, about="withdrawn"),
                                 case=current, kind=OutboxKind.CASE_WITHDRAWN)


# --- shared -----------------------------------------------------------------------------


def _now_ms(services: Services) -> int:
    return int(services.clock.now().timestamp() * 1000)
