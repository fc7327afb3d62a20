"""How cases read: the relayed case, the answer to its sender, acknowledgements,
updates, closing, `!status` and `!pending`.

Pure functions from stored cases and configured posts to `Notice`s, in the
reader's language and time zone. The TLP label leads every case message and is
never translated. Officer text (fields, free text, updates, outcomes) goes in
`Relayed` spans, so it is neutralised and escaped like everything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from liaison.commands.case_edits import CaseEdit
from liaison.commands.deadlines import class_summary
from liaison.commands.handling import handling_label
from liaison.commands.localtime import Moment, field_time_ms, format_time, is_time_field
from liaison.commands.model import Post, Tlp
from liaison.commands.records import Case, Delivery, TimelineEntry
from liaison.commands.render import (
    Code,
    Line,
    Mention,
    Notice,
    Relayed,
    Span,
    Strong,
    render_notice,
)
from liaison.commands.routing import Refusal, RefusalReason
from liaison.commands.texts import field_key, text

MAX_RELAYED_TEXT_IN_STATUS = 300
"""Updates and outcomes are cut to this many characters in `!status`."""

MAX_REPLY_CHARS = 4000
"""A carried reply is cut to this many characters (the notice has a byte budget too)."""

BULLET = "• "

CASE_KEY = "org.liaison.case"
"""The namespaced content key with a case's machine-readable metadata; trusted only on
events the bot sent itself."""


__all__ = ["format_time"]  # re-exported: the time format lives in commands.localtime


def origin_timezone(case: Case, posts: Mapping[str, Post]) -> str | None:
    """The zone the case's sender typed its times in (None: its post is gone)."""
    origin = posts.get(case.origin_post)
    return origin.timezone if origin is not None else None


def case_moment(ms: int, case: Case, reader_timezone: str,
                posts: Mapping[str, Post]) -> Moment:
    """A time of the case, in the reader's zone with the sender's beside it."""
    return Moment(ms, reader_timezone, origin_timezone(case, posts))


def field_line(key: str, value: str, case: Case, reader: Post,
               posts: Mapping[str, Post]) -> list[Span]:
    """`key: value`, a known key in the reader's language (`прибытие` reads `eta` in
    English) and any other as typed; a time field (`eta: 18:30`) shown in the reader's
    zone with the sender's time beside it, and as typed when it names no time."""
    origin = origin_timezone(case, posts)
    ms = (field_time_ms(value, created_ms=case.created_ms, timezone=origin)
          if origin is not None and is_time_field(key) else None)
    shown = field_key(key, reader.language)
    if ms is None:
        return [Strong(f"{shown}: "), Relayed(value)]
    return [Strong(f"{shown}: "),
            case_moment(ms, case, reader.timezone, posts).localized(reader.language)]


def post_label(post_id: str, posts: Mapping[str, Post], language: str) -> str:
    """`Termez border post (UZ-TERMEZ)`, or the bare id for a post no longer configured."""
    post = posts.get(post_id)
    if post is None:
        return post_id
    name = post.name(language)
    return post_id if name == post_id else text("post.label", language, name=name, id=post_id)


def case_title(case: Case, language: str) -> str:
    """`Urgent alert`, `Flash request`."""
    return text(f"case.title.{case.kind}.{case.priority.value}", language)


def tlp_label(tlp: Tlp) -> Strong:
    return Strong(f"TLP:{tlp.value}")


def case_label(case: Case, language: str) -> Strong:
    """The TLP label, then the handling code and the action to take (`commands.handling`):
    they lead every message about the case."""
    return Strong(f"TLP:{case.tlp.value}"
                  + handling_label(case.handling, case.action, language))


def case_metadata(case: Case) -> dict[str, str]:
    """The `org.liaison.case` content key: what other code correlates on, never the prose."""
    return {"ref": case.ref, "kind": case.kind, "origin": case.origin_post}


# --- the relayed case -------------------------------------------------------------------


