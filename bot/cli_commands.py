"""What each `liaison` subcommand does (`bot.cli` builds the parser and documents the exit
codes): each takes the parsed arguments and returns its exit code."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import platform
import sys
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

from liaison.config import Config, load_config
from liaison.storage.db import BACKUP_DIR, SchemaTooNewError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_REFUSED = 3
EXIT_AUDIT_BROKEN = 4
EXIT_INTERRUPTED = 130


def _stop(code: int, message: object) -> int:
    """Tell the operator on standard error why the command stops here; exit with `code`."""
    print(message, file=sys.stderr)
    return code


def _load(path: Path) -> Config:
    config = load_config(path)
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from liaison.bot.app import run_until_signalled
    from liaison.bot.crosssigning import IdentityConflict
    from liaison.bot.logs import setup_logging
    from liaison.bot.session import StartupError

    config = _load(args.config)
    # Everything the bot writes (crypto store, database, ready file) is for its own user
    # only, whatever umask it was started with.
    os.umask(0o077)
    setup_logging(config.logging.level, config.logging.format)
    try:
        return run_until_signalled(config)
    except (StartupError, IdentityConflict, SchemaTooNewError) as exc:
        print(f"liaison: start-up refused: {exc}", file=sys.stderr)
        backups = config.data_dir / BACKUP_DIR
        if isinstance(exc, SchemaTooNewError) and backups.is_dir():
            print(f"The copies taken before each upgrade are in {backups}.", file=sys.stderr)
        return EXIT_REFUSED


def cmd_check_config(args: argparse.Namespace) -> int:
    if args.file is not None:  # `liaison check-config FILE`, as operators tend to type it
        args.config = args.file
    config = _load(args.config)  # also reads every secret; a missing one names its line
    for gap in config.name_gaps():
        print(f"warning: {gap}", file=sys.stderr)
    from liaison.commands.texts import text

    print(f"{args.config}: OK — {text('count.posts', count=len(config.posts))}, "
          f"{text('count.groups', count=len(config.groups))}, "
          f"bot {config.bot.user_id} on {config.homeserver.url}")
    return EXIT_OK


def cmd_reset_identity(args: argparse.Namespace) -> int:
    from liaison.bot.app import CROSS_SIGNING_FILE, connect
    from liaison.bot.crosssigning import reset_identity

    config = _load(args.config)
    if config.bot.password is None:
        return _stop(EXIT_CONFIG, "reset-identity needs bot.password: the homeserver asks for it")
    if not args.yes:
        return _stop(
            EXIT_REFUSED,
            "This replaces the bot's cross-signing identity. Every user's client will show\n"
            "that the bot's identity changed; users who had verified the bot must verify it\n"
            "again, and until then their clients may refuse to send it keys.\n"
            "Run again with --yes to proceed.")

    from liaison.bot.app import DATABASE_FILE
    from liaison.storage.db import require_current_schema

    database = config.data_dir / DATABASE_FILE
    if database.is_file():  # the reset is recorded there: never by migrating behind the bot
        asyncio.run(require_current_schema(database))

    async def reset() -> str:
        client = await connect(config, attempts=3)
        try:
            assert config.bot.password is not None
            return await reset_identity(client, config.data_dir / CROSS_SIGNING_FILE,
                                        config.bot.password.resolve())
        finally:
            await client.close()

    from liaison.bot.oversight import record_identity_reset

    master = asyncio.run(reset())
    print(f"new cross-signing master key: {master}")
    asyncio.run(record_identity_reset(config.data_dir / DATABASE_FILE, master))
    return EXIT_OK


def cmd_identity(args: argparse.Namespace) -> int:
    """Print the bot's cross-signing master key, for partners to pin (`links:`); create the
    identity's seeds in the data directory when there are none yet. Offline: the running
    bot publishes the identity at its next start, as it does a fresh one."""
    from liaison.bot.app import CROSS_SIGNING_FILE
    from liaison.bot.crosssigning import CrossSigningSeeds, SigningKey, load_seeds, save_seeds

    config = _offline_config(args.config)
    path = config.data_dir / CROSS_SIGNING_FILE
    seeds = load_seeds(path)
    if seeds is None:
        os.umask(0o077)
        seeds = CrossSigningSeeds.generate()
        save_seeds(path, seeds)
        print(f"created a cross-signing identity in {path}; the bot publishes it at its "
              "next start", file=sys.stderr)
    print(SigningKey(seeds.master).public)
    return EXIT_OK


def cmd_recover_device(args: argparse.Namespace) -> int:
    from liaison.bot.app import CROSS_SIGNING_FILE, DATABASE_FILE, session_settings
    from liaison.bot.crosssigning import IdentityConflict
    from liaison.bot.recovery import Recovery, recover_device
    from liaison.bot.session import StartupError
    from liaison.storage.db import Database, require_current_schema

    config = _load(args.config)
    if config.bot.password is None:
        return _stop(EXIT_CONFIG, "recover-device needs bot.password: it logs in as a new "
                                  "device and deletes the old one")
    if not args.yes:
        return _stop(
            EXIT_REFUSED,
            "Stop the bot first. This moves the current device's credentials and crypto\n"
            "store aside, logs the bot in as a new device signed with its own cross-signing\n"
            "identity, and deletes the old device. Officers see no identity change; messages\n"
            "they sent to the old device that the bot has not read stay unread.\n"
            "Run again with --yes to proceed.")
    os.umask(0o077)
    database = config.data_dir / DATABASE_FILE
    if database.is_file():
        asyncio.run(require_current_schema(database))

    async def recover() -> Recovery:
        db = await Database.open(database)
        try:
            return await recover_device(
                session_settings(config), db, config.data_dir / CROSS_SIGNING_FILE,
                now_ms=int(datetime.now(UTC).timestamp() * 1000))
        finally:
            await db.close()

    try:
        done = asyncio.run(recover())
    except (StartupError, IdentityConflict) as exc:
        return _stop(EXIT_REFUSED, f"liaison: recover-device refused: {exc}")
    print(f"new device: {done.new_device} (signed with the bot's cross-signing identity)")
    if done.old_device is not None:
        state = "deleted" if done.old_device_deleted else "NOT deleted"
        print(f"old device: {done.old_device} ({state}); its files are in {done.retired_to}")
    print(f"outbox: {done.already_sent} pending messages had been sent by the old device "
          f"(marked sent); {done.still_pending} will be sent by the new device")
    if done.delete_instructions:
        return _stop(EXIT_REFUSED, done.delete_instructions)
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    """One archive of the data directory: online copies of the database and the crypto
    store, credentials, cross-signing seeds, a manifest. Safe while the bot runs; needs no
    secrets and never creates, migrates or changes the database."""
    from liaison.bot.backup import BackupError, backup

    config = _offline_config(args.config)
    encrypt_to = args.encrypt_to or config.backups.encrypt_to
    try:
        manifest = asyncio.run(backup(config.data_dir, args.target, encrypt_to=encrypt_to))
    except BackupError as exc:
        return _stop(EXIT_FAILURE, f"liaison: {exc}")
    sealed = ("encrypted to the backup key" if encrypt_to else
              "NOT encrypted: it holds the access token and the cross-signing seeds, so keep "
              "it encrypted (--encrypt-to)")
    print(f"backed up to {args.target}: database schema {manifest.schema}, device "
          f"{manifest.device_id}, {len(manifest.members)} files (checked after writing); "
          f"{sealed}. Keep the pickle key apart from it.")
    return EXIT_OK


def cmd_backup_key(args: argparse.Namespace) -> int:
    from liaison.bot.backup import generate_key

    os.umask(0o077)
    try:
        public = generate_key(args.private_key)
    except FileExistsError:
        return _stop(EXIT_REFUSED,
                     f"liaison: {args.private_key} exists; a key is never overwritten")
    print(f"private key written to {args.private_key} (0600): keep it off the bot's host; "
          f"without it an encrypted backup cannot be restored.\npublic key: {public}\n"
          f"(liaison backup --encrypt-to {public} FILE, or backups.encrypt_to)")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from liaison.bot.backup import BackupError, restore

    os.umask(0o077)
    try:
        manifest = asyncio.run(restore(args.archive, args.data_dir, key=args.key))
    except BackupError as exc:
        return _stop(EXIT_REFUSED, f"liaison: restore refused: {exc}; nothing was changed")
    print(f"restored {args.archive} (created {manifest.body.get('created_at')}, device "
          f"{manifest.device_id}, schema {manifest.schema}) into {args.data_dir}.\n"
          f"Next, with data_dir: {args.data_dir} in the configuration and the bot stopped: "
          "liaison recover-device --yes -c CONFIG. The bot then becomes a new device under "
          "the same identity and deletes the old one; it will not start before that.")
    return EXIT_OK


def _offline_config(path: Path) -> Config:
    """The config at `path` for the commands that only read the record: no secrets."""
    config = load_config(path, check_secrets=False)
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return config


def _database_of(config: Config) -> Path:
    from liaison.bot.app import DATABASE_FILE

    return config.data_dir / DATABASE_FILE


def _database(path: Path) -> Path:
    """The database of the config at `path`; the record commands need no secrets."""
    return _database_of(_offline_config(path))


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from liaison.bot.oversight import NoAuditLog, describe, verify_chain

    try:
        check = asyncio.run(verify_chain(_database(args.config), anchor=args.anchor))
    except (FileNotFoundError, NoAuditLog) as exc:
        return _stop(EXIT_FAILURE, f"liaison: {exc}")
    print(describe(check))
    return EXIT_OK if check.ok else EXIT_AUDIT_BROKEN


def cmd_export(args: argparse.Namespace) -> int:
    from liaison.bot.oversight import NoAuditLog, export_records

    since_ms = None if args.since is None else int(args.since.timestamp() * 1000)
    try:
        count = asyncio.run(export_records(_database(args.config), cases=args.cases,
                                           as_csv=args.format == "csv", since_ms=since_ms,
                                           output=args.output,
                                           include_red=args.include_red))
    except (FileNotFoundError, NoAuditLog) as exc:
        return _stop(EXIT_FAILURE, f"liaison: {exc}")
    if args.output is not None:
        print(f"{count} {'cases' if args.cases else 'audit entries'} written to "
              f"{args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_rooms(args: argparse.Namespace) -> int:
    """List the bot's rooms and what each stands for, or leave one."""
    from liaison.bot.rooms import RoomsError, describe, joined_rooms, leave_room

    config = _offline_config(args.config)
    try:
        if args.rooms_command == "leave":
            asyncio.run(leave_room(config, args.room))
            print(f"left {args.room}")
            return EXIT_OK
        for room in asyncio.run(joined_rooms(config)):
            print(f"{room.room_id}\t{describe(room.audience)}\t{room.members} members")
    except RoomsError as exc:
        return _stop(EXIT_FAILURE, f"liaison: {exc}")
    return EXIT_OK


