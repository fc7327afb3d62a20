"""The case language: what officers type and what the parser makes of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from liaison.commands.errors import CommandError
from liaison.commands.model import Priority, Tlp
from liaison.commands.parser import (
    FIELD_KEY_RE,
    CaseDraft,
    CaseKind,
    CaseLimits,
    RefCommand,
    _canonical_target,
    _field_line,
    clean_identifier,
    format_due,
    parse_ack,
    parse_cancel,
    parse_case,
    parse_close,
    parse_ref,
    parse_status,
    parse_update,
    render_draft,
)
from liaison.commands.registry import split_command
from liaison.commands.texts import OPTION_KEYS, fold_word

NOW = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)  # 15:00 in Tashkent, 12:00 in Berlin
TASHKENT = ZoneInfo("Asia/Tashkent")
BERLIN = ZoneInfo("Europe/Berlin")
ALERT_USAGE = ("!alert PRIORITY [to:TARGETS] [tlp:LEVEL] [cat:CATEGORY] [grade:XN] [ref:CASE]"
               " [h:CODE] [action:ACTION]")
REQUEST_USAGE = ("!request PRIORITY [to:TARGETS] [tlp:LEVEL] [cat:CATEGORY] [grade:XN]"
                 " [ref:CASE] [class:CLASS] [due:WHEN] [h:CODE] [action:ACTION]")

PRODUCT_EXAMPLE = """!alert urgent to:UZ-TERMEZ,TJ-PANJ tlp:amber cat:drugs grade:B2
vehicle: white Kamaz, plate 01A123BC
route: Hairatan -> Termez
eta: 18:30
Suspected heroin in a cement load. Driver known from case 2026/117."""


def parse_body(body: str, *, now: datetime = NOW, tz: ZoneInfo = TASHKENT, **kwargs: Any
               ) -> CaseDraft:
    parsed = split_command(body)
    assert parsed is not None
    word, args, lines = parsed
    kind: CaseKind = "request" if word == "request" else "alert"
    return parse_case(kind, args, lines, now=now, tz=tz, **kwargs)


def error_of(body: str, **kwargs: Any) -> CommandError:
    with pytest.raises(CommandError) as caught:
        parse_body(body, **kwargs)
    return caught.value


# --- the PRODUCT.md example -----------------------------------------------------------------


def test_product_example_parses_into_every_part() -> None:
    assert parse_body(PRODUCT_EXAMPLE) == CaseDraft(
        kind="alert",
        priority=Priority.URGENT,
        targets=("UZ-TERMEZ", "TJ-PANJ"),
        tlp=Tlp.AMBER,
        category="drugs",
        grading="B2",
        ref=None,
        due=None,
        fields=(
            ("vehicle", "white Kamaz, plate 01A123BC"),
            ("route", "Hairatan -> Termez"),
            ("eta", "18:30"),
        ),
        text="Suspected heroin in a cement load. Driver known from case 2026/117.",
    )


def test_product_example_renders_back_to_itself() -> None:
    assert render_draft(parse_body(PRODUCT_EXAMPLE)) == PRODUCT_EXAMPLE


def test_defaults_are_neighbours_and_the_given_default_tlp() -> None:
    draft = parse_body("!alert flash\nBoat leaving now", default_tlp=Tlp.CLEAR)
    assert (draft.priority, draft.targets, draft.tlp, draft.category, draft.grading) == (
        Priority.FLASH, ("neighbours",), Tlp.CLEAR, None, None)
    assert draft.text == "Boat leaving now"
    assert parse_body("!alert flash\nx").tlp is Tlp.GREEN


def test_russian_and_arabic_priorities_and_option_keys() -> None:
    ru = parse_body("!alert срочно кому:UZ-TERMEZ,соседи тлп:amber категория:drugs оценка:A1 "
                    "дело:kz-0042\nтекст")
    assert (ru.priority, ru.targets, ru.tlp, ru.category, ru.grading, ru.ref) == (
        Priority.URGENT, ("UZ-TERMEZ", "neighbours"), Tlp.AMBER, "drugs", "A1", "KZ-0042")
    ar = parse_body("!alert فوري إلى:TJ-PANJ,الجيران فئة:drugs\nنص")
    assert (ar.priority, ar.targets, ar.category) == (
        Priority.FLASH, ("TJ-PANJ", "neighbours"), "drugs")
    assert parse_body("!alert МОЛНИЯ\nx").priority is Priority.FLASH
    assert parse_body("!alert عادي الى:TJ-PANJ\nx").targets == ("TJ-PANJ",)  # alef without hamza


def test_targets_are_normalised_and_deduplicated() -> None:
    draft = parse_body("!alert urgent to:uz-termez,CARICC,kz,Соседи,UZ-TERMEZ,neighbors\nx")
    assert draft.targets == ("UZ-TERMEZ", "caricc", "KZ", "neighbours")


@pytest.mark.parametrize(
    "first_line",
    [
        "!alert urgent to: UZ-TERMEZ, TJ-PANJ tlp: amber",
        "!alert urgent to:UZ-TERMEZ ,TJ-PANJ tlp:amber",
        "!alert\u00a0urgent\u00a0to:UZ-TERMEZ,TJ-PANJ\u00a0tlp:AMBER",
        "  ！alert urgent TO:UZ-TERMEZ,TJ-PANJ TLP:amber",
    ],
)
def test_spaces_phones_insert_are_tolerated(first_line: str) -> None:
    draft = parse_body(first_line + "\nx")
    assert (draft.targets, draft.tlp) == (("UZ-TERMEZ", "TJ-PANJ"), Tlp.AMBER)


def test_options_and_values_read_every_tlp_spelling() -> None:
    spellings = {"clear": Tlp.CLEAR, "white": Tlp.CLEAR, "GREEN": Tlp.GREEN,
                 "amber+strict": Tlp.AMBER_STRICT, "amber_strict": Tlp.AMBER_STRICT,
                 "red": Tlp.RED}
    for typed, level in spellings.items():
        assert parse_body(f"!alert urgent tlp:{typed}\nx").tlp is level


# --- fields and text --------------------------------------------------------------------------


def test_fields_stop_at_the_first_line_that_is_not_a_field() -> None:
    draft = parse_body(
        "!alert urgent\n\nvehicle: Kamaz\n\nплатёж: 5000 USD\nالمركبة: شاحنة\n"
        "Seen at the gate.\nNote: driver nervous\nhttp://example.org\n"
    )
    assert draft.fields == (("vehicle", "Kamaz"), ("платёж", "5000 USD"), ("المركبة", "شاحنة"))
    assert draft.text == "Seen at the gate.\nNote: driver nervous\nhttp://example.org"


@pytest.mark.parametrize(
    "line",
    ["http://example.org/x", "18:30 the truck left", "key:value-without-space",
     "two words: are text", "x" * 25 + ": too long a key"],
)
def test_lines_that_only_resemble_fields_start_the_text(line: str) -> None:
    draft = parse_body(f"!alert urgent\n{line}")
    assert (draft.fields, draft.text) == ((), line)


def test_invisible_characters_are_dropped_from_field_keys() -> None:
    draft = parse_body("!alert urgent\nveh\u200bicle\u200f: Kamaz")
    assert draft.fields == (("vehicle", "Kamaz"),)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "msg_id", "message", "suggestions"),
    [
        ("!alert\nx", "error.priority_missing",
         "Start with the priority: flash (minutes), urgent (hours) or routine (days).", ()),
        ("!alert urgnet\nx", "error.priority_unknown",
         "urgnet is not a priority; use flash (minutes), urgent (hours) or routine (days).",
         ("urgent",)),
        ("!alert to:UZ-TERMEZ urgent\nx", "error.priority_not_first",
         "The priority comes first, before to:UZ-TERMEZ: flash, urgent or routine.", ()),
        ("!alert urgent tp:amber\nx", "error.option_unknown",
         "tp: is not an option; the options are to:, tlp:, cat:, grade:, ref:, due:.",
         ("tlp:", "to:")),
        ("!alert urgent to UZ-TERMEZ\nx", "error.word_unexpected",
         "to is not an option. Options look like key:value (to:, tlp:, cat:, grade:, ref:, "
         "due:); details go on the lines below.", ("to:UZ-TERMEZ",)),
        ("!alert urgent white Kamaz\nx", "error.word_unexpected",
         "white is not an option. Options look like key:value (to:, tlp:, cat:, grade:, ref:, "
         "due:); details go on the lines below.", ()),
        ("!alert urgent to:UZ-TERMEZ кому:TJ-PANJ\nx", "error.option_twice",
         "The option to: is given twice.", ()),
        ("!alert urgent tlp:\nx", "error.option_empty",
         "The option tlp: needs a value, e.g. tlp:amber.", ()),
        ("!alert urgent tlp: cat:drugs\nx", "error.option_empty",
         "The option tlp: needs a value, e.g. tlp:amber.", ()),
        ("!alert urgent tlp:orange\nx", "error.tlp_unknown",
         "orange is not a TLP level; use clear, green, amber, amber+strict or red.", ()),
        ("!alert urgent tlp:аmber\nx", "error.tlp_unknown",  # Cyrillic а
         "аmber is not a TLP level; use clear, green, amber, amber+strict or red.", ()),
        ("!alert urgent grade:D2\nx", "error.grade_unknown",
         "D2 is not a grading; write the source A, B, C or X and the information 1 to 4, "
         "e.g. grade:B2.", ()),
        ("!alert urgent grade:B5\nx", "error.grade_unknown",
         "B5 is not a grading; write the source A, B, C or X and the information 1 to 4, "
         "e.g. grade:B2.", ()),
        ("!alert urgent grade:В2\nx", "error.identifier_lookalike",
         "The grading В2 contains В (U+0412 CYRILLIC CAPITAL LETTER VE); write it in Latin "
         "letters and digits only.", ("B2",)),
        ("!alert urgent cat:drugs!\nx", "error.category_bad",
         "drugs! is not a category; use Latin letters, digits and dashes, e.g. cat:drugs.", ()),
        ("!alert urgent ref:KZ-42\nx", "error.ref_bad",
         "KZ-42 is not a case reference; a reference looks like KZ-0042.", ()),
        ("!alert urgent to:,\nx", "error.targets_empty",
         "to: needs at least one post id, country, group or neighbours.", ()),
        ("!alert urgent to:UZ_TERMEZ\nx", "error.target_bad",
         "UZ_TERMEZ is not a post id, country code, group name or neighbours.", ()),
        ("!alert urgent to:UZ-ТЕRMEZ\nx", "error.identifier_lookalike",
         "The target UZ-ТЕRMEZ contains Т (U+0422 CYRILLIC CAPITAL LETTER TE), Е (U+0415 "
         "CYRILLIC CAPITAL LETTER IE); write it in Latin letters and digits only.",
         ("UZ-TERMEZ",)),
        ("!alert urgent to:ＵＺ-TERMEZ\nx", "error.identifier_lookalike",
         "The target ＵＺ-TERMEZ contains Ｕ (U+FF35 FULLWIDTH LATIN CAPITAL LETTER U), Ｚ "
         "(U+FF3A FULLWIDTH LATIN CAPITAL LETTER Z); write it in Latin letters and digits only.",
         ("UZ-TERMEZ",)),
        ("!alert urgent due:4h\nx", "error.due_on_alert",
         "due: is only for requests; an alert has no deadline. Use !request to ask for an "
         "answer by a time.", ()),
        ("!alert urgent", "error.case_empty",
         "The alert is empty: add key: value lines or text below the first line.", ()),
        ("!alert urgent\n\n  \n", "error.case_empty",
         "The alert is empty: add key: value lines or text below the first line.", ()),
        ("!alert urgent\nvehicle:\nWhite Kamaz", "error.field_no_value",
         "The line vehicle: has no value; write it as vehicle: value.", ()),
        ("!alert urgent\ntlp: red\nx", "error.field_is_option",
         "tlp: is an option and goes on the first line, e.g. !alert urgent tlp:amber.", ()),
        ("!alert urgent\nvehicle: Kamaz\nкому: TJ-PANJ", "error.field_is_option",
         "кому: is an option and goes on the first line, e.g. !alert urgent "
         "to:UZ-TERMEZ,TJ-PANJ.", ()),
    ],
)
def test_bad_input_is_refused_with_a_specific_message_and_the_usage(
    body: str, msg_id: str, message: str, suggestions: tuple[str, ...]
) -> None:
    error = error_of(body)
    assert (error.msg_id, error.message, error.suggestions) == (msg_id, message, suggestions)
    assert error.usage == ALERT_USAGE


def test_first_line_mistakes_are_reported_before_an_empty_body() -> None:
    assert error_of("!alert urgent tlp:purple").msg_id == "error.tlp_unknown"
    assert error_of("!alert urgent due:4h").msg_id == "error.due_on_alert"
    assert error_of("!request urgent due:soon").msg_id == "error.due_unreadable"


def test_limits_are_parameters() -> None:
    limits = CaseLimits(max_chars=100, max_field_chars=10, max_fields=2, max_targets=2)
    too_long = error_of("!alert urgent\n" + "x" * 100, limits=limits)
    assert too_long.message == "The message is 107 characters long; the limit is 100."
    field = error_of("!alert urgent\nvehicle: " + "k" * 11, limits=limits)
    assert field.message == "The line vehicle: is 11 characters long; the limit is 10."
    fields = error_of("!alert urgent\na: 1\nb: 2\nc: 3", limits=limits)
    assert fields.message == "3 key: value lines; the limit is 2."
    targets = error_of("!alert urgent to:AA,BB,CC\nx", limits=limits)
    assert targets.message == "3 targets; the limit is 2."


def test_default_limits_are_8000_chars_1000_per_field_40_fields() -> None:
    assert parse_body("!alert urgent\n" + "x" * 7980).text == "x" * 7980
    assert error_of("!alert urgent\n" + "x" * 8000).msg_id == "error.case_too_long"
    assert parse_body("!alert urgent\nv: " + "k" * 1000).fields == (("v", "k" * 1000),)
    assert error_of("!alert urgent\nv: " + "k" * 1001).msg_id == "error.field_too_long"
    forty = "".join(f"k{i}: v\n" for i in range(40))
    assert len(parse_body("!alert urgent\n" + forty).fields) == 40
    assert error_of("!alert urgent\n" + forty + "k40: v").msg_id == "error.fields_too_many"


# --- identifiers and Unicode tricks -----------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    ["UZ-\u200bTERMEZ", "\u202eUZ-TERMEZ\u202c", "\u2066UZ-TERMEZ\u2069", "UZ\u200d-TERMEZ\ufeff",
     "\u200fuz-termez\u200e"],
)
def test_bidi_and_zero_width_characters_are_stripped_from_post_ids(typed: str) -> None:
    assert parse_body(f"!alert urgent to:{typed}\nx").targets == ("UZ-TERMEZ",)


def test_a_cyrillic_lookalike_never_matches_a_latin_post_id() -> None:
    for lookalike in ("UZ-TЕRMEZ", "КZ-ALMATY", "UZ-TERMEΖ"):  # Cyrillic Е, К; Greek Ζ
        assert error_of(f"!alert urgent to:{lookalike}\nx").msg_id == "error.identifier_lookalike"


@pytest.mark.parametrize(
    ("typed", "ref"),
    [("KZ-0042", "KZ-0042"), ("  kz-0042 ", "KZ-0042"), ("Kz-12345678", "KZ-12345678"),
     ("KZ-٠٠٤٢", "KZ-0042"), ("KZ-۰۰۴۲", "KZ-0042"), ("KZ-\u200b0042\u200f", "KZ-0042")],
)
def test_parse_ref_accepts_case_references(typed: str, ref: str) -> None:
    assert parse_ref(typed) == ref


@pytest.mark.parametrize(
    ("typed", "msg_id"),
    [("", "error.ref_missing"), ("KZ-042", "error.ref_bad"), ("KZ0042", "error.ref_bad"),
     ("KZ-123456789", "error.ref_bad"), ("KZ-00 42", "error.ref_bad"), ("K-0042", "error.ref_bad"),
     ("КZ-0042", "error.identifier_lookalike"), ("KZ-००४२", "error.identifier_lookalike")],
)
def test_parse_ref_rejects_anything_else(typed: str, msg_id: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_ref(typed)
    assert caught.value.msg_id == msg_id


@pytest.mark.parametrize("dash", ["\u2010", "\u2011", "\u2013", "\u2014", "\u2212", "\uff0d"])
def test_a_typographic_dash_in_an_identifier_reads_as_the_hyphen(dash: str) -> None:
    """A reference pasted from a report (`KZ–0042`) or a phone's non-breaking hyphen."""
    assert parse_ref(f"KZ{dash}0042") == "KZ-0042"
    draft = parse_case("alert", f"urgent to:UZ{dash}TERMEZ,TJ{dash}PANJ ref:kz{dash}0007",
                       ["text"], now=NOW, tz=TASHKENT)
    assert draft.targets == ("UZ-TERMEZ", "TJ-PANJ")
    assert draft.ref == "KZ-0007"


