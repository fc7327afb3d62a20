"""`liaison identity`, `liaison link check` and `liaison link export`: what operators of
two linked bots run to pin each other's identity and to watch the link."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from liaison.bot.app import CROSS_SIGNING_FILE
from liaison.bot.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, main
from liaison.bot.crosssigning import build_public_keys, cross_signing_public_key, load_seeds
from liaison.bot.link_tools import LinkFacts, problems
from liaison.commands.links import Link
from liaison.storage import links as link_store
from liaison.storage.db import Database

BOT = "@liaison:kz.example"

CONFIG = f"""\
homeserver:
  url: http://127.0.0.1:8008
bot:
  user_id: "{BOT}"
  password: {{env: TEST_LIAISON_PASSWORD}}
  pickle_key: {{env: TEST_LIAISON_PICKLE}}
data_dir: data
trust:
  policy: tofu
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return path


def test_identity_creates_the_seeds_offline_and_prints_the_master_key_the_bot_publishes(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["identity", "-c", str(config_file)]) == EXIT_OK
    out, err = capsys.readouterr()
    printed = out.strip()
    seeds_path = config_file.parent / "data" / CROSS_SIGNING_FILE
    assert "created" in err and str(seeds_path) in err
    assert stat.S_IMODE(seeds_path.stat().st_mode) == 0o600
    seeds = load_seeds(seeds_path)
    assert seeds is not None
    # exactly the master key `ensure_cross_signed` uploads from these seeds
    assert printed == cross_signing_public_key(build_public_keys(BOT, seeds)["master_key"])
    assert len(printed) == 43 and "=" not in printed


