"""Every word of the command language and every message the core writes, in one place.

Two kinds of entries live here:

- the *vocabulary* officers type: command words, priority names, option keys and
  the word for "neighbours", each with Russian and Arabic aliases;
- the *messages* the bot writes, by message id. English is the source, here in
  `MESSAGES`; Russian and Arabic live in gettext catalogues,
  `commands/locale/<lang>/LC_MESSAGES/liaison.po`, whose msgids are these message
  ids (each entry carries its English as an extracted comment, so a translator
  sees the source and a changed English shows up as stale). `text()` looks a
  message up in the reader's language and falls back to English.

Catalogues are compiled to `.mo` by `python -m devkit.catalogues compile` (the
Makefile's setup step); when no up-to-date `.mo` sits beside a `.po` (a fresh
clone, a `pip install .`), the `.po` is read directly with Babel.

Templates use `str.format` fields; values (which may come from officers) are
inserted as data and never interpreted as format strings. A value that must be
rendered in the reader's language (a noun, a time) is passed as a `Localizable`
(`Term`, `commands.localtime.Moment`) and rendered when the text is; integers are
formatted with the reader's locale.
"""

from __future__ import annotations

import functools
import gettext
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from babel.messages.catalog import Catalog
from babel.messages.mofile import read_mo
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from commands.model import LANGUAGES, Priority

# --- vocabulary -------------------------------------------------------------------------

COMMAND_ALIASES: Mapping[str, tuple[str, ...]] = {
    "alert": ("тревога", "ориентировка", "تنبيه"),
    "request": ("запрос", "طلب"),
    "ack": ("принято", "تم"),
    "update": ("обновить", "تحديث"),
    "close": ("закрыть", "إغلاق"),
    "cancel": ("отмена", "إلغاء"),
    "status": ("статус", "حالة"),
    "pending": ("открытые", "معلقة"),
    "help": ("помощь", "مساعدة"),
    "ping": ("пинг", "فحص"),
    "lang": ("язык", "لغة"),
    "report": ("отчёт", "تقرير"),
    "escalations": ("эскалации", "تصعيدات"),
    "snooze": ("отложить", "تأجيل"),
}
"""Aliases per command name; matched after `fold_word` (so `отчет` finds `отчёт`)."""

PRIORITY_WORDS: Mapping[Priority, tuple[str, ...]] = {
    Priority.FLASH: ("flash", "молния", "فوري"),
    Priority.URGENT: ("urgent", "срочно", "срочный", "عاجل"),
    Priority.ROUTINE: ("routine", "обычно", "плановый", "عادي"),
}

OPTION_KEYS: Mapping[str, tuple[str, ...]] = {
    "to": ("кому", "إلى"),
    "tlp": ("тлп",),
    "cat": ("category", "кат", "категория", "فئة"),
    "grade": ("оценка", "تقييم"),
    "ref": ("дело", "مرجع"),
    "due": ("срок", "موعد"),
}
"""First-line option keys (`to:UZ-TERMEZ`) and their aliases; canonical form first."""

NEIGHBOUR_WORDS: tuple[str, ...] = ("neighbours", "neighbors", "соседи", "الجيران", "جيران")
"""Target words meaning "the origin post's neighbours"; canonical form first."""

LANGUAGE_WORDS: Mapping[str, tuple[str, ...]] = {
    "en": ("english", "eng", "английский", "англ", "الإنجليزية", "انجليزي", "إنجليزي"),
    "ru": ("russian", "rus", "русский", "рус", "الروسية", "روسي"),
    "ar": ("arabic", "ara", "арабский", "العربية", "عربي"),
}
"""What `!lang` accepts besides the codes: each language's name in the three."""

DAY_WORDS: Mapping[int, tuple[str, ...]] = {
    0: ("today", "сегодня", "اليوم"),
    1: ("tomorrow", "завтра", "غدا", "غدًا"),
}
"""Words before a clock time (`due: tomorrow 09:00`): days after today in the sender's zone."""