def test_a_dash_does_not_let_a_look_alike_letter_through() -> None:
    with pytest.raises(CommandError) as caught:
        parse_ref("КZ\u20130042")  # Cyrillic К and an en dash
    assert caught.value.msg_id == "error.identifier_lookalike"
    assert caught.value.suggestions == ("KZ-0042",)


def test_lookalike_error_suggests_the_latin_spelling() -> None:
    with pytest.raises(CommandError) as caught:
        parse_ref("КZ-0042")
    assert caught.value.suggestions == ("KZ-0042",)
    with pytest.raises(CommandError) as caught:
        clean_identifier("саricc", "noun.target")
    assert caught.value.suggestions == ("caricc",)


# --- due --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "tz", "due"),
    [
        ("4h", TASHKENT, NOW + timedelta(hours=4)),
        ("90m", TASHKENT, NOW + timedelta(minutes=90)),
        ("1h30m", TASHKENT, NOW + timedelta(minutes=90)),
        ("2d", TASHKENT, NOW + timedelta(days=2)),
        ("18:00", TASHKENT, datetime(2026, 5, 1, 13, 0, tzinfo=UTC)),
        ("18:00", BERLIN, datetime(2026, 5, 1, 16, 0, tzinfo=UTC)),
        ("2026-12-01T18:00", TASHKENT, datetime(2026, 12, 1, 13, 0, tzinfo=UTC)),
        ("2026-12-01T18:00", BERLIN, datetime(2026, 12, 1, 17, 0, tzinfo=UTC)),
        ("2026-12-01 18:00", BERLIN, datetime(2026, 12, 1, 17, 0, tzinfo=UTC)),
        ("2026-12-01T18:00Z", BERLIN, datetime(2026, 12, 1, 18, 0, tzinfo=UTC)),
        ("2026-12-01T18:00+03:00", BERLIN, datetime(2026, 12, 1, 15, 0, tzinfo=UTC)),
        ("2026-10-25T02:30+02:00", BERLIN, datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        ("tomorrow 09:00", TASHKENT, datetime(2026, 5, 2, 4, 0, tzinfo=UTC)),
        ("завтра 09:00", TASHKENT, datetime(2026, 5, 2, 4, 0, tzinfo=UTC)),
        ("غدًا ٠٩:٠٠", TASHKENT, datetime(2026, 5, 2, 4, 0, tzinfo=UTC)),
        ("Tomorrow  9:30", BERLIN, datetime(2026, 5, 2, 7, 30, tzinfo=UTC)),
        ("١٨:٠٠", TASHKENT, datetime(2026, 5, 1, 13, 0, tzinfo=UTC)),
    ],
)
def test_due_formats(typed: str, tz: ZoneInfo, due: datetime) -> None:
    draft = parse_body(f"!request urgent due:{typed}\nWho owns the truck?", tz=tz)
    assert draft.due == due
    assert draft.due is not None and draft.due.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("14:59", "The due time 14:59 is in the past: it is now 2026-05-01 15:00 +05:00 in "
                  "Asia/Tashkent."),
        ("15:00", "The due time 15:00 is in the past: it is now 2026-05-01 15:00 +05:00 in "
                  "Asia/Tashkent."),
        ("2026-04-30T18:00", "The due time 2026-04-30T18:00 is in the past: it is now "
                             "2026-05-01 15:00 +05:00 in Asia/Tashkent."),
        ("soon", "soon is not a deadline; write 4h, 90m, 18:00, tomorrow 09:00, "
                 "2026-12-01 18:00 or "
                 "2026-12-01T18:00."),
        ("0m", "0m is not a deadline; write 4h, 90m, 18:00, tomorrow 09:00, "
                 "2026-12-01 18:00 or "
               "2026-12-01T18:00."),
        ("25:00", "25:00 is not a deadline; write 4h, 90m, 18:00, tomorrow 09:00, "
                 "2026-12-01 18:00 or "
                  "2026-12-01T18:00."),
        ("2026-02-30T10:00", "2026-02-30T10:00 is not a deadline; write 4h, 90m, 18:00, "
                             "tomorrow 09:00, 2026-12-01 18:00 or 2026-12-01T18:00."),
        ("0001-01-01T00:00+01:00", "0001-01-01T00:00+01:00 is not a deadline; write 4h, 90m, "
                                   "18:00, tomorrow 09:00, 2026-12-01 18:00 or 2026-12-01T18:00."),
        ("0001-01-01 03:00", "0001-01-01 03:00 is not a deadline; write 4h, 90m, 18:00, "
                             "tomorrow 09:00, 2026-12-01 18:00 or 2026-12-01T18:00."),
        ("999999w", "The due time 999999w is more than 366 days away."),
        ("2030-01-01T00:00", "The due time 2030-01-01T00:00 is more than 366 days away."),
    ],
)
def test_due_errors(typed: str, message: str) -> None:
    error = error_of(f"!request urgent due:{typed}\nx")
    assert (error.message, error.usage) == (message, REQUEST_USAGE)


