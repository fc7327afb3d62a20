"""The record as operators and oversight get it: what lands on the audit log outside the
case timeline (deliveries, refusals, start-up), `liaison audit verify` and `liaison
export` with their exit codes and formats."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nio import InviteInfo, InviteMemberEvent, RoomLeaveResponse, RoomSendError, RoomSendResponse

from liaison.bot.app import Liaison
from liaison.bot.cli import EXIT_AUDIT_BROKEN, EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, main
from liaison.bot.command_runner import record_refusal
from liaison.bot.invites import InvitePolicy, answer_invite
from liaison.bot.sender import OutboxSender, SenderSettings
from liaison.commands.errors import CommandError
from liaison.config import ConfigError, parse_config
from liaison.handlers.context import Services
from liaison.storage import audit, export
from liaison.storage.db import Database
from tests.unit.test_case_commands import (
    ALERT,
    CONFIG,
    JOINED,
    KZ,
    KZ_ROOM,
    TJ,
    TJ_ROOM,
    UZ,
    UZ_ROOM,
    Bot,
    registry_with_cases,
)
from tests.unit.test_sender import FixedClock, Room, ScriptedClient, _one_round

CONFIG_YAML = """\
homeserver:
  url: http://127.0.0.1:8008
bot:
  user_id: "@liaison:example.org"
  password: {env: LIAISON_TEST_UNSET_PASSWORD}
  pickle_key: {env: LIAISON_TEST_UNSET_PICKLE}
data_dir: data
trust:
  policy: tofu
