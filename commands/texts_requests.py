"""The English of issue 20's messages: deadline classes, delays and refusals, handling
codes and actions, permits, TLP:RED to named people. Joined into
`commands.texts.MESSAGES`; Russian and Arabic live in the catalogues like the rest."""

from __future__ import annotations

from collections.abc import Mapping

REQUEST_MESSAGES: Mapping[str, str] = {
    # commands
    "command.delay.usage": "!delay CASE DURATION REASON [TEXT]",
    "command.delay.summary": "Tell the requester your answer will be late, and why.",
    "command.delay.help": (
        "Only the post a request went to (or its supervisors), in its room or the case's "
        "thread. DURATION such as 2d or 12h moves the deadline; REASON is judicial "
        "(a judicial authorisation is pending), agency (another agency is awaited), "
        "technical or other, then free text. The request's class limits how long it may "
        "be delayed in all."
    ),
    "command.refuse.usage": "!refuse CASE REASON [TEXT]",
    "command.refuse.summary": "Refuse a request sent to your post, with the reason.",
    "command.refuse.help": (
        "REASON is unavailable (the information is not available), disproportionate, "
        "investigation (answering would harm an investigation) or law (the law does not "
        "permit it), then free text. The requester is told and the chase stops."
    ),
    "command.permit.usage": "!permit CASE POST",
    "command.permit.summary": "Let a case marked H2 be passed on to one more post.",
    "command.permit.help": (
        "Only the post that sent the case (or its supervisors). H2 means the information "
        "is not passed on without the provider's permission; the permit is audited."
    ),
    # deadline classes
    "request.class": "class {name}",
    "request.due": "due {time}",
    "request.on_time": "answered on time",
    "request.late": "answered late",
    "report.on_time": "class {name}: {on_time} of {answered} answered on time ({share})",
    "request.error.class_unknown": (
        "{value} is not a deadline class; the classes are {classes}."
    ),
    "request.error.class_on_alert": (
        "class: is only for requests; an alert has no answer deadline."
    ),
    "request.error.due_after_class": (
        "due: is later than class {name} allows ({within} from receipt): the latest is "
        "{latest}."
    ),
    # !delay and !refuse
    "request.error.delay_duration_missing": "How long? Give the delay, e.g. 2d or 12h.",
    "request.error.delay_duration": "{value} is not a delay; write it like 12h or 2d.",
    "request.error.delay_reason_missing": "Why? Give a reason code: {codes}.",
    "request.error.delay_reason_unknown": "{value} is not a reason code; use one of {codes}.",
    "request.error.refuse_reason_missing": "Why? Give a reason code: {codes}.",
    "request.error.refuse_reason_unknown": "{value} is not a reason code; use one of {codes}.",
    "request.error.delay_too_long": (
        "A delay of {delay} is longer than class {name} allows: at most {limit} in all, "
        "{left} left."
    ),
    "request.error.not_request": "{ref} is an alert; only a request is delayed or refused.",
    "request.error.not_target": (
        "Only a post {ref} was sent to delays or refuses it, in its own room."
    ),
    "request.error.settled": "{ref} is already {state} at your post.",
    "request.state.answered": "answered",
    "request.state.refused": "refused",
    "request.state.closed": "closed",
    "request.state.cancelled": "cancelled",
    "request.delay.done": "{ref}: your answer is now due {time}; {origin} has been told.",
    "request.delay.notice": (
        "{post} delays its answer to {ref} by {delay}, now due {time}. Reason: {reason}."
    ),
    "request.refuse.done": "{ref} refused; {origin} has been told.",
    "request.refuse.notice": "{post} refuses {ref}. Reason: {reason}.",
    "request.reason.judicial": "a judicial authorisation is pending",
    "request.reason.agency": "another agency is awaited",
    "request.reason.technical": "technical reasons",
    "request.reason.other": "other",
    "request.reason.unavailable": "the information is not available",
    "request.reason.disproportionate": "the request is disproportionate",
    "request.reason.investigation": "answering would harm an investigation",
    "request.reason.law": "the law does not permit it",
    "case.status.delivery.refused": "{post}: refused {time} by {who} ({reason})",
    "case.pending.state.refused": "refused",
    "case.timeline.delayed": "{time} answer delayed by {post} ({who}) until {due}: {reason}",
    "case.timeline.declined": "{time} refused by {post} ({who}): {reason}",
    "case.timeline.permitted": "{time} {who} permitted passing it on to {target}",
    # handling codes and actions
    "handling.H0": "use only for the stated purpose",
    "handling.H1": "not for court without permission",
    "handling.H2": "not to be passed on without permission",
    "handling.H3": "restricted",
    "handling.H3.text": "H3 restriction: {text}",
    "handling.action": "ACTION: {action}",
    "action.discreet-check": "discreet check",
    "action.specific-check": "specific check",
    "action.stop": "stop and detain",
    "action.seize": "seize",
    "action.inform-only": "inform only",
    "handling.error.empty": "The option {key}: needs a value, e.g. h:H2 or action:stop.",
    "handling.error.code_unknown": "{value} is not a handling code; use H0, H1, H2 or H3.",
    "handling.error.action_unknown": "{value} is not an action; the actions are {actions}.",
    "handling.error.h3_text": (
        "H3 needs its restriction in a line h3: …, e.g. h3: not to be shared with customs."
    ),
    "handling.error.h3_without": "The line h3: is only for a case marked h:H3.",
    "handling.error.permit_args": "Give the case and the post, e.g. !permit KZ-0042 UZ-TERMEZ.",
    "handling.error.permit_not_origin": (
        "Only {origin}, which sent {ref}, or its supervisors can permit passing it on."
    ),
    "handling.error.permit_not_h2": "{ref} is not marked H2; it needs no permit.",
    "handling.error.permit_unknown_post": "{post} is not a post id.",
    "handling.permit.done": "{ref} may now be passed on to {post}.",
    "handling.permit.already": "{ref} was already permitted for {post}.",
    "handling.error.h2_forward": (
        "{ref} is marked H2: it is not passed on to {posts} without the permission of "
        "{origin} (!permit {ref} POST)."
    ),
    "handling.error.strict_forward": "{ref} is {tlp}: it is never passed on.",
    "handling.forward.done": "{ref} is now also sent to {posts}.",
    # TLP:RED to named people
    "red.error.room": (
        "{value} is a room; TLP:RED goes only to named people, e.g. to:@name:server."
    ),
    "red.error.not_person": (
        "{value} is not a person; TLP:RED goes only to named people, e.g. to:@name:server, "
        "never to posts or groups."
    ),
    "red.error.not_cleared": (
        "{user} is not a listed officer or supervisor of a post cleared for TLP:RED."
    ),
    "red.error.nobody": "TLP:RED needs the people it goes to, e.g. to:@name:server.",
    "red.error.not_red": "Only TLP:RED goes to named people; name posts for other levels.",
    "red.sent": "{ref} sent by direct message to {people}. Its content is not shown here.",
    "red.reply.done": "Your reply on {ref} was carried to {origin}.",
    "red.ack.done": "{ref} acknowledged.",
    "red.ack.notice": "{ref} acknowledged by {who}.",
}