FIELD_KEYS: Mapping[str, tuple[str, ...]] = {
    "vehicle": ("vehicle", "транспорт", "автомобиль", "المركبة", "مركبة", "السيارة"),
    "plate": ("plate", "госномер", "اللوحة", "لوحة"),
    "route": ("route", "маршрут", "المسار", "مسار", "الطريق"),
    "eta": ("eta", "arrival", "прибытие", "الوصول", "وصول"),
    "driver": ("driver", "водитель", "السائق", "سائق"),
    "cargo": ("cargo", "груз", "الحمولة", "حمولة", "الشحنة"),
    "container": ("container", "контейнер", "الحاوية", "حاوية"),
}
"""Case field keys the bot knows, by the key each is shown as (`field.<key>` in the
reader's language), with what officers type for them in English, Russian and Arabic.
Any other key is shown as typed."""

TIME_FIELD_KEYS: tuple[str, ...] = FIELD_KEYS["eta"]
"""Case field keys whose value is a time of day (`eta: 18:30`), shown in each reader's zone."""

_ARABIC_MARKS = {chr(c) for c in range(0x064B, 0x0653)} | {"\u0640", "\u0670"}
_ARABIC_ALEFS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا"})
_ARABIC_FOLD = {**dict.fromkeys(map(ord, _ARABIC_MARKS)), **_ARABIC_ALEFS}


@functools.lru_cache(maxsize=4096)
def fold_word(word: str) -> str:
    """The form vocabulary is compared in: NFKC, case-folded, `ё` as `е`, Arabic without
    diacritics or tatweel and with one alef. Used for command words, priorities and
    option keys only, never for identifiers such as post ids."""
    if word.isascii():  # NFKC and the Cyrillic/Arabic rules leave ASCII as it is
        return word.lower()
    folded = unicodedata.normalize("NFKC", word).casefold().replace("ё", "е")
    return folded.translate(_ARABIC_FOLD)


# --- messages ---------------------------------------------------------------------------

