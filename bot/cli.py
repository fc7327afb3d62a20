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
import sys
from collections.abc import Callable
from pathlib import Path

from liaison.bot.cli_commands import (
    EXIT_AUDIT_BROKEN,
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    _installed,
    cmd_audit_verify,
    cmd_backup,
    cmd_backup_key,
    cmd_check_config,
    cmd_demo,
    cmd_export,
    cmd_identity,
    cmd_link,
    cmd_recover_device,
    cmd_reset_identity,
    cmd_restore,
    cmd_rooms,
    cmd_run,
    cmd_stats,
    cmd_version,
    report_period,
)
from liaison.bot.oversight import parse_since
from liaison.config import ConfigError
from liaison.storage.db import MigrationError, SchemaTooNewError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liaison", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"liaison {_installed('liaison')}",
                        help="print Liaison's version and exit (`liaison version`: more)")
    sub = parser.add_subparsers(title="commands", dest="command", required=True,
                                metavar="COMMAND")

    def command(name: str, summary: str, details: str = "", *,
                func: Callable[[argparse.Namespace], int] | None = None, config: bool = False,
                parent: argparse._SubParsersAction[argparse.ArgumentParser] = sub
                ) -> argparse.ArgumentParser:
        """A subcommand run by `func`: `summary` in `liaison --help`, both in its own
        `--help`; with `config`, it reads the configuration file named by `-c`."""
        description = summary[0].upper() + summary[1:] + "." + (f"\n\n{details}" if details
                                                               else "")
        p = parent.add_parser(name, help=summary, description=description,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        if config:
            p.add_argument("-c", "--config", type=Path, default=Path("config.yaml"),
                           help="configuration file (default: ./config.yaml)")
        if func is not None:
            p.set_defaults(func=func)
        return p

    command("run", "run the bot until stopped",
            "Stops cleanly on SIGTERM or SIGINT and never logs the device out. Exits 3\n"
            "when start-up is refused: an identity or device conflict, or a database\n"
            "written by a newer Liaison. An older database is first copied to\n"
            "DATA_DIR/backups/, then upgraded.", func=cmd_run, config=True)

    check = command("check-config", "validate a configuration file and its secrets",
                    "Prints a one-line summary, or every problem with its field and line\n"
                    "(exit 2).", func=cmd_check_config, config=True)
    check.add_argument("file", nargs="?", type=Path, metavar="FILE",
                       help="the configuration file, instead of -c")

    command("identity", "print the bot's cross-signing master key, for partners to pin",
            "Partners put it in their links: as partner_master_key (docs/links.md). Creates\n"
            "the identity in the data directory when there is none yet; the bot publishes\n"
            "it at its next start. Needs no secrets and no homeserver.",
            func=cmd_identity, config=True)

    reset = command("reset-identity",
                    "replace the bot's cross-signing identity (needs the password)",
                    "Every user's client will show that the bot's identity changed. Without\n"
                    "--yes it only explains this and exits 3.",
                    func=cmd_reset_identity, config=True)
    reset.add_argument("--yes", action="store_true", help="really do it")

    recover = command(
        "recover-device",
        "become a new device under the same identity, retiring the old one (needs the "
        "password)",
        "For a crypto store that is stale (restored from an older copy) or lost, with\n"
        "cross-signing.json intact. Stop the bot first. Pending outbox messages the old\n"
        "device already sent are marked sent, never sent twice. Without --yes it only\n"
        "explains and exits 3; exits 3 too when the old device could not be deleted\n"
        "(the request to make is printed).", func=cmd_recover_device, config=True)
    recover.add_argument("--yes", action="store_true", help="really do it")

    backup = command(
        "backup", "one archive of the data directory to FILE (0600)",
        "Online copies (SQLite's backup API) of the database and the crypto store, the\n"
        "device credentials, the cross-signing seeds and a manifest (versions, schema,\n"
        "device, SHA-256 of each file). Safe while the bot runs; needs no secrets. The\n"
        "archive is read back and checked before it replaces FILE.", func=cmd_backup, config=True)
    backup.add_argument("target", type=Path, help="where to write the archive")
    backup.add_argument("--encrypt-to", metavar="PUBLIC_KEY",
                        help="seal the archive to this key from `liaison backup-key` "
                             "(default: backups.encrypt_to)")

    backup_key = command(
        "backup-key", "make a key pair for encrypted backups",
        "Writes the private key to FILE (0600; never over an existing file) and prints the\n"
        "public key for `backup --encrypt-to` or `backups.encrypt_to`. Keep the private key\n"
        "off the bot's host: `restore --key FILE` needs it.", func=cmd_backup_key)
    backup_key.add_argument("private_key", type=Path, metavar="FILE",
                            help="where to write the private key")

    restore = command(
        "restore", "unpack a backup archive into a new data directory",
        "Checks the whole archive first (every file against the manifest, a schema this\n"
        "Liaison runs) and changes nothing when it does not check out (exit 3). Then\n"
        "run recover-device: the bot will not start on a restored crypto store.", func=cmd_restore)
    restore.add_argument("archive", type=Path, help="the archive `liaison backup` wrote")
    restore.add_argument("data_dir", type=Path, help="the data directory to create")
    restore.add_argument("--key", type=Path, metavar="FILE",
                         help="the private key of an encrypted archive (`backup-key`)")

    audit = command("audit", "the tamper-evident audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = command(
        "verify", "recompute the hash chain; name the first broken entry (exit 4)",
        "Read-only, safe while the bot runs, needs no secrets. Prints the number of\n"
        "entries and the last entry's hash; keep that hash elsewhere and pass it as\n"
        "--anchor later.", parent=audit_sub, func=cmd_audit_verify, config=True)
    verify.add_argument("--anchor", metavar="HASH",
                        help="also require the entry with this hash (printed by an earlier "
                             "verify and kept elsewhere): shows entries cut off the end")

    export = command("export", "write cases or the audit log as JSON or CSV",
                     "Read-only apart from recording the export itself on the audit log.",
                     func=cmd_export, config=True)
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
    export.add_argument("--include-red", action="store_true",
                        help="include the content of TLP:RED cases (left out otherwise); "
                        "recorded on the audit log")

    stats = command(
        "stats", "response times per post: the figures of !report",
        "Per post: cases sent and received, acknowledged (median and 90th percentile\n"
        "time to acknowledge), requests answered (median and 90th percentile time to\n"
        "answer), overdue now, escalations. Reads a snapshot of the database, safe while\n"
        "the bot runs; needs no secrets. Exits 1 when there is no database, 2 for a post\n"
        "that is not in the configuration.", func=cmd_stats, config=True)
    stats.add_argument("--period", type=report_period, default="7d",
                       metavar="PERIOD", help="how far back: 7d (default), 30d, 12h, …")
    stats.add_argument("--post", action="extend", nargs="+", metavar="ID", default=[],
                       help="only these posts (default: every configured post)")
    stats.add_argument("--format", choices=("text", "json"), default="text",
                       help="text (default): an aligned table; json: every figure, times "
                            "in milliseconds")

    rooms = command(
        "rooms", "the rooms the bot is in and what each stands for; leave one",
        "Without a subcommand: one line per room: its id, what it stands for (a post, a\n"
        "supervisors' room, a direct room with a configured person, the admins' room, or\n"
        "unknown: the bot answers there once and then stays silent) and its members.\n"
        "Uses the bot's access token from the data directory; safe while the bot runs.",
        func=cmd_rooms, config=True)
    rooms.set_defaults(rooms_command="list")
    rooms_sub = rooms.add_subparsers(dest="rooms_command", metavar="COMMAND")
    leave = command("leave", "make the bot leave ROOM", parent=rooms_sub, func=cmd_rooms)
    leave.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS,
                       help="configuration file (default: ./config.yaml)")
    leave.add_argument("room", metavar="ROOM", help="room id, e.g. '!abc:example.org'")

    link = command(
        "link", "links to partner bots: check them, export the exchange with one",
        "Links are configured under links: (docs/links.md).")
    link_sub = link.add_subparsers(dest="link_command", required=True, metavar="COMMAND")
    command("check", "per link: room, partner identity, directories, queue (exit 1 if wrong)",
            "Asks the homeserver with the bot's access token whether the bot and the partner\n"
            "are in the encrypted link room and whether the partner publishes the pinned\n"
            "master key with a device signed by it; reads the database for the directories\n"
            "accepted and published and the protocol events queued. Safe while the bot runs.",
            parent=link_sub, func=cmd_link, config=True)
    link_export = command(
        "export", "the protocol events sent, accepted and refused on one link, as JSON lines",
        "Read-only; needs no secrets and no homeserver.", parent=link_sub, func=cmd_link,
        config=True)
    link_export.add_argument("name", metavar="NAME", help="the link's name (links[].name)")
    link_export.add_argument("-o", "--out", type=Path, metavar="FILE",
                             help="write to FILE (mode 0600) instead of standard output")

    version = command(
        "version", "versions of Liaison, Python, matrix-nio, vodozemac and the schema",
        "The schema is the database version this build migrates to. With -c, also the\n"
        "schema of that configuration's database; exits 3 if it is newer than this\n"
        "build (it would refuse to run on it).", func=cmd_version)
    version.add_argument("-c", "--config", type=Path,
                         help="also show the schema of this configuration's database")

    demo = command("demo", "local homeserver, bot and scripted officers", func=cmd_demo)
    demo.add_argument("--workdir", default=".demo", help="where the demo keeps its state")
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


__all__ = [  # the exit codes, and each command as `main` finds it (tests replace one)
    "EXIT_AUDIT_BROKEN",
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "build_parser",
    "cmd_audit_verify",
    "cmd_backup",
    "cmd_backup_key",
    "cmd_check_config",
    "cmd_demo",
    "cmd_export",
    "cmd_identity",
    "cmd_link",
    "cmd_recover_device",
    "cmd_reset_identity",
    "cmd_restore",
    "cmd_rooms",
    "cmd_run",
    "cmd_stats",
    "cmd_version",
    "main",
    "report_period",
]


if __name__ == "__main__":
    sys.exit(main())