def cmd_link(args: argparse.Namespace) -> int:
    """`link check`: each link's room, partner identity, directories and queue (exit 1
    when something is wrong); `link export NAME`: the exchange with one partner."""
    from liaison.bot.link_tools import describe, export_exchange, gather_facts, problems
    from liaison.bot.rooms import RoomsError

    config = _offline_config(args.config)
    names = [link.name for link in config.links]
    if not names:
        return _stop(EXIT_CONFIG, f"liaison: {args.config} configures no links")
    if args.link_command == "export":
        if args.name not in names:
            return _stop(EXIT_CONFIG, f"liaison: no link {args.name} in the configuration "
                                      f"(links: {', '.join(names)})")
        try:
            lines = asyncio.run(export_exchange(_database_of(config), args.name))
        except FileNotFoundError as exc:
            return _stop(EXIT_FAILURE, f"liaison: {exc}")
        text = "".join(f"{line}\n" for line in lines)
        if args.out is None:
            sys.stdout.write(text)
        else:
            from liaison.bot.files import write_private_file

            write_private_file(args.out, text)
            print(f"{len(lines)} protocol events of link {args.name} written to {args.out}",
                  file=sys.stderr)
        return EXIT_OK
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    try:
        facts = asyncio.run(gather_facts(config, _database_of(config), now_ms=now_ms))
    except (RoomsError, FileNotFoundError, OSError) as exc:
        return _stop(EXIT_FAILURE, f"liaison: {exc}")
    stuck_after_ms = int(config.metrics.outbox_stuck_after.total_seconds() * 1000)
    wrong = 0
    for link in config.links:
        found = problems(link, facts[link.name], now_ms=now_ms, stuck_after_ms=stuck_after_ms)
        print("\n".join(describe(link, facts[link.name], now_ms=now_ms)))
        print("  OK" if not found else "\n".join(f"  PROBLEM: {problem}" for problem in found))
        wrong += bool(found)
    return EXIT_FAILURE if wrong else EXIT_OK


