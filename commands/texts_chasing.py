"""English messages (see `commands.texts`) about chasing: reminders, escalations,
`!snooze`, `!escalations`, `!report` and its chart."""

from __future__ import annotations

from collections.abc import Mapping

CHASING_MESSAGES: Mapping[str, str] = {
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
}
