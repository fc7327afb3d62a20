"""Flood control: token buckets per sender and per room, one notice per window, on an
injected clock (every call passes the time)."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest

from liaison.commands.flood import FloodGate, Rate, Scope, TokenBucket, flood_notice
from liaison.config import ConfigError, parse_config

MINUTE_MS = 60_000
TEN_A_MINUTE = Rate(10, timedelta(minutes=1))


def gate(per_user: Rate | None = TEN_A_MINUTE, per_room: Rate | None = None) -> FloodGate:
    return FloodGate(per_user=per_user, per_room=per_room)


def admitted(flood: FloodGate, count: int, *, user: str = "@kz:x", room: str = "!kz:x",
             at_ms: int = 0) -> int:
    return sum(flood.admit(user, room, at_ms).admitted for _ in range(count))


# --- rates ------------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "count", "seconds"), [
    ("10/1m", 10, 60), ("30/90s", 30, 90), (" 5 / 1h30m ", 5, 5400), ("1/1d", 1, 86400)])
def test_a_rate_is_written_as_count_per_duration(written: str, count: int,
                                                 seconds: int) -> None:
    rate = Rate.parse(written)
    assert (rate.count, rate.per) == (count, timedelta(seconds=seconds))


@pytest.mark.parametrize(("written", "message"), [
    ("10", "is not a rate; write it as COUNT/DURATION, like 10/1m"),
    ("ten/1m", "is not a rate"),
    ("0/1m", "between 1 and 100000"),
    ("10/1 minute", "is not a duration"),
    ("10/0s", "must be longer than zero"),
])
def test_a_bad_rate_says_what_is_wrong(written: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rate.parse(written)


def test_a_rate_prints_the_way_it_is_written() -> None:
    assert str(Rate.parse("30/90s")) == "30/1m30s"


# --- one bucket -------------------------------------------------------------------------


def test_a_bucket_allows_a_burst_then_refills_evenly() -> None:
    bucket = TokenBucket.full(TEN_A_MINUTE, 0)
    assert [bucket.take(0) for _ in range(11)] == [True] * 10 + [False]
    assert not bucket.take(5_999)
    assert bucket.take(6_000)  # one token every 6 s
    assert not bucket.take(6_000)


def test_a_bucket_never_holds_more_than_its_count() -> None:
    bucket = TokenBucket.full(TEN_A_MINUTE, 0)
    bucket.take(0)
    assert bucket.available(100 * MINUTE_MS) == 10


def test_time_that_runs_backwards_adds_no_tokens() -> None:
    bucket = TokenBucket.full(TEN_A_MINUTE, MINUTE_MS)
    for _ in range(10):
        bucket.take(MINUTE_MS)
    assert not bucket.take(0)  # an older timestamp
    assert bucket.updated_ms == MINUTE_MS
    assert not bucket.take(MINUTE_MS + 5_999)
    assert bucket.take(MINUTE_MS + 6_000)


# --- the gate ---------------------------------------------------------------------------


def test_commands_over_the_user_limit_are_refused_with_one_notice_per_window() -> None:
    flood = gate()
    assert admitted(flood, 10) == 10
    refused = [flood.admit("@kz:x", "!kz:x", at) for at in (0, 100, 200, 5_000)]
    assert [v.admitted for v in refused] == [False] * 4
    assert [v.notify for v in refused] == [True, False, False, False]
    assert (refused[0].scope, refused[0].rate) == (Scope.USER, TEN_A_MINUTE)
    # After the window a refused command gets a notice again.
    assert admitted(flood, 10, at_ms=MINUTE_MS) == 10
    again = flood.admit("@kz:x", "!kz:x", MINUTE_MS)
    assert not again.admitted and again.notify


def test_the_user_limit_counts_every_room_and_spares_other_users() -> None:
    flood = gate()
    assert admitted(flood, 5, room="!a:x") + admitted(flood, 5, room="!b:x") == 10
    assert not flood.admit("@kz:x", "!c:x", 0).admitted
    assert admitted(flood, 10, user="@uz:x", room="!a:x") == 10


def test_the_room_limit_counts_everyone_in_the_room_and_tells_each_sender_once() -> None:
    flood = gate(per_user=None, per_room=Rate(3, timedelta(seconds=30)))
    assert admitted(flood, 2, user="@a:x") + admitted(flood, 1, user="@b:x") == 3
    first_a, second_a = (flood.admit("@a:x", "!kz:x", at) for at in (1, 2))
    first_b = flood.admit("@b:x", "!kz:x", 3)
    assert (first_a.scope, first_a.notify, second_a.notify) == (Scope.ROOM, True, False)
    assert first_b.notify  # each sender hears of it once
    assert flood.admit("@a:x", "!other:x", 4).admitted  # another room is not limited


def test_a_refused_command_spends_no_token_of_the_other_bucket() -> None:
    flood = gate(per_user=Rate(2, timedelta(minutes=1)), per_room=Rate(3, timedelta(minutes=1)))
    assert admitted(flood, 5, user="@a:x") == 2  # the room bucket paid only twice
    assert admitted(flood, 5, user="@b:x") == 1


def test_a_backlog_sent_at_a_normal_pace_is_no_flood_when_it_is_handled_at_once() -> None:
    # The router passes each command's server timestamp: thirty commands sent one every
    # six seconds while the bot was down are all admitted when it catches up.
    flood = gate()
    assert sum(flood.admit("@kz:x", "!kz:x", number * 6_000).admitted
               for number in range(30)) == 30


def test_no_limits_admit_everything() -> None:
    assert admitted(gate(per_user=None, per_room=None), 1000) == 1000


def test_idle_buckets_are_forgotten_when_there_are_many(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("liaison.commands.flood.MAX_TRACKED_BUCKETS", 4)
    flood = gate()
    for number in range(4):
        flood.admit(f"@u{number}:x", "!r:x", 0)
    flood.admit("@busy:x", "!r:x", MINUTE_MS)
    flood.admit("@new:x", "!r:x", MINUTE_MS)
    assert len(flood._buckets) == 2


def test_the_notice_names_the_limit() -> None:
    flood = gate()
    admitted(flood, 10)
    notice = flood_notice(flood.admit("@kz:x", "!kz:x", 0), "en")
    assert notice.text.startswith("Too many commands at once: I take at most 10 in 1m")
    assert "did not act on this one" in notice.text
    assert notice.mentions == ()
    with pytest.raises(ValueError):
        flood_notice(flood.admit("@uz:x", "!kz:x", 0), "en")


# --- configuration ----------------------------------------------------------------------

CONFIG = textwrap.dedent(
    """\
    homeserver: {url: "https://matrix.example"}
    bot: {user_id: "@liaison:example", password: {env: P}, pickle_key: {env: K}}
    data_dir: data
    trust: {policy: tofu}
    """
)


def test_limits_default_to_ten_a_minute_per_user_and_thirty_per_room() -> None:
    limits = parse_config(CONFIG, check_secrets=False).limits
    assert limits.commands_per_user == TEN_A_MINUTE
    assert limits.commands_per_room == Rate(30, timedelta(minutes=1))


def test_limits_are_read_from_the_config_and_null_lifts_one() -> None:
    text = CONFIG + "limits:\n  commands_per_user: 5/10s\n  commands_per_room: null\n"
    limits = parse_config(text, check_secrets=False).limits
    assert limits.commands_per_user == Rate(5, timedelta(seconds=10))
    assert limits.commands_per_room is None


@pytest.mark.parametrize(("value", "message"), [
    ("10", "write a rate as COUNT/DURATION, like 10/1m"),
    ("10 a minute", "is not a rate"),
    ("0/1m", "between 1 and 100000"),
])
def test_a_bad_limit_names_the_field_and_line(value: str, message: str) -> None:
    text = CONFIG + f"limits:\n  commands_per_room: {value}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="config.yaml", check_secrets=False)
    (problem,) = caught.value.problems
    assert (problem.path, problem.line) == ("limits.commands_per_room", 6)
    assert message in problem.message
