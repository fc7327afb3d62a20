"""One archive of everything the bot is: `liaison backup FILE` and `liaison restore`.

The archive (a tar file, mode 0600) holds the database and matrix-nio's crypto store,
each copied with SQLite's online backup (consistent while the bot runs), the device
credentials, the cross-signing seeds, and `manifest.json`: versions, the database
schema, user and device, when, and the SHA-256 and size of every other member. Each
archive is read back and checked after writing.

Restoring checks the whole archive first — every member present and matching its
digest, nothing else in it, a schema this Liaison can run — in a directory beside the
target, and only then moves it into place: a damaged, truncated or too new archive
changes nothing. The crypto store in a backup is older than the device it belongs to
whenever the bot ran after the backup, so the restored data directory is marked: the
bot will not start on it until `liaison recover-device` made it a new device under the
same identity (`bot.recovery`), which removes the mark.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import logging
import os
import shutil
import sqlite3
import tarfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from liaison.bot.clock import Clock
from liaison.bot.session import CREDENTIALS_FILE, CRYPTO_DIR
from liaison.config import BackupsConfig
from liaison.storage.db import latest_version, load_migrations, schema_of_file, sqlite_online_copy

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1
DATABASE_FILE = "liaison.db"
CROSS_SIGNING_FILE = "cross-signing.json"
RESTORED_MARK = "restored-needs-new-device"
"""In a restored data directory until `liaison recover-device` ran; `liaison run`
refuses to start while it is there."""


SEALED_MAGIC = b"LIAISON-SEALED-ARCHIVE-1\n"
"""The first bytes of an archive encrypted to an operator's key (libsodium's sealed box,
X25519 + XSalsa20-Poly1305, through PyNaCl): only the private key's holder can open it,
and any change to it makes opening fail."""


class BackupError(Exception):
    """The archive cannot be written, or cannot be restored; nothing was changed."""


def generate_key(path: Path) -> str:
    """A new key pair for encrypted archives: the private key into `path` (0600, never
    overwritten); the public key, to give `backup --encrypt-to` or `backups.encrypt_to`."""
    key = PrivateKey.generate()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as stream:
        stream.write(base64.b64encode(bytes(key)).decode("ascii") + "\n")
    return base64.b64encode(bytes(key.public_key)).decode("ascii")


def _key_bytes(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise BackupError(f"{what} is not a key from `liaison backup-key` (32 bytes, base64)")
    return raw


def public_key(text: str) -> PublicKey:
    return PublicKey(_key_bytes(text, "the public key"))


def _open_sealed(data: bytes, key_file: Path | None, archive_path: Path) -> bytes:
    if key_file is None:
        raise BackupError(f"{archive_path} is encrypted; give its private key with --key")
    try:
        key = PrivateKey(_key_bytes(key_file.read_text(encoding="ascii"), str(key_file)))
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupError(f"cannot read the private key {key_file}: {exc}") from exc
    try:
        return bytes(SealedBox(key).decrypt(data[len(SEALED_MAGIC):]))
    except CryptoError as exc:
        raise BackupError(f"{archive_path} cannot be decrypted with {key_file}: the wrong "
                          "key, or the archive is damaged") from exc


@dataclass(frozen=True)
class Manifest:
    body: dict[str, Any]

    @property
    def schema(self) -> int:
        return int(self.body["schema"])

    @property
    def device_id(self) -> str | None:
        value = self.body.get("device_id")
        return value if isinstance(value, str) else None

    @property
    def members(self) -> dict[str, dict[str, Any]]:
        members: dict[str, dict[str, Any]] = self.body["members"]
        return members


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 16), b""):
            sha.update(block)
    return sha.hexdigest()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _collect(data_dir: Path, staging: Path) -> dict[str, Path]:
    """Copy what the archive holds into `staging`; archive name → staged file."""
    staged: dict[str, Path] = {}
    database = data_dir / DATABASE_FILE
    if not database.is_file():
        raise BackupError(f"there is no database at {database}")
    sqlite_online_copy(database, staging / DATABASE_FILE)
    staged[DATABASE_FILE] = staging / DATABASE_FILE
    for name in (CREDENTIALS_FILE, CROSS_SIGNING_FILE):
        if (data_dir / name).is_file():
            shutil.copyfile(data_dir / name, staging / name)
            staged[name] = staging / name
    crypto = data_dir / CRYPTO_DIR
    if crypto.is_dir():
        (staging / CRYPTO_DIR).mkdir(mode=0o700)
        for path in sorted(crypto.iterdir()):
            if not path.is_file() or path.name.endswith(("-wal", "-shm", "-journal")):
                continue
            target = staging / CRYPTO_DIR / path.name
            if path.suffix == ".db":
                sqlite_online_copy(path, target)
            else:
                shutil.copyfile(path, target)
            staged[f"{CRYPTO_DIR}/{path.name}"] = target
    return staged


def write_archive(data_dir: Path, target: Path, *, now: datetime | None = None,
                  encrypt_to: str | None = None) -> Manifest:
    """Write the archive of `data_dir` to `target` (0600, renamed into place once it was
    read back and verified; sealed to the public key `encrypt_to` when given); its
    manifest."""
    recipient = public_key(encrypt_to) if encrypt_to else None
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.staging")
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    staging.mkdir(mode=0o700)
    try:
        staged = _collect(data_dir, staging)
        credentials = {}
        if CREDENTIALS_FILE in staged:
            credentials = json.loads(staged[CREDENTIALS_FILE].read_text(encoding="utf-8"))
        manifest = Manifest({
            "format": FORMAT,
            "created_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
            "liaison": _version("liaison"), "matrix_nio": _version("matrix-nio"),
            "vodozemac": _version("vodozemac"),
            "schema": schema_of_file(staged[DATABASE_FILE]),
            "user_id": credentials.get("user_id"), "device_id": credentials.get("device_id"),
            "members": {name: {"sha256": _digest(path), "size": path.stat().st_size}
                        for name, path in sorted(staged.items())},
        })
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream, tarfile.open(fileobj=stream,
                                                                 mode="w") as archive:
            body = json.dumps(manifest.body, indent=2).encode("utf-8")
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(body), 0o600
            archive.addfile(info, io.BytesIO(body))
            for name, path in sorted(staged.items()):
                archive.add(path, arcname=name, recursive=False)
            stream.flush()
            os.fsync(stream.fileno())
        read_archive(partial, staging / "check", runnable=False)  # what restore would see
        if recipient is not None:
            sealed = SEALED_MAGIC + bytes(SealedBox(recipient).encrypt(partial.read_bytes()))
            partial.unlink()
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(sealed)
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(partial, target)
        return manifest
    except (OSError, sqlite3.Error, tarfile.TarError) as exc:
        raise BackupError(f"the backup could not be written: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)


def read_archive(archive_path: Path, into: Path, *, runnable: bool = True,
                 key: Path | None = None) -> Manifest:
    """Unpack and check the archive into the new directory `into`; BackupError naming
    what is wrong (`into` is then left for the caller to remove). `runnable`: also
    refuse a database schema this Liaison cannot run. `key`: the private key file of an
    encrypted archive."""
    try:
        data = archive_path.read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read {archive_path}: {exc}") from exc
    if data.startswith(SEALED_MAGIC):
        data = _open_sealed(data, key, archive_path)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            members = archive.getmembers()
            names = [member.name for member in members]
            if MANIFEST not in names:
                raise BackupError(f"{archive_path} is not a Liaison backup (no {MANIFEST})")
            manifest_file = archive.extractfile(MANIFEST)
            assert manifest_file is not None
            manifest = Manifest(json.loads(manifest_file.read().decode("utf-8")))
            if manifest.body.get("format") != FORMAT:
                raise BackupError(f"backup format {manifest.body.get('format')} is not "
                                  f"one this Liaison reads ({FORMAT})")
            expected = set(manifest.members)
            found = {name for name in names if name != MANIFEST}
            if found != expected:
                raise BackupError(f"the archive does not match its manifest (missing: "
                                  f"{sorted(expected - found)}, unexpected: "
                                  f"{sorted(found - expected)})")
            into.mkdir(mode=0o700)
            (into / CRYPTO_DIR).mkdir(mode=0o700)
            for member in members:
                if member.name == MANIFEST:
                    continue
                path = PurePosixPath(member.name)
                if not member.isfile() or path.is_absolute() or ".." in path.parts \
                        or len(path.parts) > 2 or (len(path.parts) == 2
                                                   and path.parts[0] != CRYPTO_DIR):
                    raise BackupError(f"unexpected member {member.name} in the archive")
                source = archive.extractfile(member)
                assert source is not None
                target = into.joinpath(*path.parts)
                descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "wb") as stream:
                    shutil.copyfileobj(source, stream)
    except (tarfile.TarError, EOFError, OSError, ValueError, KeyError) as exc:
        raise BackupError(f"{archive_path} is damaged or truncated: {exc}") from exc
    for name, expected_member in manifest.members.items():
        unpacked = into.joinpath(*PurePosixPath(name).parts)
        if unpacked.stat().st_size != expected_member["size"] \
                or _digest(unpacked) != expected_member["sha256"]:
            raise BackupError(f"{name} in {archive_path} does not match its SHA-256 in the "
                              "manifest: the archive is damaged")
    latest = latest_version(load_migrations())
    schema = schema_of_file(into / DATABASE_FILE)
    if schema != manifest.schema:
        raise BackupError("the database in the archive is not the one its manifest names")
    if runnable and schema > latest:
        raise BackupError(f"the backup's database schema {schema} is newer than this "
                          f"Liaison ({latest}); install the Liaison that wrote it (or newer)")
    return manifest


def restore_archive(archive_path: Path, data_dir: Path, *,
                    key: Path | None = None) -> Manifest:
    """Restore into `data_dir`, which must not exist or be empty; nothing is changed
    unless the whole archive checks out (and, encrypted, opens with `key`)."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(f"{data_dir} is not empty; restore into a new data directory "
                          "(move the old one aside first)")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    unpacked = data_dir.with_name(f".{data_dir.name}.{uuid.uuid4().hex}.restoring")
    try:
        manifest = read_archive(archive_path, unpacked, key=key)
        (unpacked / RESTORED_MARK).write_text(
            f"restored from {archive_path} (device {manifest.device_id}); run "
            "`liaison recover-device --yes` before starting\n", encoding="utf-8")
        if data_dir.exists():
            data_dir.rmdir()
        os.replace(unpacked, data_dir)
        os.chmod(data_dir, 0o700)
        return manifest
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)