"""


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    """The case commands on the database that the config file in `tmp_path` names."""
    (tmp_path / "config.yaml").write_text(CONFIG_YAML)
    database = await Database.open(tmp_path / "data" / "liaison.db")
    yield Bot(database, parse_config(json.dumps(CONFIG)), registry_with_cases())
    await database.close()


async def cli(argv: list[str]) -> int:
    """`liaison ARGV` as the operator runs it (its own event loop, so off this one)."""
    return await asyncio.to_thread(main, argv)


async def entries(db: Database) -> list[audit.AuditEntry]:
    async with db.read() as conn:
        return await audit.entries(conn)


# --- what is recorded -------------------------------------------------------------------


async def test_a_relay_is_recorded_as_delivered_once_the_homeserver_takes_it(
    bot: Bot
) -> None:
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ\nLook out")
    await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")  # queues a notice for KZ: no relay
    client = ScriptedClient([RoomSendResponse("$relayed", UZ_ROOM),
                             RoomSendResponse("$ack", KZ_ROOM)],
                            rooms={KZ_ROOM: Room(), UZ_ROOM: Room()})
    sender = OutboxSender(bot.db, client, FixedClock(bot.clock.now_ms()),  # type: ignore[arg-type]
                          SenderSettings())
    await _one_round(sender, bot.db, FixedClock(bot.clock.now_ms()))
    delivered = [e for e in await entries(bot.db) if e.action == "delivered"]
    assert [(e.case_ref, e.room_id, e.actor, e.detail["event_id"]) for e in delivered] == [
        ("KZ-0001", UZ_ROOM, audit.LIAISON, "$relayed")]


async def test_a_relay_given_up_on_is_recorded_as_undelivered(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ\nLook out")
    client = ScriptedClient([RoomSendError("Forbidden", "M_FORBIDDEN")] * 2,
                            rooms={KZ_ROOM: Room(), UZ_ROOM: Room()})
    clock = FixedClock(bot.clock.now_ms())
    sender = OutboxSender(bot.db, client, clock, SenderSettings(max_attempts=1))  # type: ignore[arg-type]
    await _one_round(sender, bot.db, clock)
    (undelivered,) = [e for e in await entries(bot.db) if e.action == "undelivered"]
    assert (undelivered.case_ref, undelivered.room_id) == ("KZ-0001", UZ_ROOM)
    assert "Forbidden" in undelivered.detail["error"]


async def test_refusals_for_want_of_authority_are_recorded_and_bad_input_is_not(
    bot: Bot
) -> None:
    await bot.say(KZ_ROOM, KZ, ALERT)
    refusals = [
        (UZ, UZ_ROOM, "close", CommandError.of("error.close_not_origin", ref="KZ-0001",
                                               origin="KZ-ZHIBEK")),
        (TJ, TJ_ROOM, "status", CommandError.of("error.case_unknown", ref="KZ-0001")),
        (TJ, TJ_ROOM, "status", CommandError.of("error.case_unknown", ref="KZ-0099")),
        (UZ, "!lounge:example.org", "alert", CommandError.of("error.case_room_not_post")),
        (UZ, UZ_ROOM, "alert", CommandError.of("error.priority_missing")),
    ]
    async with bot.db.transaction() as conn:
        services = Services(config=bot.config, clock=bot.clock, conn=conn,
                            bot_user_id="@liaison:liaison.example", joined_rooms=JOINED,
                            encrypted_rooms=JOINED)
        for sender, room_id, command, error in refusals:
            await record_refusal(services, error, room_id=room_id, sender=sender,
                                 command=command)
    recorded = [e for e in await entries(bot.db) if e.action == "command-refused"]
    assert [(e.actor, e.case_ref, e.room_id, e.detail) for e in recorded] == [
        (UZ, "KZ-0001", UZ_ROOM, {"reason": "close_not_origin", "command": "close"}),
        (TJ, "KZ-0001", TJ_ROOM, {"reason": "case_not_visible", "command": "status"}),
        (UZ, None, "!lounge:example.org", {"reason": "case_room_not_post",
                                           "command": "alert"}),
    ]


async def test_the_start_records_a_digest_of_the_config_and_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG_YAML)
    from liaison.config import load_config

    config = load_config(path, check_secrets=False)
    db = await Database.open(tmp_path / "liaison.db")
    try:
        await Liaison(config)._record_start(db)
        (entry,) = await entries(db)
    finally:
        await db.close()
    assert (entry.action, entry.actor) == ("config-loaded", audit.LIAISON)
    import hashlib

    assert entry.detail["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry.detail["path"] == str(path.resolve()) and entry.detail["schema"] >= 4


async def test_a_declined_invite_is_recorded_once_the_homeserver_took_the_decline(
    tmp_path: Path
) -> None:
    stranger = "@stranger:elsewhere.example"
    invite = InviteInfo([InviteMemberEvent({}, stranger, "@liaison:example.org", "invite",
                                           "", {"membership": "invite"})])

    @dataclass
    class Client:
        user_id: str = "@liaison:example.org"
        left: list[str] = field(default_factory=list)

        async def room_leave(self, room_id: str) -> RoomLeaveResponse:
            self.left.append(room_id)
            return RoomLeaveResponse()

    declined: list[str | None] = []

    async def record(inviter: str | None) -> None:
        declined.append(inviter)

    policy = InvitePolicy(frozenset(), frozenset({"example.org"}))
    client = Client()
    joined = await answer_invite(client, policy, "!lure:elsewhere.example",  # type: ignore[arg-type]
                                 invite, on_declined=record)
    assert (joined, client.left, declined) == (False, ["!lure:elsewhere.example"], [stranger])


def test_retention_shorter_than_a_day_is_refused_with_its_line() -> None:
    with pytest.raises(ConfigError, match=r":11: retention.closed_cases: keep closed cases"):
        parse_config(CONFIG_YAML + "retention:\n  closed_cases: 90m\n")
    assert parse_config(CONFIG_YAML + "retention:\n  closed_cases: null\n").retention \
        .closed_cases is None


# --- liaison audit verify ---------------------------------------------------------------


async def test_verify_passes_then_names_the_row_edited_by_hand(
    bot: Bot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await bot.say(KZ_ROOM, KZ, ALERT)
    await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")
    config = str(tmp_path / "config.yaml")
    count = len(await entries(bot.db))

    assert await cli(["audit", "verify", "-c", config]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith(f"{count} entries, chain intact\n"), out
    head = out.split("hash ")[-1].strip()

    with sqlite3.connect(bot.db.path) as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET actor = '@someone:example.org' WHERE seq = 4")
    conn.close()
    assert await cli(["audit", "verify", "-c", config]) == EXIT_AUDIT_BROKEN
    out = capsys.readouterr().out
    assert out.startswith("audit chain broken at entry 4 (2026-05-01T10:00:00.000Z, "
                          "acknowledged): its content does not match its hash\n"), out
    assert "3 entries before it are intact" in out
    assert await cli(["audit", "verify", "-c", config, "--anchor", head]) == EXIT_AUDIT_BROKEN


def test_verify_without_a_database_fails_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG_YAML)
    assert main(["audit", "verify", "-c", str(tmp_path / "config.yaml")]) == EXIT_FAILURE
    assert "there is no database" in capsys.readouterr().err


# --- liaison export ---------------------------------------------------------------------


async def worked(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, ALERT)
    await bot.send_all()
    bot.later(30)
    await bot.say(UZ_ROOM, UZ, "!ack KZ-0001")
    await bot.say(KZ_ROOM, KZ, "!close KZ-0001 Seized 40 kg")
    await bot.say(KZ_ROOM, KZ, "!alert routine to:TJ-PANJ\nLater")


async def test_cases_export_as_json_is_the_full_record(
    bot: Bot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await worked(bot)
    target = tmp_path / "cases.json"
    assert await cli(["export", "-c", str(tmp_path / "config.yaml"), "--cases", "-o",
                 str(target)]) == EXIT_OK
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "2 cases written to" in capsys.readouterr().err
    document = json.loads(target.read_text())
    assert document["export"] == "cases" and document["since"] is None
    first, second = document["cases"]
    assert (first["ref"], first["state"], first["outcome"], first["text"]) == (
        "KZ-0001", "closed", "Seized 40 kg", "Suspected heroin in a cement load.")
    assert first["fields"][0] == ["vehicle", "white Kamaz, plate 01A123BC"]
    assert first["created"] == "2026-05-01T10:00:00.000Z"
    uz = first["deliveries"][0]
    assert (uz["post"], uz["state"], uz["acknowledged_by"], uz["seconds_to_acknowledge"]) == (
        "UZ-TERMEZ", "acknowledged", UZ, 1800.0)
    assert [entry["kind"] for entry in first["timeline"]] == [
        "created", "routed", "routed", "acknowledged", "closed"]
    assert (second["ref"], second["state"], second["purged"]) == ("KZ-0002", "open", None)
    exported = (await entries(bot.db))[-1]
    assert (exported.action, exported.actor) == ("exported", audit.OPERATOR)
    assert exported.detail["what"] == "cases" and exported.detail["count"] == 2


async def test_cases_export_as_csv_has_a_row_per_delivery_and_no_content(
    bot: Bot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await worked(bot)
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:AF-HAIRATAN tlp:amber\nNowhere")  # refused
    assert await cli(["export", "-c", str(tmp_path / "config.yaml"), "--cases",
                 "--format", "csv"]) == EXIT_OK
    text = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(row["ref"], row["target_post"], row["delivery_state"]) for row in rows] == [
        ("KZ-0001", "UZ-TERMEZ", "acknowledged"), ("KZ-0001", "TJ-PANJ", "routed"),
        ("KZ-0002", "TJ-PANJ", "routed")]
    assert rows[0]["seconds_to_acknowledge"] == "1800.0" and rows[1]["acknowledged"] == ""
    assert list(rows[0]) == list(export.CASE_CSV_COLUMNS)
    for content in ("heroin", "Kamaz", "Seized", "Later"):
        assert content not in text


async def test_audit_export_keeps_what_verifies_each_entry_and_honours_since(
    bot: Bot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await worked(bot)
    config = str(tmp_path / "config.yaml")
    assert await cli(["export", "-c", config, "--audit"]) == EXIT_OK
    document = json.loads(capsys.readouterr().out)
    items = document["audit"]
    assert [item["seq"] for item in items] == list(range(1, len(items) + 1))
    for item in items:
        detail_json = json.dumps(item["detail"], ensure_ascii=False, sort_keys=True,
                                 separators=(",", ":"))
        assert item["hash"] == audit.entry_hash(
            seq=item["seq"], ts_ms=item["ts_ms"], actor=item["actor"], action=item["action"],
            case_ref=item["case_ref"], room_id=item["room_id"], detail_json=detail_json,
            prev_hash=item["prev_hash"])
    assert await cli(["export", "-c", config, "--audit", "--format", "csv",
                 "--since", "2026-05-01T10:15"]) == EXIT_OK
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(int(row["ts_ms"]) >= bot.clock.now_ms() for row in rows)
    assert rows[0]["action"] == "acknowledged" and rows[0]["time"].endswith("Z")
    assert json.loads(rows[0]["detail"]) == {"post": "UZ-TERMEZ"}


async def many_cases(bot: Bot) -> list[tuple[str, list[str], list[str]]]:
    """Ten cases, to one post or two, every third acknowledged: (ref, the posts it went
    to, its timeline kinds) for each, oldest first."""
    made = []
    for number in range(1, 11):
        posts = ["UZ-TERMEZ", "TJ-PANJ"] if number % 2 else ["UZ-TERMEZ"]
        await bot.say(KZ_ROOM, KZ, f"!alert routine to:{','.join(posts)}\nCase {number}")
        kinds = ["created"] + ["routed"] * len(posts)
        if number % 3 == 0:
            await bot.say(UZ_ROOM, UZ, f"!ack KZ-{number:04d}")
            kinds.append("acknowledged")
        made.append((f"KZ-{number:04d}", posts, kinds))
    return made


async def test_an_export_longer_than_a_batch_has_each_case_once_in_order(
    bot: Bot, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "BATCH_SIZE", 3)
    made = await many_cases(bot)
    async with bot.db.read() as conn:
        assert [len(batch) async for batch in export.case_batches(conn)] == [3, 3, 3, 1]
    logged = len(await entries(bot.db))
    config = str(tmp_path / "config.yaml")
    target = tmp_path / "cases.json"

    assert await cli(["export", "-c", config, "--cases", "-o", str(target)]) == EXIT_OK
    assert "10 cases written to" in capsys.readouterr().err
    exported = json.loads(target.read_text())["cases"]
    assert [(case["ref"], [d["post"] for d in case["deliveries"]],
             [entry["kind"] for entry in case["timeline"]]) for case in exported] == made
    assert [case["text"] for case in exported] == [f"Case {n}" for n in range(1, 11)]
    assert (await entries(bot.db))[-1].detail["count"] == 10

    assert await cli(["export", "-c", config, "--cases", "--format", "csv"]) == EXIT_OK
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(row["ref"], row["target_post"]) for row in rows] == [
        (ref, post) for ref, posts, _ in made for post in posts]

    assert await cli(["export", "-c", config, "--audit"]) == EXIT_OK
    seqs = [item["seq"] for item in json.loads(capsys.readouterr().out)["audit"]]
    assert seqs == list(range(1, logged + 3))  # and the two exports above
    assert await cli(["export", "-c", config, "--audit", "--format", "csv"]) == EXIT_OK
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [int(row["seq"]) for row in rows] == list(range(1, logged + 4))

    assert await cli(["export", "-c", config, "--cases", "--since", "2030-01-01"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["cases"] == []


async def test_an_export_that_fails_half_way_leaves_no_file_behind(
    bot: Bot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from liaison.bot.oversight import export_records

    monkeypatch.setattr(export, "BATCH_SIZE", 3)
    await many_cases(bot)
    with sqlite3.connect(bot.db.path) as conn:  # a row spoilt by hand, in the second batch
        conn.execute("UPDATE cases SET fields = '[not json' WHERE ref = 'KZ-0005'")
    conn.close()
    logged = len(await entries(bot.db))
    before = sorted(tmp_path.iterdir())
    target = tmp_path / "cases.json"
    partial_modes: list[int] = []
    read = export.case_batches

    async def watched(conn: object, *, since_ms: int | None = None,
                      include_red: bool = False) -> AsyncIterator[object]:
        async for batch in read(conn, since_ms=since_ms,  # type: ignore[arg-type]
                                include_red=include_red):
            yield batch
            partial_modes.extend(stat.S_IMODE(path.stat().st_mode)
                                 for path in tmp_path.glob(".cases.json.*.partial"))

    monkeypatch.setattr(export, "case_batches", watched)
    with pytest.raises(ValueError):
        await export_records(bot.db.path, cases=True, as_csv=False, since_ms=None,
                             output=target)
    assert partial_modes == [0o600]  # written to, privately, when the second batch broke
    assert sorted(tmp_path.iterdir()) == before
    assert len(await entries(bot.db)) == logged  # no export recorded


def test_export_needs_cases_or_audit_and_a_readable_since(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG_YAML)
    config = str(tmp_path / "config.yaml")
    for argv in (["export", "-c", config], ["export", "-c", config, "--cases", "--audit"],
                 ["export", "-c", config, "--audit", "--since", "last week"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == EXIT_CONFIG
    assert "is not a date" in capsys.readouterr().err