def test_due_in_the_spring_gap_does_not_exist() -> None:
    error = error_of("!request urgent due:2027-03-28T02:30\nx", tz=BERLIN)
    assert error.message == ("2027-03-28T02:30 does not exist in Europe/Berlin: the clocks "
                             "change then. Pick another time.")


def test_due_in_the_autumn_repeat_is_ambiguous_and_says_how_to_write_it() -> None:
    error = error_of("!request urgent due:2026-10-25T02:30\nx", tz=BERLIN)
    assert error.msg_id == "error.due_ambiguous"
    assert error.message == ("2026-10-25T02:30 happens twice in Europe/Berlin: the clocks go "
                             "back then. Add the offset, e.g. 2026-10-25T02:30+02:00.")


def test_due_past_and_gap_errors_read_in_the_senders_language() -> None:
    error = error_of("!request urgent due:14:59\nx")
    assert error.message_in("ru") == ("Срок 14:59 уже прошёл: сейчас 01.05.2026 15:00 "
                                      "UTC+05:00 (Asia/Tashkent).")


def test_format_due_is_utc_and_as_precise_as_needed() -> None:
    assert format_due(datetime(2026, 12, 1, 18, 0, tzinfo=BERLIN)) == "2026-12-01T17:00Z"
    assert format_due(datetime(2026, 12, 1, 17, 0, 5, tzinfo=UTC)) == "2026-12-01T17:00:05Z"
    assert format_due(datetime(2026, 12, 1, 17, 0, 0, 5, tzinfo=UTC)) == (
        "2026-12-01T17:00:00.000005Z")


