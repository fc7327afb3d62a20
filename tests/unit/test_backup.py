"""`liaison backup` and `liaison restore`: one checked archive; a damaged, truncated or too
new archive is refused before anything is changed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from liaison.bot.backup import (
    RESTORED_MARK,
    BackupError,
    ScheduledBackups,
    generate_key,
    read_archive,
    restore_archive,
    write_archive,
)
from liaison.bot.cli import EXIT_REFUSED, main
from liaison.config import BackupsConfig
from liaison.storage.db import Database, latest_version, load_migrations

CREDENTIALS = {"homeserver": "https://h", "user_id": "@liaison:h", "device_id": "OLDDEVICE",
               "access_token": "secret"}


def data_dir(tmp_path: Path, *, schema: int | None = None) -> Path:
    """A data directory as the bot leaves it: database, crypto store, credentials, seeds."""
    directory = tmp_path / "data"

    async def create() -> None:
        db = await Database.open(directory / "liaison.db")
        await db.close()

    asyncio.run(create())
    if schema is not None:
        with sqlite3.connect(directory / "liaison.db") as conn:
            conn.execute(f"PRAGMA user_version = {schema:d}")
        conn.close()
    (directory / "credentials.json").write_text(json.dumps(CREDENTIALS))
    (directory / "cross-signing.json").write_text('{"master": "m"}')
    crypto = directory / "crypto"
    crypto.mkdir()
    with sqlite3.connect(crypto / "@liaison:h_OLDDEVICE.db") as conn:
        conn.execute("CREATE TABLE accounts (pickle TEXT)")
        conn.execute("INSERT INTO accounts VALUES ('the olm account')")
    conn.close()
    (crypto / "@liaison:h_OLDDEVICE.ignored_devices").write_text("")
    return directory


def test_a_backup_restores_into_a_new_directory_marked_for_a_new_device(
    tmp_path: Path,
) -> None:
    source = data_dir(tmp_path)
    archive = tmp_path / "backup.tar"
    manifest = write_archive(source, archive)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert manifest.device_id == "OLDDEVICE"
    assert manifest.schema == latest_version(load_migrations())
    assert sorted(manifest.members) == [
        "credentials.json", "cross-signing.json", "crypto/@liaison:h_OLDDEVICE.db",
        "crypto/@liaison:h_OLDDEVICE.ignored_devices", "liaison.db"]

    target = tmp_path / "restored"
    restore_archive(archive, target)

    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert json.loads((target / "credentials.json").read_text()) == CREDENTIALS
    with sqlite3.connect(target / "crypto" / "@liaison:h_OLDDEVICE.db") as conn:
        assert conn.execute("SELECT pickle FROM accounts").fetchall() == [("the olm account",)]
    conn.close()
    assert stat.S_IMODE((target / "liaison.db").stat().st_mode) == 0o600
    assert "recover-device" in (target / RESTORED_MARK).read_text()


@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_a_damaged_archive_is_refused_and_nothing_is_created(tmp_path: Path,
                                                              damage: str) -> None:
    archive = tmp_path / "backup.tar"
    write_archive(data_dir(tmp_path), archive)
    content = bytearray(archive.read_bytes())
    if damage == "truncated":
        content = content[: len(content) // 2]
    else:
        where = content.index(b"the olm account")
        content[where] ^= 0x01
    archive.write_bytes(bytes(content))
    target = tmp_path / "restored"

    with pytest.raises(BackupError, match="damaged"):
        restore_archive(archive, target)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_archive_from_a_newer_liaison_is_refused(tmp_path: Path) -> None:
    newer = latest_version(load_migrations()) + 1
    archive = tmp_path / "backup.tar"
    write_archive(data_dir(tmp_path, schema=newer), archive)

    with pytest.raises(BackupError, match=f"schema {newer} is newer than this Liaison"):
        read_archive(archive, tmp_path / "check")
    assert main(["restore", str(archive), str(tmp_path / "restored")]) == EXIT_REFUSED
    assert not (tmp_path / "restored").exists()


def test_restore_never_writes_over_an_existing_data_directory(tmp_path: Path) -> None:
    archive = tmp_path / "backup.tar"
    source = data_dir(tmp_path)
    write_archive(source, archive)
    before = (source / "liaison.db").read_bytes()

    with pytest.raises(BackupError, match="is not empty"):
        restore_archive(archive, source)
    assert (source / "liaison.db").read_bytes() == before


class SteppedClock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at

    def now_ms(self) -> int:
        return int(self.at.timestamp() * 1000)


def test_scheduled_backups_write_when_due_and_keep_the_newest(tmp_path: Path) -> None:
    source = data_dir(tmp_path)
    clock = SteppedClock(datetime(2026, 12, 1, 8, 0, tzinfo=UTC))
    settings = BackupsConfig(every=timedelta(days=1), keep=2)
    scheduled = ScheduledBackups(source, settings, clock)  # type: ignore[arg-type]
    assert scheduled.seconds_until_due() == 0  # none yet

    written = []
    for day in range(3):
        clock.at = datetime(2026, 12, 1 + day, 8, 0, tzinfo=UTC)
        written.append(asyncio.run(scheduled.write_once()))
        clock.at += timedelta(hours=23)
        assert scheduled.seconds_until_due() == 3600

    assert scheduled.directory == source / "archives"
    assert stat.S_IMODE(scheduled.directory.stat().st_mode) == 0o700
    assert [p.name for p in scheduled.archives()] == [
        "liaison-20261202T080000Z.tar", "liaison-20261203T080000Z.tar"]
    assert not written[0].exists()
    restore_archive(written[-1], tmp_path / "restored")  # each one a whole, checked backup
    assert (tmp_path / "restored" / "credentials.json").exists()


def test_an_encrypted_archive_opens_only_with_its_key_and_a_wrong_key_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["backup-key", str(tmp_path / "backup.key")]) == 0
    public = capsys.readouterr().out.split("public key: ")[1].split()[0]
    assert stat.S_IMODE((tmp_path / "backup.key").stat().st_mode) == 0o600
    assert main(["backup-key", str(tmp_path / "backup.key")]) == EXIT_REFUSED  # kept
    generate_key(tmp_path / "other.key")
    archive = tmp_path / "backup.tar.sealed"
    write_archive(data_dir(tmp_path), archive, encrypt_to=public)
    assert b"the olm account" not in archive.read_bytes()
    assert b"secret" not in archive.read_bytes()
    target = tmp_path / "restored"

    with pytest.raises(BackupError, match="encrypted; give its private key"):
        restore_archive(archive, target)
    with pytest.raises(BackupError, match=r"cannot be decrypted with .*other\.key"):
        restore_archive(archive, target, key=tmp_path / "other.key")
    assert main(["restore", str(archive), str(target), "--key",
                 str(tmp_path / "other.key")]) == EXIT_REFUSED
    assert "nothing was changed" in capsys.readouterr().err
    assert not target.exists()

    assert main(["restore", str(archive), str(target), "--key",
                 str(tmp_path / "backup.key")]) == 0
    assert json.loads((target / "credentials.json").read_text()) == CREDENTIALS