MESSAGES: Mapping[str, str] = {
    # commands: usage line, one-line summary, longer help
    "command.alert.usage": (
        "!alert PRIORITY [to:TARGETS] [tlp:LEVEL] [cat:CATEGORY] [grade:XN] [ref:CASE]"
    ),
    "command.alert.summary": "Send an alert to other posts.",
    "command.alert.help": (
        "PRIORITY is flash (minutes), urgent (hours) or routine (days).\n"
        "to: post ids, country codes, group names or neighbours (the default), "
        "separated by commas.\n"
        "tlp: clear, green, amber, amber+strict or red. AMBER goes only to posts named "
        "by id; RED never goes into a room.\n"
        "cat: a category such as drugs or financial; grade: source A, B, C or X and "
        "information 1-4, e.g. B2; ref: a related case such as KZ-0042.\n"
        "Then, on the next lines, key: value details (vehicle: white Kamaz) and free text."
    ),
    "command.request.usage": (
        "!request PRIORITY [to:TARGETS] [tlp:LEVEL] [cat:CATEGORY] [grade:XN] [ref:CASE] "
        "[due:WHEN]"
    ),
    "command.request.summary": "Ask other posts a question that needs an answer.",
    "command.request.help": (
        "Written like !alert, and the targets must reply, not only acknowledge.\n"
        "due: the deadline for the answer: 4h or 90m from now, 18:00 today, tomorrow 09:00, "
        "2026-12-01 18:00 or 2026-12-01T18:00 in your post's time zone."
    ),
    "command.ack.usage": "!ack CASE",
    "command.ack.summary": "Acknowledge a case sent to your post.",
    "command.ack.help": (
        "You can also acknowledge by reacting with ✅ or 👍 to the relayed message, "
        "or by replying to it."
    ),
    "command.update.usage": "!update CASE TEXT",
    "command.update.summary": "Add information to a case you sent.",
    "command.update.help": "The update goes to every post the case was delivered to.",
    "command.close.usage": "!close CASE [OUTCOME]",
    "command.close.summary": "Close a case, with the outcome.",
    "command.close.help": "Closing stops reminders and escalation for every target.",
    "command.cancel.usage": "!cancel CASE",
    "command.cancel.summary": "Withdraw a case sent by mistake.",
    "command.cancel.help": "The targets are told the case is cancelled; reminders stop.",
    "command.status.usage": "!status CASE",
    "command.status.summary": "Show a case's deliveries, acknowledgements and replies.",
    "command.status.help": "Times are shown in your post's time zone.",
    "command.pending.usage": "!pending",
    "command.pending.summary": "List open cases for your post.",
    "command.pending.help": "Cases your post sent and cases waiting for your post's answer.",
    "command.help.usage": "!help [COMMAND]",
    "command.help.summary": "List the commands, or explain one.",
    "command.help.help": "For example: !help alert.",
    "command.ping.usage": "!ping",
    "command.ping.summary": "Check that the bot is listening.",
    "command.ping.help": (
        "The answer names the bot's device and the time from your message to the bot."
    ),
    "command.lang.usage": "!lang en|ru|ar",
    "command.lang.summary": "Set the language the bot writes in for this room.",
    "command.lang.help": "English (en), Russian (ru) or Arabic (ar).",
    "command.report.usage": "!report [PERIOD]",
    "command.report.summary": "Response times per post (supervisors).",
    "command.report.help": (
        "PERIOD such as 7d (the default) or 30d: cases, time to acknowledge and to answer, "
        "overdue items."
    ),
    "command.escalations.usage": "!escalations",
    "command.escalations.summary": "List current escalations (supervisors).",
    "command.escalations.help": "Cases past their deadlines and who has been told.",
    # times (see commands.localtime): the reader's time, its offset, the origin's beside
    "time.format": "{date} {clock} {offset}",
    "time.clock": "{clock} {offset}",
    "time.beside": "{time} (sender's time {origin})",
    "unit.d": "{n}d",
    "unit.h": "{n}h",
    "unit.m": "{n}m",
    "unit.s": "{n}s",
    "unit.join": "",
    # !lang
    "lang.set": "This room now reads the bot in English.",
    "lang.current": "This room reads the bot in English. Change it with !lang ru or !lang ar.",
    "error.lang_unknown": "{value} is not a language I write; use en, ru or ar.",
    # help
    "help.overview.title": "Commands:",
    "help.overview.footer": "Type !help COMMAND for details, e.g. !help alert.",
    "help.usage": "Usage:",
    "help.aliases": "Also:",
    "help.role": "Who:",
    "role.anyone": "anyone",
    "role.officer": "officers of a post",
    "role.supervisor": "supervisors",
    "role.admin": "administrators",
    # ping
    "ping.reply": "pong — device {device}, {ms} ms from your message to me",
    "ping.reply_skew": (
        "pong — device {device}; your message is stamped {ms} ms after my clock, "
        "so one of the clocks is off"
    ),
    # errors: commands
    "error.usage": "Usage:",
    "error.suggestions": "Did you mean: {suggestions}?",
    "error.command_unknown": "I do not know the command {word}.",
    "error.command_unknown_hint": "Type !help for the list of commands.",
    # errors: identifiers
    "error.identifier_lookalike": (
        "{what} {value} contains {chars}; write it in Latin letters and digits only."
    ),
    "noun.target": "The target",
    "noun.ref": "The case reference",
    "noun.grade": "The grading",
    "noun.category": "The category",
    # errors: cases
    "error.case_too_long": "The message is {length} characters long; the limit is {limit}.",
    "error.priority_missing": (
        "Start with the priority: flash (minutes), urgent (hours) or routine (days)."
    ),
    "error.priority_not_first": (
        "The priority comes first, before {token}: flash, urgent or routine."
    ),
    "error.priority_unknown": (
        "{word} is not a priority; use flash (minutes), urgent (hours) or routine (days)."
    ),
    "error.word_unexpected": (
        "{word} is not an option. Options look like key:value "
        "(to:, tlp:, cat:, grade:, ref:, due:); details go on the lines below."
    ),
    "error.option_unknown": "{key}: is not an option; the options are {options}.",
    "error.option_twice": "The option {key}: is given twice.",
    "error.option_empty": "The option {key}: needs a value, e.g. {example}.",
    "error.tlp_unknown": (
        "{value} is not a TLP level; use clear, green, amber, amber+strict or red."
    ),
    "error.grade_unknown": (
        "{value} is not a grading; write the source A, B, C or X and the information "
        "1 to 4, e.g. grade:B2."
    ),
    "error.category_bad": (
        "{value} is not a category; use Latin letters, digits and dashes, e.g. cat:drugs."
    ),
    "error.targets_empty": "to: needs at least one post id, country, group or neighbours.",
    "error.target_bad": (
        "{value} is not a post id, country code, group name or neighbours."
    ),
    "error.due_on_alert": (
        "due: is only for requests; an alert has no deadline. "
        "Use !request to ask for an answer by a time."
    ),
    "error.due_unreadable": (
        "{value} is not a deadline; write 4h, 90m, 18:00, tomorrow 09:00, 2026-12-01 18:00 "
        "or 2026-12-01T18:00."
    ),
    "error.due_past": "The due time {value} is in the past: it is now {now} in {tz}.",
    "error.due_too_far": "The due time {value} is more than {days} days away.",
    "error.due_nonexistent": (
        "{value} does not exist in {tz}: the clocks change then. Pick another time."
    ),
    "error.due_ambiguous": (
        "{value} happens twice in {tz}: the clocks go back then. Add the offset, e.g. {example}."
    ),
    "error.case_empty": (
        "The {kind} is empty: add key: value lines or text below the first line."
    ),
    "error.field_no_value": "The line {key}: has no value; write it as {key}: value.",
    "error.field_is_option": (
        "{key}: is an option and goes on the first line, e.g. {example}."
    ),
    "error.field_too_long": "The line {key}: is {length} characters long; the limit is {limit}.",
    # errors: references
    "error.ref_missing": "Which case? Give its reference, e.g. KZ-0042.",
    "error.ref_bad": "{value} is not a case reference; a reference looks like KZ-0042.",
    "error.ref_extra": "{command} takes only a case reference; {extra} is one word too many.",
    "error.update_empty": "What is the update? Write it after the reference.",
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
    # cases: replies, reactions, edits and deletions (see commands.case_events)
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
    # chasing: reminders, escalations, !snooze, !escalations, !report (see commands.chasing)
    "command.snooze.usage": "!snooze CASE DURATION",
    "command.snooze.summary": "Hold off the reminders for a case sent to your post.",
    "command.snooze.help": (
        "For example !snooze KZ-0042 30m. The whole chase (reminders and escalation) moves "
        "later; each priority has a longest snooze."
    ),
    "chase.remind.ack": "Reminder: {ref}, {title} from {origin} ({time}), is not acknowledged.",
    "chase.remind.answer": (
        "Reminder: {ref}, {title} from {origin}, needs an answer; it was due {due}."
    ),
    "chase.remind.duty": "Duty officers:",
    "chase.remind.ack_hint": "Acknowledge with",
    "chase.remind.answer_hint": "Answer by replying to the case message. To wait a little:",
    "chase.remind.snooze_hint": "or hold off with",
    "chase.late": "(Late: this was due {time}, while I was not running.)",
    "chase.escalate.ack": (
        "Escalation: {ref}, {title} from {origin} to {target}, has not been acknowledged "
        "{elapsed} after it was sent ({time})."
    ),
    "chase.escalate.answer": (
        "Escalation: {ref}, {title} from {origin} to {target}, has no answer; it was due {due}."
    ),
    "chase.escalate.for": "For:",
    "chase.escalate.footer": (
        "I will tell you here when it is taken. !escalations lists what is open."
    ),
    "chase.taken.acknowledged": (
        "{ref}: {target} acknowledged it ({who}, {time}). Nothing more to do."
    ),
    "chase.taken.answered": "{ref}: {target} answered ({who}, {time}). Nothing more to do.",
    "chase.taken.closed": "{ref} was closed by {origin} ({time}). Nothing more to do.",
    "chase.taken.cancelled": "{ref} was cancelled by {origin} ({time}). Nothing more to do.",
    "chase.snoozed": "Reminders for {ref} wait until {time}.",
    "chase.error.snooze_own": (
        "{ref} was sent by your post; only the posts it went to can snooze it."
    ),
    "chase.error.snooze_nothing": (
        "{ref} is not being chased at your post; there is nothing to snooze."
    ),
    "chase.error.snooze_too_long": (
        "A {priority} case can be snoozed for at most {limit} at a time."
    ),
    "chase.error.snooze_args": "Give the case and how long, e.g. !snooze KZ-0042 30m.",
    "chase.error.duration": "{value} is not a duration; write it like 30m, 2h or 1d.",
    "chase.error.not_supervisor": "{command} is only for supervisors.",
    "chase.error.period": "{value} is not a period; write it like 7d or 30d (at most {days}d).",
    "chase.escalations.title": "Open escalations for your posts:",
    "chase.escalations.none": "No open escalations for your posts.",
    "chase.audience.hint": (
        "Everyone in this room reads this answer, so it shows only what they all may see; "
        "for everything about your posts, ask in your direct room with me."
    ),
    "chase.escalations.item": "{title} from {origin} to {target}: {state}; escalated {when}",
    "chase.escalations.state.ack": "not acknowledged",
    "chase.escalations.state.answer": "not answered",
    "chase.report.title": "Report for the last {period} ({since} to {until}):",
    "chase.report.cases": "Cases sent {sent}, received {received}.",
    "chase.report.ack": "Acknowledged {count} of {total}: median {median}, 90% within {p90}.",
    "chase.report.answer": (
        "Answered {count} of {total} requests: median {median}, 90% within {p90}."
    ),
    "chase.report.overdue": "Overdue now {overdue}; escalations {escalations}.",
    "chase.report.none": "none",
    # the chart posted with !report (commands.report_chart); an Arabic room's chart is
    # drawn with the English words (matplotlib cannot join Arabic letters)
    "chart.ack.title": "Time to acknowledge, last {period}",
    "chart.ack.axis": "From delivery to acknowledgement ({unit})",
    "chart.unit.seconds": "seconds",
    "chart.unit.minutes": "minutes",
    "chart.unit.hours": "hours",
    "chart.ack.median": "median",
    "chart.ack.p90": "90% within",
    "chart.ack.count": "{count} of {total} acknowledged",
    "chart.ack.figures": "median {median} · 90% {p90} · {count}",
    "chart.ack.no_cases": "no cases received",
    "chart.ack.empty": "Nothing was acknowledged in this period.",
    "chart.failed": (
        "The chart of this report could not be drawn; the figures above are complete."
    ),
    "chart.not_installed": (
        "No chart: charts are not installed with this Liaison (the liaison[charts] extra)."
    ),
    "case.timeline.reminded": "{time} reminder to {post}{late}",
    "case.timeline.escalated": "{time} escalated about {post}{late}",
    "case.timeline.snoozed": "{time} reminders snoozed by {post} ({who})",
    "case.timeline.late": " (late)",
    "case.timeline.not_joined": "; not reached: {users} did not join the direct message in time",
    "error.invalid_text": (
        "I could not read this message: it contains broken characters (text that is not "
        "valid Unicode), so I did not act on it. Type it again and send it once more."
    ),
    # flood control (commands.flood)
    "flood.user": (
        "Too many commands at once: I take at most {count} in {per} from one person, so I "
        "did not act on this one. For the next {per} I skip your commands over that limit "
        "without answering each; send again then whatever still needs doing."
    ),
    "flood.room": (
        "Too many commands in this room at once: I take at most {count} in {per} from one "
        "room, so I did not act on this one. For the next {per} I skip your commands over "
        "that limit without answering each; send again then whatever still needs doing."
    ),
    "flood.case.user": (
        "Too many messages on cases at once: I pass on at most {count} in {per} from one "
        "person, so this one was not passed on. For the next {per} I do not pass on your "
        "replies, attachments and edits over that limit, nor answer each; send again then "
        "whatever still needs to reach the other post."
    ),
    "flood.case.room": (
        "Too many messages on cases from this room at once: I pass on at most {count} in "
        "{per} from one room, so this one was not passed on. For the next {per} I do not "
        "pass on replies, attachments and edits over that limit, nor answer each; send "
        "again then whatever still needs to reach the other post."
    ),
    # the shell's own answers (bot.events, bot.undecryptable, bot.devicewatch)
    "bot.unencrypted_warning": (
        "This room is not end-to-end encrypted, so Liaison will not act on anything said here "
        "and will not send anything here. Turn on encryption in the room settings and ask again."
    ),
    "bot.untrusted_device": (
        "I did not act on this: it was sent from a device that is not cross-signed by its "
        "owner, and this Liaison accepts commands only from verified (cross-signed) devices. "
        "Verify this session from one of your other sessions, then send it again."
    ),
    "bot.unknown_room": (
        "I do not serve this room: it is no post's room, no supervisors' room and no direct "
        "room with a person in my configuration, so I act on nothing said here and will not "
        "answer again. Ask the operator to configure it, or to make me leave it."
    ),
    "bot.unknown_room_admins": (
        "I am in {room}, which is no post's room, no supervisors' room and no direct room "
        "with a configured person; {user} sent me a command there. I explained once and "
        "ignore it from now on. `liaison rooms` lists my rooms; `liaison rooms leave {room}` "
        "makes me leave it."
    ),
    "bot.incident": (
        "Sorry, something went wrong on my side and I could not do this. "
        "Incident {incident} is logged; the operator can look it up."
    ),
    "bot.undecryptable": (
        "I could not decrypt your message, so I did not act on it: your device did not share "
        "its key with me. Please send it again. If this keeps happening, check that this "
        "session is verified and that the bot is not excluded as an unverified device."
    ),
    "device.new": "{user} has signed in on a new device:",
    "device.unnamed": "unnamed",
    "device.warning": (
        "Messages in this room are now also encrypted to it. If this was not them, "
        "tell a supervisor at once and remove them from the room."
    ),
    # rendering
    "render.truncated": "[truncated]",
    # command descriptions for clients (commands.command_descriptions)
    "command.param.details": "key: value lines and text, below the first line",
    # case field keys (FIELD_KEYS), as each reader reads them
    "field.vehicle": "vehicle",
    "field.plate": "plate",
    "field.route": "route",
    "field.eta": "eta",
    "field.driver": "driver",
    "field.cargo": "cargo",
    "field.container": "container",
}