# --- commands about one case ------------------------------------------------------------------


def test_ref_commands() -> None:
    assert parse_ack("kz-0042", ()) == "KZ-0042"
    assert parse_cancel(" KZ-0042 ", ()) == "KZ-0042"
    assert parse_status("KZ-0042", ()) == "KZ-0042"
    assert parse_close("KZ-0042", ()) == RefCommand("KZ-0042", "")
    assert parse_close("KZ-0042 40 kg seized", ("driver arrested",)) == RefCommand(
        "KZ-0042", "40 kg seized\ndriver arrested")
    assert parse_update("KZ-0042", ("Second truck seen.",)) == RefCommand(
        "KZ-0042", "Second truck seen.")


def test_ref_commands_in_reply_use_the_context_case() -> None:
    assert parse_ack("", (), context_ref="KZ-0042") == "KZ-0042"
    assert parse_close("seized 40 kg", (), context_ref="KZ-0042") == RefCommand(
        "KZ-0042", "seized 40 kg")
    assert parse_update("KZ-0043 more", (), context_ref="KZ-0042").ref == "KZ-0043"


@pytest.mark.parametrize(
    ("call", "message", "usage"),
    [
        (lambda: parse_ack("", ()), "Which case? Give its reference, e.g. KZ-0042.", "!ack CASE"),
        (lambda: parse_cancel("KZ-0042 now", ()),
         "!cancel takes only a case reference; now is one word too many.", "!cancel CASE"),
        (lambda: parse_status("KZ-0042", ("more",)),
         "!status takes only a case reference; more is one word too many.", "!status CASE"),
        (lambda: parse_update("KZ-0042", ()), "What is the update? Write it after the reference.",
         "!update CASE TEXT"),
        (lambda: parse_close("seized", ()),
         "seized is not a case reference; a reference looks like KZ-0042.",
         "!close CASE [OUTCOME]"),
        (lambda: parse_close("KZ-042 seized", (), context_ref="KZ-0042"),
         "KZ-042 is not a case reference; a reference looks like KZ-0042.",
         "!close CASE [OUTCOME]"),
    ],
)
def test_ref_command_errors(call: object, message: str, usage: str) -> None:
    with pytest.raises(CommandError) as caught:
        call()  # type: ignore[operator]
    assert (caught.value.message, caught.value.usage) == (message, usage)


