"""The command line's exit codes and messages."""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import re
import sqlite3
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import aiosqlite
import pytest

from liaison.bot.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_REFUSED, main
from liaison.commands.chasing import Action, Phase, PlannedStep
from liaison.commands.model import Priority, Tlp
from liaison.storage import cases, chasing, outbox
from liaison.storage.db import Database, load_migrations

UZ = "@uz:example.org"


def exit_code(argv: list[str]) -> int:
    """What `liaison ARGV` exits with: argparse itself exits for --help and usage errors."""
    try:
        return main(argv)
    except SystemExit as exited:
        assert isinstance(exited.code, int)
        return exited.code

GOOD = """\
homeserver:
  url: http://127.0.0.1:8008
bot:
  user_id: "@liaison:example.org"
  password: {env: TEST_LIAISON_PASSWORD}
  pickle_key: {env: TEST_LIAISON_PICKLE}
data_dir: data
trust:
  policy: tofu
"""


def test_check_config_accepts_a_good_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TEST_LIAISON_PASSWORD", "secret")
    monkeypatch.setenv("TEST_LIAISON_PICKLE", "pickle")
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    assert main(["check-config", "-c", str(path)]) == EXIT_OK
    assert "OK" in capsys.readouterr().out
    assert main(["check-config", str(path)]) == EXIT_OK  # the file may be named without -c
    assert capsys.readouterr().out.startswith(f"{path}: OK")


def test_check_config_warns_once_per_language_posts_have_no_name_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEST_LIAISON_PASSWORD", "secret")
    monkeypatch.setenv("TEST_LIAISON_PICKLE", "pickle")
    path = tmp_path / "config.yaml"
    posts = "posts:\n" + "".join(
        f"  - {{id: {post_id}, names: {names}, country: {post_id[:2]}, agency: border,"
        f" room: \"!{post_id.lower()}:example.org\"}}\n"
        for post_id, names in (("UZ-TERMEZ", "{en: Termez}"), ("AF-HAIRATAN", "{en: Hairatan}"),
                               ("TJ-PANJ", "{en: Panj, ru: Пяндж, ar: بنج}")))
    path.write_text(GOOD + posts)
    assert main(["check-config", "-c", str(path)]) == EXIT_OK
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("warning:")]
    assert warnings == [
        "warning: 2 of 3 posts have no names.ru and are shown in English in rooms reading "
        "ru: UZ-TERMEZ, AF-HAIRATAN",
        "warning: 2 of 3 posts have no names.ar and are shown in English in rooms reading "
        "ar: UZ-TERMEZ, AF-HAIRATAN"]


