"""The `liaison` command line: run the bot, check a config, reset identity, back up,
verify the audit log, export cases and the audit log, run the demo.

Exit codes: 0 success; 1 runtime failure; 2 usage or configuration error;
3 start-up refused (identity or device conflict the operator must resolve);
4 the audit log does not verify (`liaison audit verify` names the first broken entry).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bot.config import Config, ConfigError, load_config
from bot.oversight import parse_since

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_REFUSED = 3
EXIT_AUDIT_BROKEN = 4


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
    setup_logging(config.logging.level, config.logging.format)
    try:
        return run_until_signalled(config)
    except (StartupError, IdentityConflict) as exc:
        print(f"liaison: start-up refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)  # also reads every secret; a missing one names its line
    print(f"{args.config}: OK — {len(config.posts)} posts, {len(config.groups)} groups, "
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

    async def reset() -> str:
        client = await connect(config, attempts=3)
        try:
            assert config.bot.password is not None
            return await reset_identity(client, config.data_dir / CROSS_SIGNING_FILE,
                                        config.bot.password.resolve())
        finally:
            await client.close()

    from bot.app import DATABASE_FILE
    from bot.oversight import record_identity_reset

    master = asyncio.run(reset())
    print(f"new cross-signing master key: {master}")
    asyncio.run(record_identity_reset(config.data_dir / DATABASE_FILE, master))
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    """Copy the database with SQLite's online backup, safe while the bot runs."""
    from bot.app import DATABASE_FILE
    from storage.db import Database

    config = _load(args.config)

    async def backup() -> None:
        db = await Database.open(config.data_dir / DATABASE_FILE)
        try:
            await db.backup(args.target)
        finally:
            await db.close()

    asyncio.run(backup())
    print(f"database backed up to {args.target}; also keep a copy of "
          f"{config.data_dir} (credentials, crypto store, cross-signing keys)")
    return EXIT_OK


def _database(path: Path) -> Path:
    """The database of the config at `path`; the record commands need no secrets."""
    from bot.app import DATABASE_FILE

    config = load_config(path, check_secrets=False)
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return config.data_dir / DATABASE_FILE


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


def cmd_demo(args: argparse.Namespace) -> int:
    from devkit.demo import run_demo

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
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", type=Path, default=Path("config.yaml"),
                       help="configuration file (default: ./config.yaml)")

    run = sub.add_parser("run", help="run the bot until stopped")
    with_config(run)
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a configuration file and its secrets")
    with_config(check)
    check.set_defaults(func=cmd_check_config)

    reset = sub.add_parser("reset-identity",
                           help="replace the bot's cross-signing identity (needs the password)")
    with_config(reset)
    reset.add_argument("--yes", action="store_true", help="really do it")
    reset.set_defaults(func=cmd_reset_identity)

    backup = sub.add_parser("backup", help="online copy of the database to FILE (0600)")
    with_config(backup)
    backup.add_argument("target", type=Path, help="where to write the copy")
    backup.set_defaults(func=cmd_backup)

    audit = sub.add_parser("audit", help="the tamper-evident audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify", help="recompute the hash chain; name the first broken entry (exit 4)")
    with_config(verify)
    verify.add_argument("--anchor", metavar="HASH",
                        help="also require the entry with this hash (printed by an earlier "
                             "verify and kept elsewhere): shows entries cut off the end")
    verify.set_defaults(func=cmd_audit_verify)

    export = sub.add_parser("export", help="write cases or the audit log as JSON or CSV")
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

    demo = sub.add_parser("demo", help="local homeserver, bot and scripted officers")
    demo.add_argument("--workdir", default=".demo", help="where the demo keeps its state")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK
    return code


if __name__ == "__main__":
    sys.exit(main())