PLURAL_MESSAGES: dict[str, tuple[str, str]] = {
    "error.targets_too_many": ("{count} target; the limit is {limit}.",
                               "{count} targets; the limit is {limit}."),
    "error.fields_too_many": ("{count} key: value line; the limit is {limit}.",
                              "{count} key: value lines; the limit is {limit}."),
    "chart.ack.more": ("{count} more post is in the table only.",
                       "{count} more posts are in the table only."),
    "count.posts": ("{count} post", "{count} posts"),
    "count.groups": ("{count} group", "{count} groups"),
}
"""Messages that depend on a number, `{count}`: English singular and plural here; each
catalogue has as many forms as its language needs (gettext plural forms: three in
Russian, six in Arabic), chosen by `count` when `text()` renders the message."""

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "liaison"
RTL_LANGUAGES = frozenset({"ar"})
"""Languages written right to left: their notices get `dir="rtl"` and isolated Latin."""


def catalogue_path(language: str, suffix: str = ".po") -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / (DOMAIN + suffix)


@functools.cache
def _loaded(language: str) -> Catalog | None:
    """A translated language's catalogue: its compiled `.mo` when it is at least as new as
    the `.po` (an installed wheel has only the `.mo`), else the `.po`; None when there is
    neither."""
    po, mo = catalogue_path(language), catalogue_path(language, ".mo")
    if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
        with mo.open("rb") as handle:
            return read_mo(handle)
    if not po.exists():
        return None
    with po.open("rb") as handle:
        return read_po(handle, locale=language, domain=DOMAIN)