# --- properties -------------------------------------------------------------------------------

_OPTION_FOLDED = {fold_word(word) for key, words in OPTION_KEYS.items() for word in (key, *words)}

targets_st = st.lists(
    st.one_of(
        st.from_regex(r"[A-Z]{2}(-[A-Z0-9]{1,8}){1,2}", fullmatch=True),
        st.from_regex(r"[A-Z]{2}", fullmatch=True),
        st.from_regex(r"[a-z][a-z0-9]{2,10}(-[a-z0-9]{1,5})?", fullmatch=True),
        st.sampled_from(["neighbours"]),
    ).filter(lambda t: _canonical_target(t) == t),
    min_size=1, max_size=5, unique=True,
)
field_key_st = st.text(
    alphabet=st.characters(categories=["L", "Nd"]) | st.sampled_from("-_"),
    min_size=1, max_size=24,
).filter(lambda k: bool(FIELD_KEY_RE.fullmatch(k)) and fold_word(k) not in _OPTION_FOLDED)
field_value_st = st.text(min_size=1, max_size=120).filter(
    lambda v: v == v.strip() and bool(v) and "\n" not in v and "\r" not in v)
text_st = st.text(max_size=400).map(lambda t: t.replace("\r", "").strip()).filter(
    lambda t: not t or _field_line(t.split("\n", 1)[0]) is None)


