"""English messages (see `commands.texts`): errors in what an officer typed, in commands,
identifiers, cases and references."""

from __future__ import annotations

from collections.abc import Mapping

ERROR_MESSAGES: Mapping[str, str] = {
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
}