def report_period(value: str) -> tuple[str, timedelta]:
    """`--period`: a duration like `!report`'s (`7d`, `30d`, `12h`), at most a year."""
    from liaison.commands.durations import format_duration, parse_duration
    from liaison.commands.report import MAX_REPORT_DAYS

    try:
        length = parse_duration(value)
    except ValueError:
        length = None
    if length is None or length > timedelta(days=MAX_REPORT_DAYS):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a period; write it like 7d or 30d (at most {MAX_REPORT_DAYS}d)")
    return format_duration(length), length


def _unknown_post(post: str, known: list[str]) -> str:
    close = difflib.get_close_matches(post, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return (f"liaison: no post {post} in the configuration{hint} "
            f"(posts: {', '.join(known) or 'none'})")


def cmd_stats(args: argparse.Namespace) -> int:
    from liaison.bot.stats import SchemaTooOld, read_stats, stats_json, stats_table

    config = _offline_config(args.config)
    known = [post.id for post in config.posts]
    if config.links:  # the partners' posts too: what crossed a link is counted for them
        from liaison.bot.link_tools import partner_post_ids

        known += [post for post in asyncio.run(partner_post_ids(config, _database_of(config)))
                  if post not in known]
    wanted = list(dict.fromkeys(post.upper() for post in args.post)) if args.post else known
    for post in wanted:
        if post not in known:
            return _stop(EXIT_CONFIG, _unknown_post(post, known))
    period, length = args.period
    until_ms = int(datetime.now(UTC).timestamp() * 1000)
    since_ms = until_ms - int(length.total_seconds() * 1000)
    try:
        stats = asyncio.run(read_stats(_database_of(config), wanted,
                                       policies=config.chasing.policies, period=period,
                                       since_ms=since_ms, until_ms=until_ms))
    except (FileNotFoundError, SchemaTooOld) as exc:
        return _stop(EXIT_FAILURE, f"liaison: {exc}")
    sys.stdout.write(stats_json(stats) if args.format == "json" else stats_table(stats))
    return EXIT_OK


def _installed(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def cmd_version(args: argparse.Namespace) -> int:
    from liaison.storage.db import latest_version, load_migrations, stored_schema_version

    migrations = load_migrations()
    latest = latest_version(migrations)
    newest = migrations[-1].name if migrations else "none"
    print(f"liaison {_installed('liaison')}")
    print(f"Python {platform.python_version()}")
    print(f"matrix-nio {_installed('matrix-nio')}")
    print(f"vodozemac {_installed('vodozemac')}")
    print(f"database schema {latest} (migrations up to {newest})")
    if args.config is None:
        return EXIT_OK
    database = _database(args.config)
    if not database.is_file():
        print(f"no database yet at {database}")
        return EXIT_OK
    found = asyncio.run(stored_schema_version(database))
    if found > latest:
        print(f"database at {database}: schema {found}, newer than this Liaison: "
              "it will not run on it")
        return EXIT_REFUSED
    state = ("up to date" if found == latest else
             f"older: liaison run backs it up to {database.parent / BACKUP_DIR} "
             f"and upgrades it to {latest}")
    print(f"database at {database}: schema {found} ({state})")
    return EXIT_OK


DEMO_NEEDS_CHECKOUT = (
    "liaison demo runs from a checkout of Liaison's repository, not from an installed\n"
    "package: it starts a local Synapse and scripted officers, which the package does not\n"
    "ship. In a clone, run `make demo` (Python 3.11 or newer and make are all it needs)."
)


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from devkit.demo import run_demo
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "devkit":
            raise
        return _stop(EXIT_FAILURE, DEMO_NEEDS_CHECKOUT)

    workdir = Path(args.workdir)
    try:
        return asyncio.run(run_demo(workdir))
    except (AssertionError, RuntimeError, TimeoutError, OSError) as exc:
        return _stop(EXIT_FAILURE, f"\nliaison demo failed: {exc}\nLogs: {workdir}/bot/bot.log, "
                                   f"{workdir}/synapse/homeserver.log")