async def backup(data_dir: Path, target: Path, *, encrypt_to: str | None = None) -> Manifest:
    return await asyncio.to_thread(write_archive, data_dir, target, encrypt_to=encrypt_to)


async def restore(archive_path: Path, data_dir: Path, *, key: Path | None = None) -> Manifest:
    return await asyncio.to_thread(restore_archive, archive_path, data_dir, key=key)


ARCHIVES_DIR = "archives"
"""Beside the data: where scheduled archives go unless `backups.dir` says otherwise."""
SCHEDULED_NAME = "liaison-%Y%m%dT%H%M%SZ.tar"
RETRY_AFTER_FAILURE_S = 3600.0


class ScheduledBackups:
    """The running bot's own backups (`backups.every`, `backups.keep`, `backups.dir`):
    one archive when the newest is `every` old, each checked after writing, the oldest
    beyond `keep` removed. A failed backup is logged at error level and tried again an
    hour later; it never stops the bot."""

    def __init__(self, data_dir: Path, settings: BackupsConfig, clock: Clock) -> None:
        self._data_dir = data_dir
        self._settings = settings
        self._clock = clock
        self.directory = settings.dir or data_dir / ARCHIVES_DIR

    def archives(self) -> list[Path]:
        """The scheduled archives, oldest first (their names sort by time)."""
        if not self.directory.is_dir():
            return []
        return sorted(path for path in self.directory.glob("liaison-*.tar")
                      if _stamp(path) is not None)

    def seconds_until_due(self) -> float:
        every = self._settings.every
        assert every is not None
        archives = self.archives()
        newest = _stamp(archives[-1]) if archives else None
        if newest is None:
            return 0.0
        return max(0.0, (newest + every - self._clock.now()).total_seconds())

    async def write_once(self) -> Path:
        await asyncio.to_thread(self.directory.mkdir, mode=0o700, parents=True,
                                exist_ok=True)
        target = self.directory / self._clock.now().strftime(SCHEDULED_NAME)
        manifest = await backup(self._data_dir, target, encrypt_to=self._settings.encrypt_to)
        for old in self.archives()[:-self._settings.keep]:
            old.unlink(missing_ok=True)
        log.info("backup written and checked", extra={
            "archive": str(target), "schema": manifest.schema, "device_id": manifest.device_id})
        return target

    async def run(self) -> None:
        if self._settings.every is None:
            return
        while True:
            wait = self.seconds_until_due()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            try:
                await self.write_once()
            except (BackupError, OSError) as exc:
                log.error("scheduled backup failed; will try again in an hour",
                          extra={"error": str(exc), "dir": str(self.directory)})
                await asyncio.sleep(RETRY_AFTER_FAILURE_S)


def _stamp(path: Path) -> datetime | None:
    try:
        return datetime.strptime(path.name, SCHEDULED_NAME).replace(tzinfo=UTC)
    except ValueError:
        return None
