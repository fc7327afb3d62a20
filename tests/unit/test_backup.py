"""`liaison backup` and `liaison restore`: one checked archive; a damaged, truncated or too
new archive is refused before anything is changed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
from pathlib import Path

import pytest

from bot.backup import RESTORED_MARK, BackupError, read_archive, restore_archive, write_archive
from bot.cli import EXIT_REFUSED, main
from storage.db import Database, latest_version, load_migrations

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