@st.composite
def drafts(draw: st.DrawFn) -> CaseDraft:
    kind: CaseKind = draw(st.sampled_from(["alert", "request"]))
    fields = tuple(draw(st.lists(st.tuples(field_key_st, field_value_st), max_size=6)))
    text = draw(text_st)
    assume(fields or text)
    due = None
    if kind == "request":
        due = draw(st.none() | st.datetimes(
            min_value=NOW.replace(tzinfo=None) + timedelta(microseconds=1),
            max_value=NOW.replace(tzinfo=None) + timedelta(days=365),
            timezones=st.just(UTC)))
    return CaseDraft(
        kind=kind,
        priority=draw(st.sampled_from(list(Priority))),
        targets=tuple(draw(targets_st)),
        tlp=draw(st.sampled_from(list(Tlp))),
        category=draw(st.none() | st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True)),
        grading=draw(st.none() | st.from_regex(r"[ABCX][1-4]", fullmatch=True)),
        ref=draw(st.none() | st.from_regex(r"[A-Z]{2}-[0-9]{4,8}", fullmatch=True)),
        due=due,
        fields=fields,
        text=text,
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(draft=drafts(), tz=st.sampled_from([TASHKENT, BERLIN, ZoneInfo("Asia/Riyadh")]))
def test_render_then_parse_gives_the_same_draft(draft: CaseDraft, tz: ZoneInfo) -> None:
    parsed = split_command(render_draft(draft))
    assert parsed is not None
    word, args, lines = parsed
    assert word == draft.kind
    assert parse_case(draft.kind, args, lines, now=NOW, tz=tz, default_tlp=Tlp.RED) == draft


