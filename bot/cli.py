"""The `liaison` command line: run the bot, check a config, reset identity, back up,
verify the audit log, export cases and the audit log, list or leave the bot's rooms, show
response-time figures and versions, run the demo. Every command explains itself with
`--help`; docs/cli.md has them all.

Exit codes:
  0  success
  1  runtime failure (no database yet, a database older than this Liaison for
     `stats`, a failed schema upgrade)
  2  usage or configuration error (unknown command or option, bad period, unknown
     post, a config file that does not validate)
  3  refused: an identity or device conflict, a crypto store the pickle key cannot
     open, the metrics port in use, or a database written by a newer Liaison (the
     operator must resolve it; nothing was changed)
  4  the audit log does not verify (`liaison audit verify` names the first broken entry)
  130  interrupted (Ctrl-C): what it was doing is not done
"""

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

from bot.config import Config, ConfigError, load_config
from bot.oversight import parse_since
from storage.db import BACKUP_DIR, MigrationError, SchemaTooNewError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_REFUSED = 3
EXIT_AUDIT_BROKEN = 4
EXIT_INTERRUPTED = 130


def _load(path: Path) -> Config:
    config = load_config(path)
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from bot.app import run_until_signalled
    from bot.crosssigning import IdentityConflict
    from bot.logs import setup_logging
    from bot.session import StartupError

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
    from commands.texts import text

    print(f"{args.config}: OK — {text('count.posts', count=len(config.posts))}, "
          f"{text('count.groups', count=len(config.groups))}, "
          f"bot {config.bot.user_id} on {config.homeserver.url}")
    return EXIT_OK


def cmd_reset_identity(args: argparse.Namespace) -> int:
    from bot.app import CROSS_SIGNING_FILE, connect
    from bot.crosssigning import reset_identity

    config = _load(args.config)
    if config.bot.password is None:
        print("reset-identity needs bot.password: the homeserver asks for it", file=sys.stderr)
        return EXIT_CONFIG
    if not args.yes:
        print(
            "This replaces the bot's cross-signing identity. Every user's client will show\n"
            "that the bot's identity changed; users who had verified the bot must verify it\n"
            "again, and until then their clients may refuse to send it keys.\n"
            "Run again with --yes to proceed.",
            file=sys.stderr,
        )
        return EXIT_REFUSED

    from bot.app import DATABASE_FILE
    from storage.db import require_current_schema

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

    from bot.oversight import record_identity_reset

    master = asyncio.run(reset())
    print(f"new cross-signing master key: {master}")
    asyncio.run(record_identity_reset(config.data_dir / DATABASE_FILE, master))
    return EXIT_OK


