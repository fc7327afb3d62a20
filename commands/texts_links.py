"""English messages (see `commands.texts`) about links between bots (`docs/links.md`):
`!posts`, and what an officer reads of a case that crossed a link — a refusal by the
partner's bot, a delay or refusal told by it."""

from __future__ import annotations

from collections.abc import Mapping

LINK_MESSAGES: Mapping[str, str] = {
    "command.posts.usage": "!posts",
    "command.posts.summary": "List the posts you can send cases to, here and at linked bots.",
    "command.posts.help": (
        "Shows this bot's posts, then, for each linked bot, the posts it offers (its "
        "directory): id, name, country, agency and the highest TLP each may receive."
    ),
    "posts.local": "Posts of this bot:",
    "posts.line": "• {post}: {country}, {agency}, up to TLP:{clearance}",
    "posts.link": "Link “{link}” ({partner}), directory version {version}:",
    "posts.link.none": "Link “{link}” ({partner}): no directory received yet.",
    "posts.link.empty": "• (no posts offered)",
    "link.refused.notice": (
        "{ref} did not reach {post}: the partner's bot refused it. Reason: {reason}."
    ),
    "link.reason.unknown_version": "it does not speak this version of the protocol",
    "link.reason.schema": "the message was not in the expected form",
    "link.reason.too_large": "the case is too large to cross the link",
    "link.reason.not_partner": "it was not sent by the partner's bot",
    "link.reason.unsigned_device": "the sending device is not signed by the partner's key",
    "link.reason.tlp": "its TLP may not cross this link",
    "link.reason.clearance": "the post is not cleared for its TLP",
    "link.reason.unknown_post": "the post is not known there",
    "link.reason.not_exposed": "the post is not offered to this bot",
    "link.reason.unknown_case": "the case is not known there",
    "link.reason.not_target": "the case was not sent to that post",
    "link.reason.country": "the link does not serve that country",
    "link.reason.not_reachable": "the post's room cannot be reached there now",
    "link.reason.stale": "an older version was received",
    "request.reason.link": "refused by the partner's bot",
    "case.refusal.link_tlp": (
        "TLP:{tlp} does not cross the link to this post: AMBER+STRICT and RED never do, "
        "nor anything above the link's highest TLP."
    ),
    "case.reason.link_tlp": "its TLP does not cross the link",
    "link.error.offer": (
        "Not sent: {post} is a partner's post, and this case cannot be offered to it: "
        "{reason}. Shorten the text or the fields, or leave {post} out."
    ),
    "case.timeline.delayed.undated": "{time} answer delayed by {post} ({who}): {reason}",
    "link.delay.notice": "{post} delays its answer to {ref}. Reason: {reason}.",
    "link.delay.notice.due": "{post} delays its answer to {ref}, now due {time}. "
                             "Reason: {reason}.",
}