def render_relayed_case(case: Case, *, target: Post, posts: Mapping[str, Post],
                        related_visible: bool = True, due_ms: int | None = None) -> Notice:
    """The case as the target post reads it: TLP first, then who sent it, the details,
    the fields and text as typed, and how to acknowledge. The related case (`ref:`) is
    named only to a post that may see it (`related_visible`)."""
    language, timezone = target.language, target.timezone
    lines: list[Line] = [
        [case_label(case, language), " ", Strong(case_title(case, language)), " ", Code(case.ref)],
        text(f"tlp.guidance.{case.tlp.value}", language),
        *([[Strong("H3: "), Relayed(case.handling_text)]] if case.handling_text else ()),
        text("case.from", language, post=post_label(case.origin_post, posts, language),
             time=case_moment(case.created_ms, case, timezone, posts)),
    ]
    details = []
    if case.category is not None:
        details.append(text("case.category", language, category=case.category))
    if case.grading is not None:
        details.append(text("case.grading", language, grading=case.grading))
    if case.related_ref is not None and related_visible:
        details.append(text("case.related", language, ref=case.related_ref))
    if details:
        lines.append(" · ".join(details))
    due_ms = case.due_ms if due_ms is None else due_ms  # the target's own (its class)
    if case.deadline_class is not None:
        lines.append(text("request.class", language, name=case.deadline_class))
    if due_ms is not None:
        lines.append(Strong(text("case.due", language,
                                 time=case_moment(due_ms, case, timezone, posts))))
    lines.extend(field_line(key, value, case, target, posts) for key, value in case.fields)
    if case.text:
        lines.append(Relayed(case.text))
    if target.duty_officers:  # the people who must act now (commands.notify)
        duty: list[Span] = [text("chase.remind.duty", language)]
        for user in target.duty_officers:
            duty += [" ", Mention(user)]
        lines.append(duty)
    lines.append([text("case.ack_hint", language) + " ", Code(f"!ack {case.ref}")])
    return render_notice(*lines, language=language)


# --- the answer to the sender -----------------------------------------------------------


def render_refusal(refusal: Refusal, *, tlp: Tlp, category: str | None,
                   posts: Mapping[str, Post], language: str) -> Line:
    """`UZ-TERMZ: not a post id, ... Did you mean: UZ-TERMEZ?` for one refused target."""
    reason = refusal.reason
    params: dict[str, object] = {"tlp": tlp.value, "category": category or ""}
    post = posts.get(refusal.target)
    if reason is RefusalReason.CLEARANCE and post is not None:
        params["clearance"] = post.clearance.value
    elif reason is RefusalReason.CLEARANCE:
        params["clearance"] = "?"
    line: list[str | Code] = [BULLET, Code(refusal.target), ": ",
                              text(f"case.refusal.{reason.value}", language, **params)]
    if reason is RefusalReason.TLP_AMBER_FANOUT and refusal.suggestions:
        line += [" ", text("case.refusal.name_posts", language,
                           posts=",".join(refusal.suggestions))]
    elif reason is RefusalReason.TLP_STRICT_RULE:
        line += [" ", text("case.refusal.name_post", language, post=refusal.target)]
    elif refusal.suggestions:
        line += [" ", text("error.suggestions", language,
                           suggestions=", ".join(refusal.suggestions))]
    return line


def render_routed(case: Case, delivered: Sequence[str], refusals: Sequence[Refusal], *,
                  posts: Mapping[str, Post], language: str) -> Notice:
    """The sender's answer for a stored case: the reference, where it went, what was refused."""
    lines: list[Line] = [Strong(text("case.sent", language, ref=case.ref,
                                     title=case_title(case, language)))]
    lines.extend(BULLET + post_label(post_id, posts, language) for post_id in delivered)
    if refusals:
        lines.append(text("case.refused", language))
        lines.extend(render_refusal(refusal, tlp=case.tlp, category=case.category, posts=posts,
                                    language=language) for refusal in refusals)
    return render_notice(*lines, language=language)


def render_not_sent(refusals: Sequence[Refusal], *, tlp: Tlp, category: str | None,
                    posts: Mapping[str, Post], language: str) -> Notice:
    """The sender's answer when nothing was routed: every refusal and what to do."""
    if any(refusal.reason is RefusalReason.TLP_RED_ROOM for refusal in refusals):
        return render_notice(text("case.not_sent", language),
                             BULLET + text("case.refusal.tlp_red_room", language),
                             language=language)
    return render_notice(text("case.not_sent", language), *(
        render_refusal(refusal, tlp=tlp, category=category, posts=posts, language=language)
        for refusal in refusals), language=language)


# --- acknowledgements, updates, closing ---------------------------------------------------


