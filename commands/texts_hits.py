"""English messages (see `commands.texts`) about hits: the hit notice in a case's
thread, `!check`, `!links`, `!unlink`, the links in `!status`, and the entity kinds."""

from __future__ import annotations

from collections.abc import Mapping

HIT_MESSAGES: Mapping[str, str] = {
    "command.check.usage": "!check KIND VALUE",
    "command.check.summary": "Ask whether any case holds a plate, VIN, phone, name…",
    "command.check.help": (
        "KIND is plate, vin, container, iban, phone, passport or name (a date of birth "
        "after the name counts). Answers hit or no hit "
        "without opening a case; where your post may not see the case that holds it, you "
        "are told which post to ask. Every check is in the audit log."
    ),
    "command.links.usage": "!links REF",
    "command.links.summary": "List the other cases that hold what this case holds.",
    "command.links.help": (
        "Shows each hit of the case: the other case and its post, or, where your post may "
        "not see it, the post to ask."
    ),
    "command.unlink.usage": "!unlink REF OTHER",
    "command.unlink.summary": "Dismiss a false hit between two cases.",
    "command.unlink.help": (
        "For the post that sent REF or OTHER. The link is kept in the record as dismissed "
        "and the pair is not reported again."
    ),
    "entity.plate": "plate",
    "entity.vin": "VIN",
    "entity.container": "container",
    "entity.iban": "IBAN",
    "entity.phone": "phone",
    "entity.passport": "passport",
    "entity.name": "name",
    "entity.file": "file",
    "hit.linked": "Hit: {entity} in {ref} is also in {other} of {post}.",
    "hit.linked.possible": (
        "Possible hit ({score}%): {entity} in {ref} resembles a person in {other} of {post}."
    ),
    "hit.pointer": "Hit: {post} holds information related to {entity} in {ref}.",
    "hit.pointer.possible": (
        "Possible hit ({score}%): {post} holds information that may relate to {entity} "
        "in {ref}."
    ),
    "hit.ask": "To ask it:",
    "hit.score": " (possible, {score}%)",
    "hit.capped": (
        "{ref} holds more identifiers than I match in one case: the first {limit} were "
        "matched, {count} were not."
    ),
    "hit.more": (
        "{ref} matches {count} more cases than I tell one by one: !links {ref} lists them."
    ),
    "check.none": "No hit for {entity}.",
    "check.hit": "Hit for {entity}:",
    "check.linked": "• {other} of {post}",
    "check.pointer": "• {post} holds related information",
    "check.kind_unknown": "I cannot check “{kind}”. Kinds: {kinds}.",
    "check.value_bad": "“{value}” is not a valid {kind}.",
    "links.none": "{ref} has no links.",
    "links.title": "Links of {ref}:",
    "links.linked": "• {other} of {post}: {entity}",
    "links.pointer": "• {post} holds related information: {entity}",
    "unlink.done": (
        "The link between {ref} and {other} is dismissed; it will not be reported again."
    ),
    "unlink.none": "{ref} and {other} are not linked.",
    "unlink.not_party": "Only the posts that sent {ref} or {other} can dismiss their link.",
    "case.status.links": "Links:",
}