@functools.cache
def catalogue(language: str) -> Mapping[str, str]:
    """The messages of one language by message id: English from `MESSAGES`, the others
    from their catalogue (`_loaded`). Fuzzy and empty entries count as missing (and fall
    back to English)."""
    if language == "en" or language not in LANGUAGES:
        return MESSAGES
    loaded = _loaded(language)
    if loaded is None:
        return {}
    return {str(message.id): str(message.string) for message in loaded
            if message.id and isinstance(message.id, str) and isinstance(message.string, str)
            and message.string and not message.fuzzy}


@functools.cache
def plural_catalogue(language: str) -> Mapping[str, tuple[str, ...]]:
    """The plural messages of one language: each form by message id (English from
    `PLURAL_MESSAGES`); an entry with any form empty, or fuzzy, counts as missing."""
    if language == "en" or language not in LANGUAGES:
        return PLURAL_MESSAGES
    loaded = _loaded(language)
    if loaded is None:
        return {}
    return {str(message.id[0]): tuple(str(form) for form in message.string)
            for message in loaded
            if isinstance(message.id, tuple | list)  # a .po gives tuples, a .mo lists
            and isinstance(message.string, tuple | list)
            and all(message.string) and not message.fuzzy}


@functools.cache
def plural_form(language: str) -> Callable[[int], int]:
    """Which of a language's plural forms a number takes: gettext's Plural-Forms rule for
    the language, from CLDR (`n != 1` in English)."""
    return gettext.c2py(get_plural(language if language in LANGUAGES else "en").plural_expr)


