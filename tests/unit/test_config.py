"""Configuration loading: what an operator sees when the YAML is right, and when it is wrong."""

from __future__ import annotations

import os
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from liaison.commands.model import Agency, Tlp
from liaison.config import (
    INLINE_SECRET_MESSAGE,
    Config,
    ConfigError,
    ConfigProblem,
    SecretRef,
    load_config,
    parse_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"

# A small valid configuration; tests replace parts of it to break one thing.
VALID = textwrap.dedent(
    """\
    homeserver:
      url: https://matrix.liaison.example/
    bot:
      user_id: "@liaison:liaison.example"
      password: {env: TEST_LIAISON_PASSWORD}
      pickle_key: {env: TEST_LIAISON_PICKLE_KEY}
    data_dir: data
    trust:
      policy: tofu
    posts:
      - id: UZ-TERMEZ
        names: {en: Termez border crossing, ru: Пункт пропуска «Айритом»}
        country: UZ
        agency: border
        room: "!uz-termez:liaison.example"
        language: ru
        timezone: Asia/Tashkent
        neighbours: [AF-HAIRATAN]
      - id: AF-HAIRATAN
        names: {en: Hairatan border crossing}
        country: AF
        agency: border
        room: "!af-hairatan:liaison.example"
        timezone: Asia/Kabul
        neighbours: [UZ-TERMEZ]
      - id: UZ-FIU
        names: {en: FIU of Uzbekistan}
        country: UZ
        agency: fiu
        room: "!uz-fiu:liaison.example"
        clearance: AMBER+STRICT
    groups:
      - name: amu-darya
        posts: [UZ-TERMEZ, AF-HAIRATAN]
    category_rules:
      - category: financial
        add: [same-country:fiu]
    """
)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line number of the n-th line of `text` containing `needle`."""
    lines = [number for number, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(lines) >= occurrence, f"{needle!r} occurs {len(lines)} times"
    return lines[occurrence - 1]


def problems_of(text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="config.yaml")
    return caught.value.problems


def only_problem(text: str) -> ConfigProblem:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


# --------------------------------------------------------------------------- the example


def test_example_config_loads_when_its_secrets_are_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIAISON_PASSWORD", "correct horse")
    monkeypatch.setenv("LIAISON_PICKLE_KEY", "battery staple")

    config = load_config(EXAMPLE)

    assert config.warnings == []
    assert config.config_path == EXAMPLE
    assert config.bot.password is not None
    assert config.bot.password.resolve() == "correct horse"
    assert config.bot.pickle_key.resolve() == "battery staple"
    assert {post.country for post in config.posts} == {"KZ", "UZ", "KG", "TJ", "TM", "AF"}
    assert len(config.posts) >= 12
    termez = config.post_by_id("UZ-TERMEZ")
    assert termez is not None
    assert termez.timezone == "Asia/Tashkent"
    assert termez.name("ru") == "Пункт пропуска «Айритом» (Термез)"
    assert config.post_by_room("!uz-termez:liaison.example") == termez
    caricc = config.group("caricc")
    assert caricc is not None and "KZ-CARICC" in caricc.posts
    assert config.category_rules[0].add == ("same-country:fiu",)
    assert all(post.name("ar") != post.name("en") for post in config.posts)


def test_example_config_neighbours_are_symmetric(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIAISON_PASSWORD", "x")
    monkeypatch.setenv("LIAISON_PICKLE_KEY", "y")
    config = load_config(EXAMPLE)
    by_id = {post.id: post for post in config.posts}
    for post in config.posts:
        for neighbour in post.neighbours:
            assert post.id in by_id[neighbour].neighbours, (post.id, neighbour)


def test_example_config_without_secrets_names_each_variable_and_its_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LIAISON_PASSWORD", raising=False)
    monkeypatch.delenv("LIAISON_PICKLE_KEY", raising=False)
    text = EXAMPLE.read_text(encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(EXAMPLE)

    assert caught.value.problems == [
        ConfigProblem(
            "bot.password",
            line_of(text, "password: {env: LIAISON_PASSWORD}"),
            "environment variable LIAISON_PASSWORD is not set",
        ),
        ConfigProblem(
            "bot.pickle_key",
            line_of(text, "pickle_key: {env: LIAISON_PICKLE_KEY}"),
            "environment variable LIAISON_PICKLE_KEY is not set",
        ),
    ]


# --------------------------------------------------------------------------- a valid file


def test_valid_config_applies_defaults_and_indexes_posts() -> None:
    config = parse_config(VALID, base_dir=Path("/etc/liaison"))

    assert config.homeserver.url == "https://matrix.liaison.example"
    assert config.bot.device_name == "Liaison"
    assert config.bot.server_name == "liaison.example"
    assert config.data_dir == Path("/etc/liaison/data")
    assert config.trust.policy == "tofu"
    assert config.trust.notify_device_changes is True
    assert (config.logging.level, config.logging.format) == ("INFO", "text")
    assert config.sync.timeout == timedelta(seconds=30)
    assert config.sync.backoff_max == timedelta(seconds=60)
    assert config.decryption.grace_period == timedelta(seconds=30)
    assert config.outbox.max_attempts is None
    assert config.outbox.backoff_max == timedelta(seconds=60)
    assert config.outbox.concurrency == 16
    assert config.access.allowed_inviters.users == ()
    assert config.warnings == []
    assert config.config_path is None

    fiu = config.post_by_id("UZ-FIU")
    assert fiu is not None and fiu.agency is Agency.FIU and fiu.clearance is Tlp.AMBER_STRICT
    assert config.post_by_room("!af-hairatan:liaison.example") == config.post_by_id("AF-HAIRATAN")
    assert config.post_by_id("TJ-PANJ") is None
    assert config.post_by_room("!nowhere:liaison.example") is None
    group = config.group("amu-darya")
    assert group is not None and group.posts == ("UZ-TERMEZ", "AF-HAIRATAN")
    assert config.group("caricc") is None


def test_durations_are_read_with_their_units() -> None:
    text = VALID + "sync:\n  timeout: 1h30m\n  backoff_max: 2d\noutbox:\n  max_attempts: 5\n"
    config = parse_config(text)
    assert config.sync.timeout == timedelta(hours=1, minutes=30)
    assert config.sync.backoff_max == timedelta(days=2)
    assert config.outbox.max_attempts == 5


def test_relative_paths_stay_relative_without_a_base_dir() -> None:
    assert parse_config(VALID).data_dir == Path("data")


def test_load_config_takes_relative_paths_from_the_config_directory(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(VALID, encoding="utf-8")
    config = load_config(path, check_secrets=False)
    assert config.data_dir == tmp_path / "data"
    assert config.config_path == path


# --------------------------------------------------------------------------- errors with lines


def test_missing_field_is_reported_at_its_parent_mapping() -> None:
    text = textwrap.dedent(
        """\
        homeserver:
          url: https://matrix.liaison.example
        bot:
          password: {env: LIAISON_PASSWORD}
          pickle_key: {env: LIAISON_PICKLE_KEY}
        data_dir: data
        trust: {policy: tofu}
        """
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="config.yaml")
    assert str(caught.value) == "config.yaml:3: bot.user_id: Field required"
    assert caught.value.problems == [ConfigProblem("bot.user_id", 3, "Field required")]


def test_missing_field_in_a_list_item_points_at_the_item() -> None:
    text = VALID.replace('    room: "!uz-fiu:liaison.example"\n', "")
    assert only_problem(text) == ConfigProblem(
        "posts[2].room", line_of(text, "- id: UZ-FIU"), "Field required"
    )


def test_wrong_type_names_path_and_line() -> None:
    text = VALID + "outbox:\n  concurrency: many\n"
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("outbox.concurrency", line_of(text, "concurrency:"))
    assert "integer" in problem.message


def test_invalid_value_in_a_post_names_the_list_index() -> None:
    text = VALID.replace("clearance: AMBER+STRICT", "clearance: PURPLE")
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("posts[2].clearance", line_of(text, "PURPLE"))
    assert "'AMBER+STRICT'" in problem.message


def test_domain_validator_message_is_shown_without_pydantic_prefix() -> None:
    text = VALID.replace("timezone: Asia/Kabul", "timezone: Asia/Kabool")
    assert only_problem(text) == ConfigProblem(
        "posts[1].timezone", line_of(text, "Asia/Kabool"),
        "unknown IANA time zone 'Asia/Kabool'; write it like Asia/Almaty")


def test_misspelt_field_is_an_error_that_suggests_the_right_name() -> None:
    text = VALID.replace("  pickle_key:", "  device_nmae: Liaison\n  pickle_key:")
    assert only_problem(text) == ConfigProblem(
        "bot.device_nmae",
        line_of(text, "device_nmae"),
        "unknown field 'device_nmae'; did you mean 'device_name'?",
    )


def test_invalid_user_id_is_reported_at_its_line() -> None:
    text = VALID.replace('"@liaison:liaison.example"', "liaison")
    assert only_problem(text) == ConfigProblem(
        "bot.user_id",
        line_of(text, "user_id:"),
        "'liaison' is not a Matrix user id like @name:server",
    )


def test_homeserver_url_must_be_http_or_https() -> None:
    text = VALID.replace("https://matrix.liaison.example/", "matrix.liaison.example")
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("homeserver.url", 2)


def test_plain_http_to_another_host_is_refused_at_its_line_unless_allowed() -> None:
    text = VALID.replace("https://matrix.liaison.example/", "http://matrix.liaison.example")
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("homeserver.url", 2)
    assert "unencrypted" in problem.message and "allow_insecure_http: true" in problem.message
    assert problem.render("config.yaml").startswith(
        "config.yaml:2: homeserver.url: http:// to matrix.liaison.example sends")

    allowed = text.replace("  url: http://matrix.liaison.example",
                           "  url: http://matrix.liaison.example\n  allow_insecure_http: true")
    assert parse_config(allowed, source="config.yaml").homeserver.allow_insecure_http
    for local in ("http://localhost:8008", "http://127.0.0.1:8008", "http://[::1]:8008"):
        loopback = VALID.replace("https://matrix.liaison.example/", local)
        assert parse_config(loopback, source="config.yaml").homeserver.url == local


def test_bad_duration_carries_the_parser_message_and_line() -> None:
    text = VALID + "decryption:\n  grace_period: 30 seconds\n"
    assert only_problem(text) == ConfigProblem(
        "decryption.grace_period",
        line_of(text, "grace_period:"),
        "'30 seconds' is not a duration; write it like 90s, 10m, 4h or 2d",
    )


def test_duration_without_unit_is_refused() -> None:
    text = VALID + "sync:\n  timeout: 30\n"
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("sync.timeout", line_of(text, "timeout: 30"))
    assert "unit" in problem.message


def test_unquoted_room_id_gets_a_quoting_hint() -> None:
    text = VALID.replace('room: "!uz-fiu:liaison.example"', "room: !uz-fiu:liaison.example")
    assert only_problem(text) == ConfigProblem(
        "posts[2].room",
        line_of(text, "room: !uz-fiu"),
        "YAML reads a value starting with '!' as a tag; quote it: '!uz-fiu:liaison.example'",
    )


def test_several_problems_are_reported_together_in_file_order() -> None:
    text = (
        VALID.replace('"@liaison:liaison.example"', "liaison")
        .replace("policy: tofu", "policy: trusting")
        .replace("country: AF", "country: Afghanistan")
    )
    problems = problems_of(text)
    assert [(p.path, p.line) for p in problems] == [
        ("bot.user_id", line_of(text, "user_id:")),
        ("trust.policy", line_of(text, "policy: trusting")),
        ("posts[1].country", line_of(text, "country: Afghanistan")),
    ]
    rendered = str(ConfigError(problems, source="config.yaml")).splitlines()
    assert rendered[0].startswith(f"config.yaml:{line_of(text, 'user_id:')}: bot.user_id: ")
    assert len(rendered) == 3


# --------------------------------------------------------------------------- YAML and files


def test_yaml_syntax_error_names_its_line() -> None:
    text = "homeserver:\n  url: https://matrix.liaison.example\nbot:\n  user_id: [unclosed\n"
    problem = only_problem(text)
    assert problem.path == ""
    assert problem.line == 5
    assert problem.message.startswith("YAML syntax error:")


def test_unquoted_user_id_syntax_error_says_to_quote_it() -> None:
    text = "access:\n  admins:\n    - @ops:liaison.example\n"
    problem = only_problem(text)
    assert problem.line == 3
    assert 'quote Matrix user ids: "@name:server"' in problem.message


def test_duplicate_key_is_reported_without_echoing_the_values() -> None:
    text = VALID.replace("  user_id:", "  password: hunter2\n  user_id:", 1)
    problem = only_problem(text)
    assert problem.line == line_of(text, "password: {env")
    assert problem.message == "duplicate key 'password'; each key may appear once"
    assert "hunter2" not in str(ConfigError([problem]))


def test_empty_file_is_an_error() -> None:
    assert only_problem("# nothing yet\n").message == "the configuration is empty"


def test_top_level_must_be_a_mapping() -> None:
    assert only_problem("- a\n- b\n") == ConfigProblem(
        "", 1, "the configuration must be a mapping of sections (key: value)"
    )


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: configuration file {path} does not exist"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(VALID, encoding="utf-8")
    path.chmod(0)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}: cannot read configuration file {path}: Permission denied"
    )


# --------------------------------------------------------------------------- secrets


def test_inline_secret_is_refused_at_its_line_without_echoing_it() -> None:
    text = VALID.replace("password: {env: TEST_LIAISON_PASSWORD}", "password: hunter2")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="config.yaml")
    assert caught.value.problems == [
        ConfigProblem("bot.password", line_of(text, "password:"), INLINE_SECRET_MESSAGE)
    ]
    assert "hunter2" not in str(caught.value)
    assert INLINE_SECRET_MESSAGE == (
        "secrets must not be written in the config; use {env: NAME} or {file: PATH}"
    )


def test_inline_pickle_key_number_is_refused_too() -> None:
    text = VALID.replace("pickle_key: {env: TEST_LIAISON_PICKLE_KEY}", "pickle_key: 12345")
    assert only_problem(text) == ConfigProblem(
        "bot.pickle_key", line_of(text, "pickle_key:"), INLINE_SECRET_MESSAGE
    )


def test_secret_reference_needs_exactly_one_source() -> None:
    text = VALID.replace("{env: TEST_LIAISON_PASSWORD}", "{env: A, file: /run/secrets/a}")
    assert only_problem(text) == ConfigProblem(
        "bot.password",
        line_of(text, "password:"),
        "write exactly one of {env: NAME} or {file: PATH}",
    )


def test_bot_needs_a_password_or_an_access_token() -> None:
    text = VALID.replace("  password: {env: TEST_LIAISON_PASSWORD}\n", "")
    assert only_problem(text) == ConfigProblem(
        "bot", 3, "give the bot a password or an access_token (or both)"
    )


def test_pickle_key_is_required() -> None:
    text = VALID.replace("  pickle_key: {env: TEST_LIAISON_PICKLE_KEY}\n", "")
    assert only_problem(text) == ConfigProblem("bot.pickle_key", 3, "Field required")


def test_env_secret_is_read_when_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = SecretRef(env="TEST_LIAISON_TOKEN")
    monkeypatch.setenv("TEST_LIAISON_TOKEN", "syt_abc")
    assert ref.resolve() == "syt_abc"
    assert ref.resolve({"TEST_LIAISON_TOKEN": "other"}) == "other"


def test_missing_env_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_LIAISON_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="environment variable TEST_LIAISON_TOKEN is not set"):
        SecretRef(env="TEST_LIAISON_TOKEN").resolve()
    monkeypatch.setenv("TEST_LIAISON_TOKEN", "")
    with pytest.raises(ConfigError, match="environment variable TEST_LIAISON_TOKEN is empty"):
        SecretRef(env="TEST_LIAISON_TOKEN").resolve()


def test_file_secret_drops_the_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret pass\n", encoding="utf-8")
    assert SecretRef(file=secret).resolve() == "s3cret pass"


def test_missing_or_empty_secret_file_names_the_file(tmp_path: Path) -> None:
    absent = tmp_path / "absent"
    with pytest.raises(ConfigError, match=f"secret file {absent} does not exist"):
        SecretRef(file=absent).resolve()
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"secret file {empty} is empty"):
        SecretRef(file=empty).resolve()


def test_relative_secret_file_is_found_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    for name in ("password", "pickle"):
        path = tmp_path / "secrets" / name
        path.write_text(f"{name}-value\n", encoding="utf-8")
        path.chmod(0o600)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        VALID.replace("{env: TEST_LIAISON_PASSWORD}", "{file: secrets/password}").replace(
            "{env: TEST_LIAISON_PICKLE_KEY}", "{file: secrets/pickle}"
        ),
        encoding="utf-8",
    )

    config = load_config(config_path)

    assert config.bot.password == SecretRef(file=tmp_path / "secrets" / "password")
    assert config.bot.password.resolve() == "password-value"
    assert config.bot.pickle_key.resolve() == "pickle-value"
    assert config.warnings == []


def test_world_readable_secret_file_is_a_warning_with_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_LIAISON_PASSWORD", "pw")
    secret = tmp_path / "pickle"
    secret.write_text("key\n", encoding="utf-8")
    secret.chmod(0o644)
    text = VALID.replace("{env: TEST_LIAISON_PICKLE_KEY}", "{file: pickle}")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(text, encoding="utf-8")

    config = load_config(config_path, check_secrets=False)
    assert config.warnings == []  # files are only looked at when secrets are checked

    config = load_config(config_path)
    assert config.warnings == [
        f"{config_path}:{line_of(text, 'pickle_key:')}: bot.pickle_key: secret file "
        f"{secret} is accessible by group or others (mode 0644); run chmod 600 on it"
    ]


def test_unreadable_secret_at_start_up_names_field_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_LIAISON_PASSWORD", "pw")
    text = VALID.replace("{env: TEST_LIAISON_PICKLE_KEY}", "{file: missing-key}")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config_path)
    assert caught.value.problems == [
        ConfigProblem(
            "bot.pickle_key",
            line_of(text, "pickle_key:"),
            f"secret file {tmp_path / 'missing-key'} does not exist",
        )
    ]


# --------------------------------------------------------------------------- cross-checks


def test_unknown_neighbour_suggests_the_nearest_post_id() -> None:
    text = VALID.replace("neighbours: [AF-HAIRATAN]", "neighbours: [AF-HAIRATAN, AF-HAIRATN]")
    assert only_problem(text) == ConfigProblem(
        "posts[0].neighbours[1]",
        line_of(text, "AF-HAIRATN"),
        "unknown post id 'AF-HAIRATN'; did you mean AF-HAIRATAN?",
    )


def test_unknown_post_in_a_group_suggests_the_id_in_capitals() -> None:
    text = VALID.replace("posts: [UZ-TERMEZ, AF-HAIRATAN]", "posts: [uz-termez, AF-HAIRATAN]")
    assert only_problem(text) == ConfigProblem(
        "groups[0].posts[0]",
        line_of(text, "[uz-termez"),
        "unknown post id 'uz-termez'; did you mean UZ-TERMEZ?",
    )


def test_unknown_post_and_agency_in_category_rules() -> None:
    text = VALID.replace("add: [same-country:fiu]", "add: [same-country:fui, XX-NOWHERE]")
    problems = problems_of(text)
    line = line_of(text, "same-country:fui")
    assert problems == [
        ConfigProblem(
            "category_rules[0].add[0]",
            line,
            "unknown agency 'fui' in 'same-country:fui'; did you mean fiu?",
        ),
        ConfigProblem(
            "category_rules[0].add[1]",
            line,
            "unknown post id 'XX-NOWHERE'; expected a configured post id or same-country:AGENCY",
        ),
    ]


def test_two_posts_sharing_a_room_is_an_error_at_the_second() -> None:
    text = VALID.replace('"!uz-fiu:liaison.example"', '"!uz-termez:liaison.example"')
    assert only_problem(text) == ConfigProblem(
        "posts[2].room",
        line_of(text, '"!uz-termez:liaison.example"', occurrence=2),
        "room !uz-termez:liaison.example is already the room of UZ-TERMEZ (posts[0]); "
        "each post needs its own room",
    )


def test_duplicate_post_id_is_an_error_at_the_second() -> None:
    text = VALID.replace("- id: UZ-FIU", "- id: UZ-TERMEZ")
    problems = problems_of(text)
    assert (
        ConfigProblem(
            "posts[2].id",
            line_of(text, "- id: UZ-TERMEZ", occurrence=2),
            "duplicate post id UZ-TERMEZ; already used by posts[0]",
        )
        in problems
    )


def test_post_cannot_be_its_own_neighbour() -> None:
    text = VALID.replace("neighbours: [UZ-TERMEZ]", "neighbours: [UZ-TERMEZ, AF-HAIRATAN]")
    assert only_problem(text) == ConfigProblem(
        "posts[1].neighbours[1]",
        line_of(text, "neighbours: [UZ-TERMEZ, AF-HAIRATAN]"),
        "a post cannot be its own neighbour",
    )


def test_one_way_neighbours_load_with_a_warning_at_the_entry() -> None:
    text = VALID.replace("neighbours: [AF-HAIRATAN]", "neighbours: [AF-HAIRATAN, UZ-FIU]")
    config = parse_config(text, source="config.yaml")
    assert config.warnings == [
        f"config.yaml:{line_of(text, 'UZ-FIU]')}: posts[0].neighbours[1]: UZ-TERMEZ lists "
        "UZ-FIU as a neighbour but UZ-FIU does not list UZ-TERMEZ; "
        "alerts to neighbours will flow one way"
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("uz-fiu", "group name uz-fiu is also a post id; rename the group"),
        ("af", "group name af could be read as a country code; rename the group"),
        ("neighbours", "group name neighbours is a reserved target word"),
    ],
)
def test_group_name_must_not_shadow_another_target(name: str, reason: str) -> None:
    text = VALID.replace("- name: amu-darya", f"- name: {name}")
    assert only_problem(text) == ConfigProblem(
        "groups[0].name", line_of(text, f"- name: {name}"), reason
    )


def test_duplicate_group_name_is_an_error_at_the_second() -> None:
    text = VALID.replace(
        "category_rules:",
        "  - name: amu-darya\n    posts: [UZ-FIU]\ncategory_rules:",
    )
    assert only_problem(text) == ConfigProblem(
        "groups[1].name",
        line_of(text, "- name: amu-darya", occurrence=2),
        "duplicate group name amu-darya; already used by groups[0]",
    )


def test_cross_checks_run_even_when_a_post_is_invalid() -> None:
    text = VALID.replace("agency: fiu", "agency: bank").replace(
        "neighbours: [UZ-TERMEZ]", "neighbours: [UZ-TERMES]"
    )
    assert [(p.path, p.line) for p in problems_of(text)] == [
        ("posts[1].neighbours[0]", line_of(text, "UZ-TERMES")),
        ("posts[2].agency", line_of(text, "agency: bank")),
    ]


def test_config_models_are_read_only() -> None:
    config = parse_config(VALID)
    with pytest.raises(ValueError, match="frozen"):
        config.data_dir = Path("/tmp")
    assert isinstance(config, Config)


def test_directory_or_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value) == f"{tmp_path}: {tmp_path} is a directory, not a configuration file"
    latin1 = tmp_path / "config.yaml"
    latin1.write_bytes("# Türkmenistan\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(latin1)
    assert str(caught.value) == f"{latin1}: configuration file {latin1} is not UTF-8 text"


def test_secret_error_reads_cleanly_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_LIAISON_TOKEN", raising=False)
    with pytest.raises(ConfigError) as caught:
        SecretRef(env="TEST_LIAISON_TOKEN").resolve()
    assert str(caught.value) == "environment variable TEST_LIAISON_TOKEN is not set"


def test_the_admins_room_must_be_a_room_id() -> None:
    text = VALID.replace("trust:\n", "access:\n  admins_room: ops-room\ntrust:\n")
    assert only_problem(text) == ConfigProblem(
        "access.admins_room", line_of(text, "admins_room:"),
        "admins_room must be a Matrix room id such as !abc123:example.org")
    fine = parse_config(VALID.replace("trust:\n", 'access:\n  admins_room: "!ops:x.example"\n'
                                                   "trust:\n"))
    assert fine.access.admins_room == "!ops:x.example"


@pytest.mark.parametrize("server", ["127.0.0.1:39123", "[::1]:8448", "[2001:db8::7]"])
def test_ids_on_ip_literal_servers_are_accepted_everywhere(server: str) -> None:
    """Partners federating by IP literal (the test pair, a small deployment without DNS)."""
    text = (VALID
            .replace('"@liaison:liaison.example"', f'"@liaison:{server}"')
            .replace('"!uz-termez:liaison.example"', f'"!uz-termez:{server}"')
            + textwrap.dedent(f"""\
                access:
                  allowed_inviters:
                    users: ["@bekzod:{server}"]
                    servers: ["{server}"]
                """))
    text = text.replace("neighbours: [AF-HAIRATAN]",
                        f'neighbours: [AF-HAIRATAN]\n    supervisors: ["@dilnoza:{server}"]')
    config = parse_config(text)

    assert config.bot.server_name == server
    assert config.access.allowed_inviters.servers == (server,)
    assert config.access.allowed_inviters.users == (f"@bekzod:{server}",)
    termez = config.post_by_room(f"!uz-termez:{server}")
    assert termez is not None and termez.supervisors == (f"@dilnoza:{server}",)


@pytest.mark.parametrize("user", ["@a:[::1", "@a:::1:8448", "@a:[::1]:", "@a:[::1]x"])
def test_malformed_ip_literal_user_ids_are_refused(user: str) -> None:
    problem = only_problem(VALID.replace("neighbours: [AF-HAIRATAN]",
                                         f'neighbours: [AF-HAIRATAN]\n    supervisors: ["{user}"]'))
    assert "not a Matrix user id" in problem.message