def render_ack_notice(case: Case, delivery: Delivery, *, origin: Post,
                      posts: Mapping[str, Post], mention: str | None = None) -> Notice:
    """What the origin room reads when a target acknowledges; `mention`: the officer who
    sent the case, when the notice must ring (`commands.notify`)."""
    language = origin.language
    assert delivery.acknowledged_by is not None and delivery.acknowledged_ms is not None
    line: list[Span] = [case_label(case, language), " ", text(
        "case.ack.notice", language, post=post_label(delivery.post, posts, language),
        ref=case.ref, who=delivery.acknowledged_by,
        time=Moment(delivery.acknowledged_ms, origin.timezone))]
    if mention is not None:
        line += [" ", Mention(mention)]
    return render_notice(line, language=language)


def render_update_notice(case: Case, update: str, *, reader: Post,
                         posts: Mapping[str, Post]) -> Notice:
    """An update as each target reads it."""
    language = reader.language
    return render_notice(
        [case_label(case, language), " ", Strong(text("case.update.notice", language, ref=case.ref,
                                                post=post_label(case.origin_post, posts,
                                                                language)))],
        Relayed(update), language=language,
    )


def render_finished_notice(case: Case, *, reader: Post, posts: Mapping[str, Post]) -> Notice:
    """A closed or cancelled case as each target reads it."""
    language = reader.language
    origin = post_label(case.origin_post, posts, language)
    lines: list[Line] = [[case_label(case, language), " ", Strong(text(
        f"case.{case.state}.notice", language, ref=case.ref, post=origin))]]
    if case.outcome:
        lines.append([Strong(text("case.outcome", language) + " "), Relayed(case.outcome)])
    return render_notice(*lines, language=language)


def render_reply_notice(case: Case, said: str, *, from_post: str, who: str, reader: Post,
                        posts: Mapping[str, Post]) -> Notice:
    """A reply carried between the origin and a target, labelled with the post it came from."""
    language = reader.language
    return render_notice(
        [case_label(case, language), " ", Strong(text(
            "case.reply.notice", language, ref=case.ref,
            post=post_label(from_post, posts, language), who=who))],
        Relayed(said, max_chars=MAX_REPLY_CHARS), language=language,
    )


def render_attachment_notice(case: Case, *, name: str, mimetype: str, size: int, sha256: str,
                             caption: str, from_post: str, who: str, reader: Post,
                             posts: Mapping[str, Post]) -> Notice:
    """The caption of a relayed attachment: whose it is, on which case, its digest (so the
    reader can check the file against the chain of custody), then the officer's caption."""
    language = reader.language
    lines: list[Line] = [
        [case_label(case, language), " ", Strong(text(
            "case.attachment.notice", language, ref=case.ref,
            post=post_label(from_post, posts, language), who=who))],
        text("case.attachment.file", language, name=name, type=mimetype, size=size,
             sha256=sha256),
    ]
    if caption:
        lines.append(Relayed(caption, max_chars=MAX_REPLY_CHARS))
    return render_notice(*lines, language=language)


def render_edit_notice(case: Case, edit: CaseEdit, *, reader: Post,
                       posts: Mapping[str, Post]) -> Notice:
    """An edit of the case's opening message as each target reads it: only what changed."""
    language, timezone = reader.language, reader.timezone
    removed = text("case.edit.removed", language)
    lines: list[Line] = [[case_label(case, language), " ", Strong(text(
        "case.edit.notice", language, ref=case.ref,
        post=post_label(case.origin_post, posts, language)))]]
    for change in edit.fields:
        lines.append([Strong(f"{field_key(change.key, language)}: "),
                      removed if change.new is None else Relayed(change.new)])
    revision = edit.revision
    if edit.grading_changed:
        lines.append(text("case.grading", language, grading=revision.grading or removed))
    if edit.due_changed:
        lines.append(text("case.edit.no_due", language) if revision.due_ms is None
                     else Strong(text("case.due", language,
                                      time=case_moment(revision.due_ms, case, timezone, posts))))
    if edit.text_changed:
        lines.append(Strong(text("case.edit.text", language)))
        lines.append(Relayed(revision.text) if revision.text else removed)
    return render_notice(*lines, language=language)


def render_withdrawn_notice(case: Case, *, reader: Post, posts: Mapping[str, Post],
                            cancelled: bool) -> Notice:
    """The origin deleted the message that opened the case; said in every room of the case."""
    language = reader.language
    msg_id = "case.withdrawn.cancelled" if cancelled else "case.withdrawn.notice"
    return render_notice([case_label(case, language), " ", Strong(text(
        msg_id, language, ref=case.ref, post=post_label(case.origin_post, posts, language)))],
        language=language)