def plural_template(msg_id: str, count: int, language: str) -> str:
    """The form of plural message `msg_id` for `count`, in `language` (else English)."""
    forms = plural_catalogue(language).get(msg_id)
    if forms is not None:
        index = plural_form(language)(count)
        if 0 <= index < len(forms):
            return forms[index]
    english = PLURAL_MESSAGES[msg_id]
    return english[plural_form("en")(count)]


@runtime_checkable
class Localizable(Protocol):
    """A template value rendered in the reader's language when the text is."""

    def localized(self, language: str) -> str: ...


@dataclass(frozen=True)
class Term:
    """A message id used as a value: `Term("noun.ref")` reads "the case reference" in
    English and its translation elsewhere."""

    msg_id: str

    def localized(self, language: str) -> str:
        return text(self.msg_id, language)

    def __str__(self) -> str:
        return text(self.msg_id)


def format_number(value: int | float, language: str = "en") -> str:
    """A number in the reader's locale (`8,000`, `8 000`)."""
    return format_decimal(value, locale=language if language in LANGUAGES else "en")


def _value(value: object, language: str) -> object:
    if isinstance(value, Localizable):
        return value.localized(language)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format_number(value, language)
    return value


def text(msg_id: str, language: str = "en", /, **params: object) -> str:
    """The message `msg_id` in `language` (English if missing there), with `params` filled in.

    Raises KeyError for an unknown id: a typo in a message id is a bug, not input.
    """
    if msg_id in PLURAL_MESSAGES:
        count = params.get("count")
        if not isinstance(count, int):
            raise TypeError(f"{msg_id} is a plural message: pass count=<int>")
        template = plural_template(msg_id, count, language)
    else:
        template = catalogue(language).get(msg_id) or MESSAGES[msg_id]
    if not params:
        return template
    return template.format(**{key: _value(value, language) for key, value in params.items()})


_FIELD_KEY_OF = {fold_word(typed): key for key, words in FIELD_KEYS.items() for typed in words}


def field_key(key: str, language: str = "en") -> str:
    """A case field's key as the reader reads it: a known key (`прибытие`, `vehicle`) in
    the reader's language, any other key exactly as the officer typed it."""
    known = _FIELD_KEY_OF.get(fold_word(key.strip()))
    return key if known is None else text(f"field.{known}", language)


def has_text(msg_id: str) -> bool:
    return msg_id in MESSAGES or msg_id in PLURAL_MESSAGES


def is_rtl(language: str) -> bool:
    return language in RTL_LANGUAGES