def test_identity_never_replaces_existing_seeds(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["identity", "-c", str(config_file)]) == EXIT_OK
    first = capsys.readouterr().out
    seeds_path = config_file.parent / "data" / CROSS_SIGNING_FILE
    before = seeds_path.read_text()
    assert main(["identity", "-c", str(config_file)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out == first and err == ""
    assert seeds_path.read_text() == before


def test_identity_key_is_accepted_as_a_partners_pinned_key(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from liaison.commands.links import Link

    assert main(["identity", "-c", str(config_file)]) == EXIT_OK
    key = capsys.readouterr().out.strip()
    link = Link(name="kz", partner=BOT, room="!link:kz.example", partner_master_key=key,
                countries=("KZ",))
    assert link.partner_master_key == key


# --- liaison link check / export ------------------------------------------------------------

PARTNER = "@liaison:uz.example"
ROOM = "!link-uz:kz.example"
PINNED = "A" * 42 + "E"
NOW = 1_796_000_000_000


def with_link(config_file: Path) -> Path:
    config_file.write_text(CONFIG + f"""\
links:
  - name: uz
    partner: "{PARTNER}"
    room: "{ROOM}"
    partner_master_key: "{PINNED}"
    countries: [UZ]
""")
    return config_file


def facts(**changes: Any) -> LinkFacts:
    values: dict[str, Any] = {
        "joined": True, "encrypted": True, "partner_joined": True, "partner_reachable": True,
        "published_master": PINNED, "pinned_devices": 1,
        "directory_received": (3, NOW - 3_600_000), "directory_published": 2, "queued": 0,
        "oldest_queued_ms": None}
    values.update(changes)
    return LinkFacts(**values)


def uz() -> Link:
    return Link(name="uz", partner=PARTNER, room=ROOM, partner_master_key=PINNED,
                countries=("UZ",))


@pytest.mark.parametrize(("changes", "problem"), [
    ({}, None),
    ({"joined": False, "encrypted": False, "partner_joined": False},
     f"the bot is not in the link room {ROOM}"),
    ({"encrypted": False}, f"the link room {ROOM} is not encrypted"),
    ({"partner_joined": False}, f"the partner {PARTNER} is not in the link room"),
    ({"published_master": "B" * 43},
     f"{PARTNER} publishes master key {'B' * 43}, not the pinned {PINNED}: the link is "
     "refused"),
    ({"pinned_devices": 0}, f"no device of {PARTNER} is signed by the pinned master key"),
    ({"partner_reachable": False},
     f"the partner's homeserver did not answer for {PARTNER}'s keys"),
    ({"queued": 4, "oldest_queued_ms": NOW - 600_000},
     "the oldest of 4 protocol events queued for the partner has waited 10m"),
], ids=["ok", "not joined", "not encrypted", "partner away", "identity", "no pinned device",
        "unreachable", "stuck"])
def test_link_check_names_what_is_wrong(changes: dict[str, Any], problem: str | None) -> None:
    found = problems(uz(), facts(**changes), now_ms=NOW, stuck_after_ms=300_000)
    assert found == ([] if problem is None else [problem])


def test_link_check_prints_each_link_and_exits_1_when_one_is_wrong(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from liaison.bot import link_tools

    found = {"uz": facts(directory_received=(3, int(time.time() * 1000) - 3_600_000))}

    async def gathered(config: Any, database: Path, *, now_ms: int) -> dict[str, LinkFacts]:
        return found

    monkeypatch.setattr(link_tools, "gather_facts", gathered)
    with_link(config_file)
    assert main(["link", "check", "-c", str(config_file)]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith(f"link uz: partner {PARTNER} in {ROOM}\n")
    assert "partner's directory: version 3, accepted 1h ago; ours: version 2" in out
    assert out.rstrip().endswith("OK")

    found["uz"] = facts(published_master="B" * 43, pinned_devices=0)
    assert main(["link", "check", "-c", str(config_file)]) == EXIT_FAILURE
    assert "PROBLEM: " + f"{PARTNER} publishes master key {'B' * 43}" in capsys.readouterr().out


async def _logged(database: Path) -> None:
    db = await Database.open(database)
    try:
        async with db.transaction() as conn:
            await link_store.log_event(conn, link="uz", direction="sent",
                                       event_type="org.liaison.link.offer",
                                       key="offer:KZ-1:UZ-TERMEZ", event_id=None,
                                       case_ref="KZ-1", ms=NOW, detail={})
            await link_store.log_event(conn, link="uz", direction="refused",
                                       event_type="org.liaison.link.case", key="$forged",
                                       event_id="$forged", case_ref=None, ms=NOW + 1,
                                       detail={"reason": "not_partner"})
    finally:
        await db.close()


def test_link_export_writes_the_exchange_as_json_lines(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_link(config_file)
    asyncio.run(_logged(config_file.parent / "data" / "liaison.db"))
    out_file = config_file.parent / "uz.jsonl"

    assert main(["link", "export", "uz", "-c", str(config_file)]) == EXIT_OK
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["direction"], line["key"]) for line in lines] == [
        ("sent", "offer:KZ-1:UZ-TERMEZ"), ("refused", "$forged")]
    assert lines[1]["detail"] == {"reason": "not_partner"}

    assert main(["link", "export", "uz", "-c", str(config_file), "--out",
                 str(out_file)]) == EXIT_OK
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    assert len(out_file.read_text().splitlines()) == 2


def test_link_export_of_an_unknown_link_names_the_configured_ones(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_link(config_file)
    assert main(["link", "export", "tj", "-c", str(config_file)]) == EXIT_CONFIG
    assert "no link tj in the configuration (links: uz)" in capsys.readouterr().err


def test_stats_counts_a_partners_posts_from_its_accepted_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """UZ-TERMEZ is no post of this bot's but the partner's: what crossed the link to it
    is in `liaison stats` as it is in the partner's."""
    from liaison.commands.links import DirectoryContent, DirectoryPost
    from liaison.commands.model import Agency
    from tests.unit.test_cli import fill

    monkeypatch.setenv("TEST_LIAISON_PASSWORD", "secret")
    monkeypatch.setenv("TEST_LIAISON_PICKLE", "pickle")
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.replace("@liaison:kz.example", "@liaison:example.org") + f"""\
posts:
  - {{id: KZ-ZHIBEK, names: {{en: Zhibek}}, country: KZ, agency: border,
     room: "!kz:example.org", timezone: Asia/Almaty}}
links:
  - name: uz
    partner: "{PARTNER}"
    room: "{ROOM}"
    partner_master_key: "{PINNED}"
    countries: [UZ]
""")
    database = tmp_path / "data" / "liaison.db"
    assert main(["stats", "-c", str(path), "--post", "UZ-TERMEZ"]) == EXIT_CONFIG  # no db
    capsys.readouterr()
    asyncio.run(fill(database))

    async def accept() -> None:
        db = await Database.open(database)
        try:
            async with db.transaction() as conn:
                await link_store.accept_directory(conn, "uz", DirectoryContent(
                    id="directory:1", version=1, posts=(DirectoryPost(
                        id="UZ-TERMEZ", names={"en": "Termez"}, country="UZ",
                        agency=Agency.BORDER),)), "$dir", NOW)
        finally:
            await db.close()

    asyncio.run(accept())
    assert main(["stats", "-c", str(path)]) == EXIT_OK
    rows = {line.split()[0]: line.split()[1:4]
            for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["UZ-TERMEZ"] == ["0", "4", "3"]  # sent, received, acknowledged
    assert main(["stats", "-c", str(path), "--post", "uz-termez"]) == EXIT_OK


async def test_gather_facts_reads_the_homeserver_and_the_database(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `link check` asks the homeserver, with nio's answers and a keys/query body in
    which the partner's device is signed by the pinned identity."""
    from nio import (
        JoinedMembersResponse,
        JoinedRoomsResponse,
        RoomGetStateEventResponse,
        RoomMember,
    )

    from liaison.bot import link_tools
    from liaison.bot.crosssigning import CrossSigningSeeds, SigningKey
    from liaison.bot.rawapi import ApiResult
    from liaison.config import load_config

    seeds = CrossSigningSeeds.generate()
    pinned = SigningKey(seeds.master).public
    config_file.write_text(with_link(config_file).read_text().replace(PINNED, pinned))
    config = load_config(config_file, check_secrets=False)
    device = SigningKey(seeds.self_signing).sign(
        {"user_id": PARTNER, "device_id": "PDEV", "algorithms": [],
         "keys": {"curve25519:PDEV": "c", "ed25519:PDEV": "e"}}, PARTNER)

    class Homeserver:
        async def joined_rooms(self) -> Any:
            return JoinedRoomsResponse([ROOM])

        async def room_get_state_event(self, room_id: str, event_type: str) -> Any:
            return RoomGetStateEventResponse({"algorithm": "m.megolm.v1.aes-sha2"},
                                             event_type, "", room_id)

        async def joined_members(self, room_id: str) -> Any:
            return JoinedMembersResponse([RoomMember(BOT, "", ""), RoomMember(PARTNER, "", "")],
                                         room_id)

        async def close(self) -> None:
            return None

    async def client(config: Any) -> Any:
        return Homeserver()

    async def keys_query(client: Any, method: str, path: str, body: Any) -> ApiResult:
        public = build_public_keys(PARTNER, seeds)
        return ApiResult(200, {"master_keys": {PARTNER: public["master_key"]},
                               "self_signing_keys": {PARTNER: public["self_signing_key"]},
                               "device_keys": {PARTNER: {"PDEV": device}}, "failures": {}})

    monkeypatch.setattr(link_tools, "bot_client", client)
    monkeypatch.setattr(link_tools, "request_json", keys_query)
    database = config_file.parent / "data" / "liaison.db"
    db = await Database.open(database)  # a database at this schema, nothing in it
    await db.close()

    found = (await link_tools.gather_facts(config, database, now_ms=NOW))["uz"]
    assert (found.joined, found.encrypted, found.partner_joined, found.partner_reachable,
            found.published_master, found.pinned_devices) == (True, True, True, True,
                                                              pinned, 1)
    assert problems(config.links[0], found, now_ms=NOW, stuck_after_ms=300_000) == []
