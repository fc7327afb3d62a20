"""English messages (see `commands.texts`): the commands' usage lines, summaries and
help; times and units; `!lang`, `!help` and `!ping`."""

from __future__ import annotations

from collections.abc import Mapping

GENERAL_MESSAGES: Mapping[str, str] = {
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
}