_vocabulary = st.sampled_from([
    "urgent", "flash", "срочно", "to:", "to:UZ-TERMEZ", "to:uz-termez,", ",TJ-PANJ", "кому:",
    "tlp:", "tlp:amber", "due:", "due:4h", "due:2026-12-01", "18:00", "2026-12-01T18:00",
    "grade:B2", "grade:", "cat:drugs", "ref:KZ-0042", "ref:", ":", "::", "neighbours",
    "\u200b", "\u202e", "٠", "ＵＺ", "due:999999w", "due:23:59", "due:00:00",
])
_first_line = st.lists(_vocabulary | st.text(max_size=12), max_size=8).map(" ".join)
_body_line = st.one_of(
    st.text(max_size=40),
    st.tuples(st.sampled_from(["vehicle", "to", "tlp", "Note", "срок", ""]),
              st.sampled_from([":", ": ", ":x", " : "]), st.text(max_size=10)).map("".join),
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["alert", "request"]),
    args=st.one_of(st.text(), _first_line),
    lines=st.lists(_body_line, max_size=6),
    now=st.datetimes(timezones=st.just(UTC)),
    tz=st.sampled_from([TASHKENT, BERLIN, ZoneInfo("Pacific/Kiritimati"), ZoneInfo("UTC")]),
)
def test_parse_case_raises_only_command_error(
    kind: str, args: str, lines: list[str], now: datetime, tz: ZoneInfo
) -> None:
    try:
        draft = parse_case(kind, args, tuple(lines), now=now, tz=tz)  # type: ignore[arg-type]
    except CommandError as error:
        assert error.message and error.usage
        return
    assert render_draft(draft).startswith("!" + kind)


@settings(max_examples=300)
@given(body=st.text())
def test_split_command_and_parse_ref_raise_only_command_error(body: str) -> None:
    parsed = split_command(body)
    if parsed is not None:
        word, args, lines = parsed
        assert word and "\n" not in args
        try:
            parse_close(args, lines)
        except CommandError:
            pass
    try:
        parse_ref(body)
    except CommandError:
        pass
