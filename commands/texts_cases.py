"""English messages (see `commands.texts`) about cases: who may act, labels, the relayed
case, the answer to the sender, acknowledgements, `!status` and `!pending`, replies,
reactions, edits and deletions."""

from __future__ import annotations

from collections.abc import Mapping

CASE_MESSAGES: Mapping[str, str] = {
    # cases: who may act, which case
    "error.case_room_not_post": (
        "This room is not a post's room in the configuration, so cases cannot be sent or "
        "worked from here. Ask the operator to add the room to a post."
    ),
    "error.case_unknown": "There is no case {ref} that your post can see.",
    "error.ack_own": (
        "{ref} was sent by your post; only the posts it went to acknowledge it."
    ),
    "error.update_not_origin": (
        "Only {origin}, which sent {ref}, or its supervisors can update it."
    ),
    "error.close_not_origin": (
        "Only {origin}, which sent {ref}, or its supervisors can close it."
    ),
    "error.cancel_not_origin": (
        "Only {origin}, which sent {ref}, or its supervisors can cancel it."
    ),
    "error.update_finished": "{ref} is {state}; it takes no more updates.",
    "error.not_post_officer": (
        "You are not listed as an officer of {post}, so I cannot act on this for the post. "
        "Ask the operator to add you to the post's officers."
    ),
    "error.role_required": "{command} is only for {role}.",
    "error.edit_invalid": "Your edit of {ref} was not passed on:",
    # cases: labels
    "post.label": "{name} ({id})",
    "case.title.alert.flash": "Flash alert",
    "case.title.alert.urgent": "Urgent alert",
    "case.title.alert.routine": "Routine alert",
    "case.title.request.flash": "Flash request",
    "case.title.request.urgent": "Urgent request",
    "case.title.request.routine": "Routine request",
    "case.state.open": "open",
    "case.state.closed": "closed",
    "case.state.cancelled": "cancelled",
    "tlp.guidance.CLEAR": "No limit on disclosure.",
    "tlp.guidance.GREEN": "Share within the law-enforcement community, not publicly.",
    "tlp.guidance.AMBER": "Share only within your organisation, on a need-to-know basis.",
    "tlp.guidance.AMBER+STRICT": (
        "Share only within your organisation, on a need-to-know basis; do not forward."
    ),
    "tlp.guidance.RED": "For the named recipients only.",
    # cases: the relayed case, as the target post reads it
    "case.from": "From {post}, {time}",
    "case.category": "Category: {category}",
    "case.grading": "Grading: {grading}",
    "case.related": "Follows up {ref}",
    "case.due": "Answer needed by {time}",
    "case.ack_hint": "Acknowledge with",
    # cases: the answer to the sender
    "case.sent": "{ref}: {title} sent to:",
    "case.not_sent": "Nothing was sent. Fix the targets below and send it again:",
    "case.refused": "Not sent to:",
    "case.refusal.unknown_target": "not a post id, country code, group or neighbours.",
    "case.refusal.empty": "no post other than yours is in it.",
    "case.refusal.self": "that is your own post.",
    "case.refusal.tlp_red_room": (
        "TLP:RED is never sent into a room; RED is only for named individuals."
    ),
    "case.refusal.tlp_amber_fanout": (
        "TLP:{tlp} goes only to posts named by id, not to a group, a country or neighbours."
    ),
    "case.refusal.tlp_strict_rule": (
        "the category rule for {category} would add it, but TLP:AMBER+STRICT goes only to "
        "the posts you name."
    ),
    "case.refusal.clearance": "cleared up to TLP:{clearance}; this case is TLP:{tlp}.",
    "case.refusal.not_joined": "I am not in that post's room; ask the operator to invite me.",
    "case.refusal.not_encrypted": (
        "that post's room is not end-to-end encrypted, so I send nothing there."
    ),
    "case.refusal.name_posts": "Name the posts instead: to:{posts}",
    "case.refusal.name_post": "Add to:{post} if it should receive this.",
    "case.reason.unknown_target": "unknown target",
    "case.reason.empty": "no other post",
    "case.reason.self": "own post",
    "case.reason.tlp_red_room": "TLP:RED is not sent into rooms",
    "case.reason.tlp_amber_fanout": "TLP:AMBER goes to named posts only",
    "case.reason.tlp_strict_rule": "TLP:AMBER+STRICT goes to named posts only",
    "case.reason.clearance": "clearance below the case's TLP",
    "case.reason.not_joined": "the bot is not in its room",
    "case.reason.not_encrypted": "its room is not encrypted",
    # cases: acknowledgements, updates, closing
    "case.ack.notice": "{post} acknowledged {ref} ({who}, {time}).",
    "case.ack.done": "Acknowledged {ref}; {origin} has been told.",
    "case.ack.already": "{ref} was already acknowledged by {who} at {time}.",
    "case.ack.finished": "{ref} is {state}; there is nothing to acknowledge.",
    "case.update.notice": "Update to {ref} from {post}:",
    "case.update.done": "Update to {ref} sent to: {posts}.",
    "case.closed.notice": "{ref} was closed by {post}.",
    "case.cancelled.notice": "{ref} was cancelled by {post}; disregard it.",
    "case.outcome": "Outcome:",
    "case.closed.done": "{ref} closed; told: {posts}.",
    "case.cancelled.done": "{ref} cancelled; told: {posts}.",
    "case.finished.already": "{ref} was already {state} at {time}.",
    # cases: !status and !pending
    "case.status.title": "{ref} — {title} from {post}, {state}",
    "case.status.deliveries": "Deliveries:",
    "case.status.delivery.queued": "{post}: queued, not delivered yet",
    "case.status.delivery.routed": "{post}: sent {time}, not acknowledged",
    "case.status.delivery.seen": "{post}: sent {time}, seen {seen} by {who}, not acknowledged",
    "case.status.delivery.acknowledged": "{post}: acknowledged {time} by {who}",
    "case.status.delivery.answered": "{post}: answered {time} by {who}",
    "case.status.timeline": "Timeline:",
    "case.timeline.created": "{time} created by {who} at {post}",
    "case.timeline.routed": "{time} routed to {post}",
    "case.timeline.refused": "{time} not sent to {post}: {reason}",
    "case.timeline.acknowledged": "{time} acknowledged by {post} ({who})",
    "case.timeline.answered": "{time} answered by {post} ({who})",
    "case.timeline.updated": "{time} update from {post} ({who})",
    "case.timeline.closed": "{time} closed by {post} ({who})",
    "case.timeline.cancelled": "{time} cancelled by {post} ({who})",
    "case.timeline.other": "{time} {kind}",
    "case.pending.title": "Open cases of {post}:",
    "case.pending.none": "No open cases.",
    "case.pending.sent": "Sent by your post:",
    "case.pending.received": "Sent to your post:",
    "case.pending.sent_item": (
        "{title}, {time}: seen at {seen} of {total}, acknowledged by {acked} of {total}"
    ),
    "case.pending.received_item": "{title} from {post}, {time}: {state}",
    "case.pending.state.routed": "not acknowledged",
    "case.pending.state.acknowledged": "acknowledged",
    "case.pending.state.answered": "answered",
    "case.pending.due": "answer needed by {time}",
    # cases: replies, reactions, edits and deletions (see handlers.case_events)
    "case.reply.notice": "Reply from {post} on {ref} ({who}):",
    "case.reply.finished": "{ref} is {state}; replies are no longer passed on.",
    "case.reply.withheld": "Your reply on {ref} was not passed to:",
    "case.reaction.plaintext": (
        "Your reaction did not acknowledge {ref}: reactions travel unencrypted, and this "
        "Liaison accepts acknowledgements only in encrypted messages. Send !ack {ref}, "
        "or reply to the alert."
    ),
    "case.attachment.notice": "Attachment from {post} on {ref} ({who})",
    "case.attachment.file": "{name}, {type}, {size} bytes, SHA-256 {sha256}",
    "case.attachment.withheld": "Your attachment on {ref} was not passed to:",
    "attachment.refused.finished": "{ref} is {state}; attachments are no longer passed on.",
    "attachment.refused.too_large": (
        "{name} was not attached: it is {size} bytes, over the limit of {limit} bytes."
        " Nothing was passed on."),
    "attachment.refused.type": (
        "{name} was not attached: files of type {type} are not accepted (accepted: {types})."
        " Nothing was passed on."),
    "attachment.refused.invalid": (
        "{name} was not attached: it could not be decrypted, or it does not match what"
        " your app declared about it. Nothing was passed on; send it again."),
    "attachment.refused.unavailable": (
        "{name} was not attached: the bot could not fetch it from the media server in time."
        " Nothing was passed on; send it again later."),
    "case.edit.notice": "{ref} was edited by {post}. What changed:",
    "case.edit.removed": "(removed)",
    "case.edit.no_due": "No deadline any more.",
    "case.edit.text": "Text:",
    "case.edit.done": (
        "Your edit of {ref} went to: {posts}. An edit is not routed again; it goes to the "
        "posts that have the case."
    ),
    "case.edit.blocked": (
        "Your edit of {ref} changes its {what}, which an edit cannot change once the case is "
        "sent; nothing was passed on. Use !update {ref} for new information, or send a new "
        "case with ref:{ref}."
    ),
    "case.edit.finished": "{ref} is {state}; your edit was not passed on.",
    "case.edit.what.kind": "kind (alert or request)",
    "case.edit.what.priority": "priority",
    "case.edit.what.tlp": "TLP",
    "case.edit.what.cat": "category",
    "case.edit.what.ref": "related case (ref:)",
    "case.withdrawn.cancelled": (
        "{post} withdrew {ref}: the originator deleted the message. The case is cancelled; "
        "disregard it."
    ),
    "case.withdrawn.notice": "{post} withdrew the message of {ref}: the originator deleted it.",
    "case.withdrawn.done": (
        "{ref} was withdrawn because its message was deleted; the case is cancelled. Told: {posts}."
    ),
    "case.timeline.replied": "{time} reply from {post} ({who})",
    "case.timeline.seen": "{time} seen at {post} ({who})",
    "case.timeline.attached": (
        "{time} attachment from {post} ({who}): {name}, {type}, {size} bytes,"
        " SHA-256 {sha256}"),
    "case.timeline.edited": "{time} edited by {post} ({who}): {changes}",
    "case.timeline.redacted": "{time} message deleted at {post} ({who})",
}