def test_check_config_names_the_field_and_line_of_an_inline_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEST_LIAISON_PICKLE", "pickle")
    path = tmp_path / "config.yaml"
    path.write_text(GOOD.replace("{env: TEST_LIAISON_PASSWORD}", "hunter2"))
    assert main(["check-config", "-c", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"{path}:5: bot.password:" in err
    assert "hunter2" not in err


def test_check_config_reports_a_missing_secret_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TEST_LIAISON_PASSWORD", raising=False)
    monkeypatch.setenv("TEST_LIAISON_PICKLE", "pickle")
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    assert main(["check-config", "-c", str(path)]) == EXIT_CONFIG
    assert "TEST_LIAISON_PASSWORD" in capsys.readouterr().err


def test_backup_writes_a_private_checked_archive_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3
    import stat
    import tarfile

    from liaison.bot.app import DATABASE_FILE
    from liaison.config import load_config
    from liaison.storage.db import Database

    monkeypatch.delenv("TEST_LIAISON_PASSWORD", raising=False)  # backup needs no secret
    monkeypatch.delenv("TEST_LIAISON_PICKLE", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    database = load_config(path, check_secrets=False).data_dir / DATABASE_FILE

    async def create() -> None:
        db = await Database.open(database)
        await db.close()

    asyncio.run(create())
    (database.parent / "credentials.json").write_text(
        '{"homeserver": "h", "user_id": "@b:h", "device_id": "DEV", "access_token": "t"}')
    before = database.read_bytes()
    target = tmp_path / "liaison-backup.tar"
    assert main(["backup", "-c", str(path), str(target)]) == EXIT_OK
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with tarfile.open(target) as archive:
        assert sorted(archive.getnames()) == ["credentials.json", "liaison.db",
                                              "manifest.json"]
        archive.extract("liaison.db", tmp_path / "out", filter="data")
    with sqlite3.connect(tmp_path / "out" / "liaison.db") as copy:
        tables = {row[0] for row in copy.execute("SELECT name FROM sqlite_master")}
    assert {"outbox", "processed_events"} <= tables
    assert database.read_bytes() == before


def test_backup_without_a_database_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from liaison.bot.app import DATABASE_FILE
    from liaison.config import load_config

    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    database = load_config(path, check_secrets=False).data_dir / DATABASE_FILE
    target = tmp_path / "copy.tar"
    assert main(["backup", "-c", str(path), str(target)]) == EXIT_FAILURE
    assert "there is no database" in capsys.readouterr().err
    assert not database.exists() and not target.exists()
    assert list(tmp_path.glob(".copy.tar.*")) == []


# --- stats ------------------------------------------------------------------------------

MIN = 60_000
POSTS_CONFIG = GOOD + """\
posts:
  - {id: KZ-ZHIBEK, names: {en: Zhibek}, country: KZ, agency: border,
     room: "!kz:example.org", timezone: Asia/Almaty}
  - {id: UZ-TERMEZ, names: {en: Termez}, country: UZ, agency: border,
     room: "!uz:example.org", timezone: Asia/Tashkent}
  - {id: TJ-PANJ, names: {en: Panj}, country: TJ, agency: border,
     room: "!tj:example.org", timezone: Asia/Dushanbe}
"""


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


async def kz_case(conn: aiosqlite.Connection, *, minutes_ago: int, kind: str = "alert",
                  priority: Priority = Priority.URGENT) -> tuple[cases.Case, cases.Delivery]:
    """A case from KZ-ZHIBEK relayed to UZ-TERMEZ `minutes_ago`, stored as `!alert` does."""
    at = now_ms() - minutes_ago * MIN
    case = await cases.create_case(conn, cases.NewCase(
        kind=kind, origin_post="KZ-ZHIBEK", origin_country="KZ",  # type: ignore[arg-type]
        priority=priority, tlp=Tlp.GREEN, category=None, grading=None, related_ref=None,
        fields=(), text="Look out for a white Kamaz.",
        due_ms=at + 240 * MIN if kind == "request" else None, forwardable=True,
        origin_room="!kz:example.org", origin_event_id=f"$alert{minutes_ago}",
        origin_sender="@kz:example.org", created_ms=at))
    message = await outbox.enqueue(conn, room_id="!uz:example.org",
                                   event_type="m.room.message", content={"body": case.ref},
                                   now_ms=at, kind="case-relay", case_ref=case.ref)
    delivery = await cases.add_delivery(conn, case.id, post="UZ-TERMEZ",
                                        room_id="!uz:example.org",
                                        relay_txn_id=message.txn_id, now_ms=at)
    return case, delivery


async def fill(database: Path) -> None:
    """UZ-TERMEZ received four cases from KZ-ZHIBEK in the last hour — acknowledged after
    2m, 6m and 1m (the request, answered after 30m), one flash alert never, escalated
    once — and one more 10 days ago, acknowledged after 3m and closed."""
    db = await Database.open(database)
    try:
        async with db.transaction() as conn:
            old, delivery = await kz_case(conn, minutes_ago=10 * 24 * 60)
            await cases.acknowledge(conn, delivery, by=UZ, now_ms=delivery.routed_ms + 3 * MIN)
            await cases.finish_case(conn, old, "closed", post="KZ-ZHIBEK", by="@kz:example.org",
                                    now_ms=delivery.routed_ms + 4 * MIN)
            _, delivery = await kz_case(conn, minutes_ago=60)
            await cases.acknowledge(conn, delivery, by=UZ, now_ms=delivery.routed_ms + 2 * MIN)
            _, delivery = await kz_case(conn, minutes_ago=50)
            await cases.acknowledge(conn, delivery, by=UZ, now_ms=delivery.routed_ms + 6 * MIN)
            _, delivery = await kz_case(conn, minutes_ago=40, kind="request")
            await cases.acknowledge(conn, delivery, by=UZ, now_ms=delivery.routed_ms + MIN)
            await cases.mark_answered(conn, delivery, by=UZ, now_ms=delivery.routed_ms + 30 * MIN)
            _, delivery = await kz_case(conn, minutes_ago=30, priority=Priority.FLASH)
            await chasing.save_plan(conn, delivery.id, [PlannedStep(
                key="ack.escalate.1", phase=Phase.ACK, action=Action.ESCALATE,
                due_ms=delivery.routed_ms + 15 * MIN, targets=("supervisors",))],
                now_ms=delivery.routed_ms)
            [step] = await chasing.steps_of(conn, delivery.id)
            await chasing.mark_fired(conn, step.id, now_ms=delivery.routed_ms + 15 * MIN,
                                     late=False, sent=[])
    finally:
        await db.close()


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """A config with three posts whose database holds the cases of `fill`."""
    path = tmp_path / "config.yaml"
    path.write_text(POSTS_CONFIG)
    asyncio.run(fill(tmp_path / "data" / "liaison.db"))
    return path


TITLE = re.compile(r"^Report for the last 7d \(\d{4}-\d\d-\d\d \d\d:\d\d UTC to "
                   r"\d{4}-\d\d-\d\d \d\d:\d\d UTC\)$")


def test_stats_prints_the_report_figures_as_an_aligned_table(
    filled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "-c", str(filled)]) == EXIT_OK
    title, *table = capsys.readouterr().out.splitlines()
    assert TITLE.match(title), title
    assert table == [
        "post       sent  received  acked  ack median  ack p90  requests  answered  "
        "answer median  answer p90  overdue  escalations",
        "KZ-ZHIBEK     4         0      0           -        -         0         0  "
        "            -           -        0            0",
        "UZ-TERMEZ     0         4      3          2m       6m         1         1  "
        "          30m         30m        1            1",
        "TJ-PANJ       0         0      0           -        -         0         0  "
        "            -           -        0            0",
    ]


def test_stats_for_chosen_posts_over_a_longer_period_as_json(
    filled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "-c", str(filled), "--period", "30d", "--post", "uz-termez",
                 "--format", "json"]) == EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["period"] == "30d"
    assert shown["posts"] == [{
        "post": "UZ-TERMEZ", "sent": 0, "received": 5, "acknowledged": 4,
        "ack_median_ms": 150_000, "ack_p90_ms": 6 * MIN, "requests": 1, "answered": 1,
        "answer_median_ms": 30 * MIN, "answer_p90_ms": 30 * MIN, "overdue": 1,
        "escalations": 1, "on_time": [],
    }]
    since = datetime.fromisoformat(shown["since"].replace("Z", "+00:00"))
    until = datetime.fromisoformat(shown["until"].replace("Z", "+00:00"))
    assert until - since == timedelta(days=30)


def test_stats_refuses_a_post_that_is_not_configured(
    filled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "-c", str(filled), "--post", "UZ-TERMEZ", "UZ-TERMZ"]) == EXIT_CONFIG
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("liaison: no post UZ-TERMZ in the configuration; did you mean "
                            "UZ-TERMEZ? (posts: KZ-ZHIBEK, UZ-TERMEZ, TJ-PANJ)\n")