# --- !status and !pending ---------------------------------------------------------------


def render_status(case: Case, deliveries: Sequence[Delivery],
                  history: Sequence[TimelineEntry], *, posts: Mapping[str, Post],
                  language: str, timezone: str, show_refusals: bool,
                  links: Sequence[Line] = ()) -> Notice:
    """The case, each delivery's state, its links to other cases (`commands.hits`) and
    the timeline, in the reader's time zone."""
    lines: list[Line] = [[case_label(case, language), " ", text(
        "case.status.title", language, ref=case.ref, title=case_title(case, language),
        post=post_label(case.origin_post, posts, language),
        state=text(f"case.state.{case.state}", language))]]
    if case.deadline_class is not None:
        lines.append(text("request.class", language, name=case.deadline_class))
    lines.append(text("case.status.deliveries", language))
    lines.extend(BULLET + _delivery_state(delivery, posts, language, timezone)
                 + _deadline_note(case, delivery, language, timezone)
                 for delivery in deliveries)
    if links:
        lines.append(text("case.status.links", language))
        lines.extend(links)
    lines.append(text("case.status.timeline", language))
    for entry in history:
        if entry.kind == "disclosed":  # the record of who looked: for the audit, not here
            continue
        if entry.kind == "refused" and not show_refusals:
            continue
        lines.append(_timeline_line(entry, posts, language, timezone))
    return render_notice(*lines, language=language)


def _delivery_state(delivery: Delivery, posts: Mapping[str, Post], language: str,
                    timezone: str) -> str:
    post = post_label(delivery.post, posts, language)
    if delivery.refused_ms is not None:
        return text("case.status.delivery.refused", language, post=post,
                    time=Moment(delivery.refused_ms, timezone), who=delivery.refused_by or "",
                    reason=text(f"request.reason.{delivery.refusal_reason}", language))
    if delivery.answered_ms is not None:
        return text("case.status.delivery.answered", language, post=post,
                    time=Moment(delivery.answered_ms, timezone), who=delivery.answered_by)
    if delivery.acknowledged_ms is not None:
        return text("case.status.delivery.acknowledged", language, post=post,
                    time=Moment(delivery.acknowledged_ms, timezone),
                    who=delivery.acknowledged_by)
    if delivery.sent_ms is None:
        return text("case.status.delivery.queued", language, post=post)
    if delivery.seen_ms is not None:
        return text("case.status.delivery.seen", language, post=post,
                    time=Moment(delivery.sent_ms, timezone),
                    seen=Moment(delivery.seen_ms, timezone), who=delivery.seen_by or "")
    return text("case.status.delivery.routed", language, post=post,
                time=Moment(delivery.sent_ms, timezone))


def _deadline_note(case: Case, delivery: Delivery, language: str, timezone: str) -> str:
    """`; due …, answered on time` for a request's delivery with a deadline."""
    if case.kind != "request" or delivery.refused_ms is not None:
        return ""
    summary = class_summary(None, delivery.due_ms or case.due_ms, delivery.answered_ms,
                            timezone, language)
    return "; " + summary if summary else ""