def cmd_recover_device(args: argparse.Namespace) -> int:
    from bot.app import CROSS_SIGNING_FILE, DATABASE_FILE, session_settings
    from bot.crosssigning import IdentityConflict
    from bot.recovery import Recovery, recover_device
    from bot.session import StartupError
    from storage.db import Database, require_current_schema

    config = _load(args.config)
    if config.bot.password is None:
        print("recover-device needs bot.password: it logs in as a new device and deletes "
              "the old one", file=sys.stderr)
        return EXIT_CONFIG
    if not args.yes:
        print(
            "Stop the bot first. This moves the current device's credentials and crypto\n"
            "store aside, logs the bot in as a new device signed with its own cross-signing\n"
            "identity, and deletes the old device. Officers see no identity change; messages\n"
            "they sent to the old device that the bot has not read stay unread.\n"
            "Run again with --yes to proceed.", file=sys.stderr)
        return EXIT_REFUSED
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
        print(f"liaison: recover-device refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"new device: {done.new_device} (signed with the bot's cross-signing identity)")
    if done.old_device is not None:
        state = "deleted" if done.old_device_deleted else "NOT deleted"
        print(f"old device: {done.old_device} ({state}); its files are in {done.retired_to}")
    print(f"outbox: {done.already_sent} pending messages had been sent by the old device "
          f"(marked sent); {done.still_pending} will be sent by the new device")
    if done.delete_instructions:
        print(done.delete_instructions, file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    """One archive of the data directory: online copies of the database and the crypto
    store, credentials, cross-signing seeds, a manifest. Safe while the bot runs; needs no
    secrets and never creates, migrates or changes the database."""
    from bot.backup import BackupError, backup

    config = _offline_config(args.config)
    encrypt_to = args.encrypt_to or config.backups.encrypt_to
    try:
        manifest = asyncio.run(backup(config.data_dir, args.target, encrypt_to=encrypt_to))
    except BackupError as exc:
        print(f"liaison: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    sealed = ("encrypted to the backup key" if encrypt_to else
              "NOT encrypted: it holds the access token and the cross-signing seeds, so keep "
              "it encrypted (--encrypt-to)")
    print(f"backed up to {args.target}: database schema {manifest.schema}, device "
          f"{manifest.device_id}, {len(manifest.members)} files (checked after writing); "
          f"{sealed}. Keep the pickle key apart from it.")
    return EXIT_OK


def cmd_backup_key(args: argparse.Namespace) -> int:
    from bot.backup import generate_key

    os.umask(0o077)
    try:
        public = generate_key(args.private_key)
    except FileExistsError:
        print(f"liaison: {args.private_key} exists; a key is never overwritten",
              file=sys.stderr)
        return EXIT_REFUSED
    print(f"private key written to {args.private_key} (0600): keep it off the bot's host; "
          f"without it an encrypted backup cannot be restored.\npublic key: {public}\n"
          f"(liaison backup --encrypt-to {public} FILE, or backups.encrypt_to)")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from bot.backup import BackupError, restore

    os.umask(0o077)
    try:
        manifest = asyncio.run(restore(args.archive, args.data_dir, key=args.key))
    except BackupError as exc:
        print(f"liaison: restore refused: {exc}; nothing was changed", file=sys.stderr)
        return EXIT_REFUSED
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
    from bot.app import DATABASE_FILE

    return config.data_dir / DATABASE_FILE


def _database(path: Path) -> Path:
    """The database of the config at `path`; the record commands need no secrets."""
    return _database_of(_offline_config(path))


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from bot.oversight import NoAuditLog, describe, verify_chain

    try:
        check = asyncio.run(verify_chain(_database(args.config), anchor=args.anchor))
    except (FileNotFoundError, NoAuditLog) as exc:
        print(f"liaison: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(describe(check))
    return EXIT_OK if check.ok else EXIT_AUDIT_BROKEN


def cmd_export(args: argparse.Namespace) -> int:
    from bot.oversight import NoAuditLog, export_records

    since_ms = None if args.since is None else int(args.since.timestamp() * 1000)
    try:
        count = asyncio.run(export_records(_database(args.config), cases=args.cases,
                                           as_csv=args.format == "csv", since_ms=since_ms,
                                           output=args.output))
    except (FileNotFoundError, NoAuditLog) as exc:
        print(f"liaison: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.output is not None:
        print(f"{count} {'cases' if args.cases else 'audit entries'} written to "
              f"{args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_rooms(args: argparse.Namespace) -> int:
    """List the bot's rooms and what each stands for, or leave one."""
    from bot.rooms import RoomsError, describe, joined_rooms, leave_room

    config = _offline_config(args.config)
    try:
        if args.rooms_command == "leave":
            asyncio.run(leave_room(config, args.room))
            print(f"left {args.room}")
            return EXIT_OK
        for room in asyncio.run(joined_rooms(config)):
            print(f"{room.room_id}\t{describe(room.audience)}\t{room.members} members")
    except RoomsError as exc:
        print(f"liaison: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def report_period(value: str) -> tuple[str, timedelta]:
    """`--period`: a duration like `!report`'s (`7d`, `30d`, `12h`), at most a year."""
    from commands.durations import format_duration, parse_duration
    from commands.report import MAX_REPORT_DAYS

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
    from bot.stats import SchemaTooOld, read_stats, stats_json, stats_table

    config = _offline_config(args.config)
    known = [post.id for post in config.posts]
    wanted = list(dict.fromkeys(post.upper() for post in args.post)) if args.post else known
    for post in wanted:
        if post not in known:
            print(_unknown_post(post, known), file=sys.stderr)
            return EXIT_CONFIG
    period, length = args.period
    until_ms = int(datetime.now(UTC).timestamp() * 1000)
    since_ms = until_ms - int(length.total_seconds() * 1000)
    try:
        stats = asyncio.run(read_stats(_database_of(config), wanted,
                                       policies=config.chasing.policies, period=period,
                                       since_ms=since_ms, until_ms=until_ms))
    except (FileNotFoundError, SchemaTooOld) as exc:
        print(f"liaison: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    sys.stdout.write(stats_json(stats) if args.format == "json" else stats_table(stats))
    return EXIT_OK


def _installed(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def cmd_version(args: argparse.Namespace) -> int:
    from storage.db import latest_version, load_migrations, stored_schema_version

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
        print(DEMO_NEEDS_CHECKOUT, file=sys.stderr)
        return EXIT_FAILURE

    workdir = Path(args.workdir)
    try:
        return asyncio.run(run_demo(workdir))
    except (AssertionError, RuntimeError, TimeoutError, OSError) as exc:
        print(f"\nliaison demo failed: {exc}\nLogs: {workdir}/bot/bot.log, "
              f"{workdir}/synapse/homeserver.log", file=sys.stderr)
        return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liaison", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"liaison {_installed('liaison')}",
                        help="print Liaison's version and exit (`liaison version`: more)")
    sub = parser.add_subparsers(title="commands", dest="command", required=True,
                                metavar="COMMAND")

    def command(name: str, summary: str, details: str = "",
                parent: argparse._SubParsersAction[argparse.ArgumentParser] = sub
                ) -> argparse.ArgumentParser:
        """A subcommand: `summary` in `liaison --help`, both in its own `--help`."""
        description = summary[0].upper() + summary[1:] + "." + (f"\n\n{details}" if details
                                                               else "")
        return parent.add_parser(name, help=summary, description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", type=Path, default=Path("config.yaml"),
                       help="configuration file (default: ./config.yaml)")

    run = command("run", "run the bot until stopped",
                  "Stops cleanly on SIGTERM or SIGINT and never logs the device out. Exits 3\n"
                  "when start-up is refused: an identity or device conflict, or a database\n"
                  "written by a newer Liaison. An older database is first copied to\n"
                  "DATA_DIR/backups/, then upgraded.")
    with_config(run)
    run.set_defaults(func=cmd_run)

    check = command("check-config", "validate a configuration file and its secrets",
                    "Prints a one-line summary, or every problem with its field and line\n"
                    "(exit 2).")
    with_config(check)
    check.add_argument("file", nargs="?", type=Path, metavar="FILE",
                       help="the configuration file, instead of -c")
    check.set_defaults(func=cmd_check_config)

    reset = command("reset-identity",
                    "replace the bot's cross-signing identity (needs the password)",
                    "Every user's client will show that the bot's identity changed. Without\n"
                    "--yes it only explains this and exits 3.")
    with_config(reset)
    reset.add_argument("--yes", action="store_true", help="really do it")
    reset.set_defaults(func=cmd_reset_identity)

    recover = command(
        "recover-device",
        "become a new device under the same identity, retiring the old one (needs the "
        "password)",
        "For a crypto store that is stale (restored from an older copy) or lost, with\n"
        "cross-signing.json intact. Stop the bot first. Pending outbox messages the old\n"
        "device already sent are marked sent, never sent twice. Without --yes it only\n"
        "explains and exits 3; exits 3 too when the old device could not be deleted\n"
        "(the request to make is printed).")
    with_config(recover)
    recover.add_argument("--yes", action="store_true", help="really do it")
    recover.set_defaults(func=cmd_recover_device)

    backup = command(
        "backup", "one archive of the data directory to FILE (0600)",
        "Online copies (SQLite's backup API) of the database and the crypto store, the\n"
        "device credentials, the cross-signing seeds and a manifest (versions, schema,\n"
        "device, SHA-256 of each file). Safe while the bot runs; needs no secrets. The\n"
        "archive is read back and checked before it replaces FILE.")
    with_config(backup)
    backup.add_argument("target", type=Path, help="where to write the archive")
    backup.add_argument("--encrypt-to", metavar="PUBLIC_KEY",
                        help="seal the archive to this key from `liaison backup-key` "
                             "(default: backups.encrypt_to)")
    backup.set_defaults(func=cmd_backup)

    backup_key = command(
        "backup-key", "make a key pair for encrypted backups",
        "Writes the private key to FILE (0600; never over an existing file) and prints the\n"
        "public key for `backup --encrypt-to` or `backups.encrypt_to`. Keep the private key\n"
        "off the bot's host: `restore --key FILE` needs it.")
    backup_key.add_argument("private_key", type=Path, metavar="FILE",
                            help="where to write the private key")
    backup_key.set_defaults(func=cmd_backup_key)

    restore = command(
        "restore", "unpack a backup archive into a new data directory",
        "Checks the whole archive first (every file against the manifest, a schema this\n"
        "Liaison runs) and changes nothing when it does not check out (exit 3). Then\n"
        "run recover-device: the bot will not start on a restored crypto store.")
    restore.add_argument("archive", type=Path, help="the archive `liaison backup` wrote")
    restore.add_argument("data_dir", type=Path, help="the data directory to create")
    restore.add_argument("--key", type=Path, metavar="FILE",
                         help="the private key of an encrypted archive (`backup-key`)")
    restore.set_defaults(func=cmd_restore)

    audit = command("audit", "the tamper-evident audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = command(
        "verify", "recompute the hash chain; name the first broken entry (exit 4)",
        "Read-only, safe while the bot runs, needs no secrets. Prints the number of\n"
        "entries and the last entry's hash; keep that hash elsewhere and pass it as\n"
        "--anchor later.", parent=audit_sub)
    with_config(verify)
    verify.add_argument("--anchor", metavar="HASH",
                        help="also require the entry with this hash (printed by an earlier "
                             "verify and kept elsewhere): shows entries cut off the end")
    verify.set_defaults(func=cmd_audit_verify)

    export = command("export", "write cases or the audit log as JSON or CSV",
                     "Read-only apart from recording the export itself on the audit log.")
    with_config(export)
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--cases", action="store_true",
                       help="cases with their deliveries and timeline")
    which.add_argument("--audit", action="store_true", help="the audit log")
    export.add_argument("--format", choices=("json", "csv"), default="json",
                        help="json (default): the full record; csv: one row per delivery "
                             "or entry, without case content")
    export.add_argument("--since", type=parse_since, metavar="DATE",
                        help="only cases created, or entries made, since then "
                             "(2026-03-01 is midnight UTC; or 2026-03-01T18:00+05:00)")
    export.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write to FILE (mode 0600) instead of standard output")
    export.set_defaults(func=cmd_export)

    stats = command(
        "stats", "response times per post: the figures of !report",
        "Per post: cases sent and received, acknowledged (median and 90th percentile\n"
        "time to acknowledge), requests answered (median and 90th percentile time to\n"
        "answer), overdue now, escalations. Reads a snapshot of the database, safe while\n"
        "the bot runs; needs no secrets. Exits 1 when there is no database, 2 for a post\n"
        "that is not in the configuration.")
    with_config(stats)
    stats.add_argument("--period", type=report_period, default="7d",
                       metavar="PERIOD", help="how far back: 7d (default), 30d, 12h, …")
    stats.add_argument("--post", action="extend", nargs="+", metavar="ID", default=[],
                       help="only these posts (default: every configured post)")
    stats.add_argument("--format", choices=("text", "json"), default="text",
                       help="text (default): an aligned table; json: every figure, times "
                            "in milliseconds")
    stats.set_defaults(func=cmd_stats)

    rooms = command(
        "rooms", "the rooms the bot is in and what each stands for; leave one",
        "Without a subcommand: one line per room: its id, what it stands for (a post, a\n"
        "supervisors' room, a direct room with a configured person, the admins' room, or\n"
        "unknown: the bot answers there once and then stays silent) and its members.\n"
        "Uses the bot's access token from the data directory; safe while the bot runs.")
    with_config(rooms)
    rooms.set_defaults(func=cmd_rooms, rooms_command="list")
    rooms_sub = rooms.add_subparsers(dest="rooms_command", metavar="COMMAND")
    leave = command("leave", "make the bot leave ROOM", parent=rooms_sub)
    leave.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS,
                       help="configuration file (default: ./config.yaml)")
    leave.add_argument("room", metavar="ROOM", help="room id, e.g. '!abc:example.org'")
    leave.set_defaults(func=cmd_rooms)

    version = command(
        "version", "versions of Liaison, Python, matrix-nio, vodozemac and the schema",
        "The schema is the database version this build migrates to. With -c, also the\n"
        "schema of that configuration's database; exits 3 if it is newer than this\n"
        "build (it would refuse to run on it).")
    version.add_argument("-c", "--config", type=Path,
                         help="also show the schema of this configuration's database")
    version.set_defaults(func=cmd_version)

    demo = command("demo", "local homeserver, bot and scripted officers")
    demo.add_argument("--workdir", default=".demo", help="where the demo keeps its state")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --help exits 0, a usage error 2
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except SchemaTooNewError as exc:
        print(f"liaison: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except MigrationError as exc:
        print(f"liaison: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:  # interrupted: whatever it was doing is not done
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