def test_stats_refuses_a_period_it_cannot_read(
    filled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(["stats", "-c", str(filled), "--period", "forever"]) == EXIT_CONFIG
    assert ("argument --period: 'forever' is not a period; write it like 7d or 30d "
            "(at most 366d)") in capsys.readouterr().err


def test_stats_without_a_database_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(POSTS_CONFIG)
    assert main(["stats", "-c", str(path)]) == EXIT_FAILURE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"liaison: there is no database at {tmp_path / 'data' / 'liaison.db'}\n"
    assert not (tmp_path / "data").exists()  # reading never creates one


def test_stats_of_a_database_the_bot_has_not_upgraded_yet_says_so(
    filled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = filled.parent / "data" / "liaison.db"
    with sqlite3.connect(database) as raw:
        raw.execute("PRAGMA user_version = 1")
    assert main(["stats", "-c", str(filled)]) == EXIT_FAILURE
    latest = len(load_migrations())
    assert capsys.readouterr().err == (
        f"liaison: the database at {database} has schema 1, this Liaison reads {latest}: "
        "start `liaison run` once to upgrade it\n")


# --- version ----------------------------------------------------------------------------


def version_lines() -> list[str]:
    migrations = load_migrations()
    return [f"liaison {metadata.version('liaison')}",
            f"Python {platform.python_version()}",
            f"matrix-nio {metadata.version('matrix-nio')}",
            f"vodozemac {metadata.version('vodozemac')}",
            f"database schema {len(migrations)} (migrations up to {migrations[-1].name})"]


def test_version_names_the_build_and_the_schema_it_migrates_to(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["version"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.splitlines() == version_lines()
    assert re.match(r"liaison \d+\.\d+\.\d+\nPython 3\.\d+\.\d+\nmatrix-nio 0\.26\.", out), out


def test_dash_dash_version_prints_the_first_line_of_version(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(["--version"]) == EXIT_OK
    assert capsys.readouterr().out.splitlines() == version_lines()[:1]


def test_the_version_sample_in_docs_cli_md_is_what_version_prints() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    section = docs.split("### `version`", 1)[1]
    sample = section.split("```", 2)[1].strip().splitlines()
    real = version_lines()
    # Python, matrix-nio and vodozemac differ between machines: their names must match;
    # Liaison's own version and the schema line must match exactly.
    assert [line.split()[0] for line in sample] == [line.split()[0] for line in real]
    assert (sample[0], sample[-1]) == (real[0], real[-1]), sample


def test_version_with_a_config_shows_its_database_schema(
    filled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = filled.parent / "data" / "liaison.db"
    assert main(["version", "-c", str(filled)]) == EXIT_OK
    latest = len(load_migrations())
    assert capsys.readouterr().out.splitlines() == [
        *version_lines(), f"database at {database}: schema {latest} (up to date)"]

    with sqlite3.connect(database) as raw:
        raw.execute("PRAGMA user_version = 2")
    assert main(["version", "-c", str(filled)]) == EXIT_OK
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"database at {database}: schema 2 (older: liaison run backs it up to "
        f"{database.parent / 'backups'} and upgrades it to {latest})")

    with sqlite3.connect(database) as raw:
        raw.execute("PRAGMA user_version = 99")
    assert main(["version", "-c", str(filled)]) == EXIT_REFUSED
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"database at {database}: schema 99, newer than this Liaison: it will not run on it")


def test_version_with_a_config_and_no_database_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    assert main(["version", "-c", str(path)]) == EXIT_OK
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"no database yet at {tmp_path / 'data' / 'liaison.db'}")


# --- run refuses a database from a newer Liaison ----------------------------------------


@pytest.fixture
def root_logging() -> Iterator[None]:
    """`liaison run` sets up the process's logging; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_run_refuses_a_database_from_a_newer_liaison_and_leaves_it_alone(
    filled: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEST_LIAISON_PASSWORD", "secret")
    monkeypatch.setenv("TEST_LIAISON_PICKLE", "pickle")
    database = filled.parent / "data" / "liaison.db"
    with sqlite3.connect(database) as raw:
        raw.execute("PRAGMA user_version = 99")
    before = database.read_bytes()

    assert main(["run", "-c", str(filled)]) == EXIT_REFUSED
    latest = len(load_migrations())
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"liaison: start-up refused: database schema 99 is newer than this Liaison "
        f"({latest}); upgrade Liaison")
    assert database.read_bytes() == before
    assert not (database.parent / "backups").exists()


# --- help and usage ---------------------------------------------------------------------

COMMANDS = [["run"], ["check-config"], ["identity"], ["reset-identity"], ["recover-device"],
            ["backup"], ["backup-key"], ["restore"], ["audit"],
            ["audit", "verify"], ["export"], ["stats"], ["link", "check"], ["link", "export"],
            ["version"], ["demo"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_explains_itself(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code([*command, "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith(f"usage: liaison {' '.join(command)} [-h]")
    description = out.split("\n\n")[1]
    assert len(description) > 20, out  # a sentence, not just the usage line


def test_help_lists_every_command_and_the_exit_codes(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    listed = re.findall(r"^    ([a-z-]+)", out, flags=re.MULTILINE)
    assert listed == ["run", "check-config", "identity", "reset-identity", "recover-device",
                      "backup", "backup-key", "restore", "audit", "export", "stats", "rooms",
                      "link", "version", "demo"]
    for code, meaning in ((0, "success"), (1, "runtime failure"),
                          (2, "usage or configuration error"), (3, "refused"),
                          (4, "the audit log does not verify")):
        assert re.search(rf"^  {code}  {meaning}", out, flags=re.MULTILINE), (code, out)


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["statz"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "liaison: error: argument COMMAND: invalid choice: 'statz'" in err
    assert exit_code([]) == EXIT_CONFIG


def test_an_interrupted_command_does_not_report_success(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    from liaison.bot import cli

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_version", interrupted)
    assert main(["version"]) == 130


def test_demo_outside_a_checkout_says_how_to_run_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "devkit.demo", None)  # as in an installed wheel
    assert main(["demo"]) == EXIT_FAILURE
    assert "make demo" in capsys.readouterr().err


@pytest.mark.parametrize(("schema", "code", "says"), [
    (1, EXIT_FAILURE, "is older than this Liaison"),
    (99, EXIT_REFUSED, "is newer than this Liaison"),
])
def test_export_of_a_database_at_another_schema_writes_and_changes_nothing(
    filled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    schema: int, code: int, says: str
) -> None:
    database = filled.parent / "data" / "liaison.db"
    with sqlite3.connect(database) as raw:
        raw.execute(f"PRAGMA user_version = {schema}")
    before = database.read_bytes()
    target = tmp_path / "export.json"
    assert main(["export", "-c", str(filled), "--cases", "-o", str(target)]) == code
    assert says in capsys.readouterr().err
    assert not target.exists()
    assert database.read_bytes() == before
    assert not (database.parent / "backups").exists()
