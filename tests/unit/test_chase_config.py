"""The `chasing:` section and the posts' quiet hours and supervisors' rooms: defaults,
overrides, and errors that name the field and the line."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

from liaison.commands.chase_policy import DEFAULT_POLICIES
from liaison.commands.model import Priority
from liaison.config import load_config, parse_config
from tests.unit.test_config import VALID, line_of, problems_of

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def with_chasing(section: str) -> str:
    return VALID + textwrap.dedent(section)


def test_defaults_follow_the_issue_when_the_section_is_left_out() -> None:
    config = parse_config(VALID)
    flash = config.chasing.policies.of(Priority.FLASH)
    assert flash.acknowledge_within == timedelta(minutes=10)
    assert flash.remind_every == timedelta(minutes=5)
    assert [step.after for step in flash.escalate] == [timedelta(minutes=15),
                                                      timedelta(minutes=30)]
    urgent = config.chasing.policies.urgent
    assert (urgent.acknowledge_within, [s.after for s in urgent.escalate]) == (
        timedelta(hours=1), [timedelta(hours=2), timedelta(hours=4)])
    routine = config.chasing.policies.routine
    assert (routine.acknowledge_within, [s.after for s in routine.escalate]) == (
        timedelta(hours=24), [timedelta(hours=48)])
    assert set(DEFAULT_POLICIES) == {priority.value for priority in Priority}


def test_a_key_left_out_keeps_the_priority_default() -> None:
    config = parse_config(with_chasing("""\
        chasing:
          check_every: 10s
          policies:
            flash:
              acknowledge_within: 90s
              answer:
                within: 20m
    """))
    flash = config.chasing.policies.flash
    assert flash.acknowledge_within == timedelta(seconds=90)
    assert flash.remind_every == timedelta(minutes=5)
    assert flash.answer.within == timedelta(minutes=20)
    assert flash.answer.remind_every == timedelta(minutes=15)
    assert config.chasing.policies.urgent.acknowledge_within == timedelta(hours=1)
    assert config.chasing.check_every == timedelta(seconds=10)


def test_escalation_steps_out_of_order_are_an_error_on_their_line() -> None:
    text = with_chasing("""\
        chasing:
          policies:
            urgent:
              escalate:
                - {after: 4h, to: [origin-supervisors]}
                - {after: 2h, to: [target-supervisors]}
    """)
    [problem] = problems_of(text)
    assert problem.path == "chasing.policies.urgent.escalate"
    assert problem.line == line_of(text, "escalate:")
    assert "out of order" in problem.message and "step 2 (after 2h)" in problem.message


def test_escalating_before_the_acknowledgement_deadline_is_out_of_order() -> None:
    text = with_chasing("""\
        chasing:
          policies:
            flash:
              acknowledge_within: 20m
    """)
    [problem] = problems_of(text)
    assert problem.path == "chasing.policies.flash"
    assert problem.line == line_of(text, "flash:")
    assert "comes before acknowledge_within" in problem.message


def test_zero_and_negative_durations_are_errors_on_their_lines() -> None:
    text = with_chasing("""\
        chasing:
          policies:
            flash:
              remind_every: 0m
            routine:
              snooze_max: -5m
    """)
    problems = problems_of(text)
    assert [(p.path, p.line) for p in problems] == [
        ("chasing.policies.flash.remind_every", line_of(text, "remind_every: 0m")),
        ("chasing.policies.routine.snooze_max", line_of(text, "snooze_max: -5m")),
    ]
    assert "must be longer than zero" in problems[0].message
    assert "is not a duration" in problems[1].message


def test_unknown_escalation_targets_are_errors_on_their_lines() -> None:
    text = with_chasing("""\
        chasing:
          policies:
            flash:
              escalate:
                - {after: 15m, to: [target-supervisors, UZ-TERMZ]}
                - after: 30m
                  to: ["@nobody:liaison.example"]
            urgent:
              escalate:
                - {after: 2h, to: the boss}
            routine:
              answer:
                escalate:
                  - {after: 1d, to: [regional-centre]}
    """)
    problems = problems_of(text)
    assert [(p.path, p.line) for p in problems] == [
        ("chasing.policies.flash.escalate[0].to[1]", line_of(text, "UZ-TERMZ")),
        ("chasing.policies.flash.escalate[1].to[0]", line_of(text, "@nobody")),
        ("chasing.policies.urgent.escalate[0].to", line_of(text, "the boss")),
        ("chasing.policies.routine.answer.escalate[0].to[0]", line_of(text, "regional-centre")),
    ]
    assert "did you mean UZ-TERMEZ?" in problems[0].message
    assert "not a supervisor of any post" in problems[1].message
    assert "'the boss' is not an escalation target" in problems[2].message
    assert "chasing.regional_centre is not set" in problems[3].message


def test_the_regional_centre_must_be_a_configured_post() -> None:
    text = with_chasing("""\
        chasing:
          regional_centre: KZ-CARIC
    """)
    [problem] = problems_of(text)
    assert (problem.path, problem.line) == ("chasing.regional_centre",
                                            line_of(text, "KZ-CARIC"))


def test_unknown_policy_keys_get_a_suggestion() -> None:
    text = with_chasing("""\
        chasing:
          policies:
            flash:
              acknowledge_whithin: 5m
    """)
    [problem] = problems_of(text)
    assert problem.message == ("unknown field 'acknowledge_whithin'; "
                               "did you mean 'acknowledge_within'?")


def test_quiet_hours_and_supervisors_rooms_on_posts() -> None:
    text = VALID.replace("    neighbours: [AF-HAIRATAN]\n",
                         "    neighbours: [AF-HAIRATAN]\n"
                         "    quiet_hours: 22:00-06:00\n"
                         '    supervisors_room: "!uz-sup:liaison.example"\n')
    post = parse_config(text).post_by_id("UZ-TERMEZ")
    assert post is not None
    assert (post.quiet_hours, post.supervisors_room) == ("22:00-06:00",
                                                         "!uz-sup:liaison.example")
    broken = text.replace("22:00-06:00", "22:00-22:00").replace('"!uz-sup', '"uz-sup')
    problems = problems_of(broken)
    assert [(p.path, p.line) for p in problems] == [
        ("posts[0].quiet_hours", line_of(broken, "quiet_hours")),
        ("posts[0].supervisors_room", line_of(broken, "supervisors_room")),
    ]


def test_the_example_configuration_documents_chasing_and_loads() -> None:
    config = load_config(EXAMPLE, check_secrets=False)
    assert config.chasing.regional_centre == "KZ-CARICC"
    text = EXAMPLE.read_text(encoding="utf-8")
    for knob in ("check_every", "regional_centre", "acknowledge_within", "remind_every",
                 "reminders", "escalate", "snooze_max", "answer", "within", "quiet_hours",
                 "supervisors_room"):
        assert f"{knob}:" in text or f"#   {knob}" in text, knob