def _timeline_line(entry: TimelineEntry, posts: Mapping[str, Post], language: str,
                   timezone: str) -> Line:
    when = Moment(entry.ms, timezone)
    post = post_label(entry.post, posts, language) if entry.post else ""
    who = entry.actor or ""
    detail = entry.detail
    msg_id = f"case.timeline.{entry.kind}"
    if entry.kind == "refused":
        reason = text(f"case.reason.{detail.get('reason', 'unknown_target')}", language)
        target = post or str(detail.get("target", ""))
        return BULLET + text(msg_id, language, time=when, post=target, reason=reason)
    said = detail.get("text") or detail.get("outcome")
    if entry.kind in ("updated", "closed") and said:
        return [BULLET + text(msg_id, language, time=when, post=post, who=who) + ": ",
                Relayed(str(said), max_chars=MAX_RELAYED_TEXT_IN_STATUS)]
    if entry.kind == "attached":
        return BULLET + text(msg_id, language, time=when, post=post, who=who,
                             name=str(detail.get("name", "")),
                             type=str(detail.get("mimetype", "")),
                             size=int(detail.get("size", 0)),
                             sha256=str(detail.get("sha256", "")))
    if entry.kind in ("delayed", "declined"):  # issue 20: the reason code, then the text
        if entry.kind == "delayed" and "new_due_ms" not in detail:
            msg_id = "case.timeline.delayed.undated"  # told by a partner's bot (issue 18)
        spans: list[Span] = [BULLET + text(
            msg_id, language, time=when, post=post, who=who,
            due=Moment(int(detail.get("new_due_ms", 0)), timezone),
            reason=text(f"request.reason.{detail.get('code', 'other')}", language))]
        if detail.get("text"):
            spans += [" — ", Relayed(str(detail["text"]), max_chars=MAX_RELAYED_TEXT_IN_STATUS)]
        return spans
    if entry.kind == "permitted":
        return BULLET + text(msg_id, language, time=when, who=who,
                             target=str(detail.get("target", "")))
    if entry.kind == "edited":
        changes = ", ".join(str(name) for name in detail.get("changes", []))
        return BULLET + text(msg_id, language, time=when, post=post, who=who, changes=changes)
    if entry.kind in ("created", "routed", "acknowledged", "answered", "updated", "closed",
                      "cancelled", "replied", "redacted", "seen"):
        return BULLET + text(msg_id, language, time=when, post=post, who=who)
    if entry.kind in ("reminded", "escalated", "snoozed"):  # the chase (bot.chaser)
        late = text("case.timeline.late", language) if detail.get("late") else ""
        line = BULLET + text(msg_id, language, time=when, post=post, who=who, late=late)
        unreachable = detail.get("unreachable")
        if entry.kind == "escalated" and isinstance(unreachable, list) and unreachable:
            line += text("case.timeline.not_joined", language,
                         users=", ".join(str(user) for user in unreachable))
        return line
    return BULLET + text("case.timeline.other", language, time=when, kind=entry.kind)


def render_pending(
    post: Post,
    sent: Sequence[tuple[Case, Sequence[Delivery]]],
    received: Sequence[tuple[Case, Delivery]],
    *,
    posts: Mapping[str, Post],
    language: str,
) -> Notice:
    """Open cases of a post, both directions, oldest first."""
    timezone = post.timezone
    lines: list[Line] = [text("case.pending.title", language,
                              post=post_label(post.id, posts, language))]
    if not sent and not received:
        lines.append(text("case.pending.none", language))
        return render_notice(*lines, language=language)
    if sent:
        lines.append(Strong(text("case.pending.sent", language)))
        for case, deliveries in sent:
            acked = sum(1 for delivery in deliveries if delivery.acknowledged_ms is not None)
            seen = sum(1 for delivery in deliveries if delivery.seen_ms is not None
                       or delivery.acknowledged_ms is not None)
            item: list[Span] = [BULLET, case_label(case, language), " ", Code(case.ref), " ",
                                text("case.pending.sent_item", language,
                                     title=case_title(case, language),
                                     time=Moment(case.created_ms, timezone), acked=acked,
                                     seen=seen, total=len(deliveries))]
            dues = [delivery.due_ms or case.due_ms for delivery in deliveries
                    if delivery.answered_ms is None and delivery.refused_ms is None]
            due_ms = min((due for due in dues if due is not None), default=None)
            if case.kind == "request" and (case.deadline_class or due_ms is not None):
                item.append("; " + class_summary(case.deadline_class, due_ms, None, timezone,
                                                 language))
            lines.append(item)
    if received:
        lines.append(Strong(text("case.pending.received", language)))
        for case, delivery in received:
            state = text(f"case.pending.state.{delivery.state}", language)
            if delivery.refused_ms is not None:
                state = text("case.pending.state.refused", language)
            due_ms = delivery.due_ms or case.due_ms
            if case.deadline_class is not None:
                state += "; " + text("request.class", language, name=case.deadline_class)
            if due_ms is not None and delivery.answered_ms is None \
                    and delivery.refused_ms is None:
                state += "; " + text("case.pending.due", language,
                                     time=Moment(due_ms, timezone))
            lines.append([BULLET, case_label(case, language), " ", Code(case.ref), " ", text(
                "case.pending.received_item", language, title=case_title(case, language),
                post=post_label(case.origin_post, posts, language),
                time=Moment(case.created_ms, timezone), state=state)])
    return render_notice(*lines, language=language)
