"""The command line's exit codes and messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import EXIT_CONFIG, EXIT_OK, main

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


def test_backup_writes_a_private_readable_copy_of_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3
    import stat

    monkeypatch.setenv("TEST_LIAISON_PASSWORD", "secret")
    monkeypatch.setenv("TEST_LIAISON_PICKLE", "pickle")
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    target = tmp_path / "copy.db"
    assert main(["backup", "-c", str(path), str(target)]) == EXIT_OK
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with sqlite3.connect(target) as copy:
        tables = {row[0] for row in copy.execute("SELECT name FROM sqlite_master")}
    assert {"outbox", "processed_events"} <= tables
