"""Hits against a real database (`handlers.hits`): a new case matched against the cases
the bot holds, the notices each room reads, `!check`, `!links`, `!status`, `!unlink`,
the audit, and retention."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from liaison.commands.builtin import register_builtins
from liaison.commands.registry import CommandRegistry
from liaison.config import parse_config
from liaison.handlers.cases import register_case_commands
from liaison.handlers.hits import register_hit_commands
from liaison.storage import hits, retention
from liaison.storage.db import Database
from tests.unit.test_case_commands import (
    AF,
    AF_ROOM,
    CONFIG,
    KZ,
    KZ_ROOM,
    TJ,
    TJ_ROOM,
    UZ,
    UZ_ROOM,
    Bot,
)
from tests.unit.test_case_events import open_room


def registry() -> CommandRegistry:
    found = CommandRegistry()
    register_builtins(found)
    register_case_commands(found)
    register_hit_commands(found)
    return found


STRICT_CLEARED = {**CONFIG, "posts": [{**post, "clearance": "AMBER+STRICT"}
                                      for post in CONFIG["posts"]]}


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    database = await Database.open(tmp_path / "liaison.db")
    yield Bot(database, parse_config(json.dumps(STRICT_CLEARED)), registry())
    await database.close()


async def hit_notices(bot: Bot, room_id: str) -> list[str]:
    return [str(message.content["body"]) for message in await bot.queued(room_id)
            if message.kind == "case-hit"]


async def audited(bot: Bot, action: str) -> list[dict[str, object]]:
    async with bot.db.read() as conn:
        rows = await conn.execute_fetchall(
            "SELECT case_ref, detail FROM audit_log WHERE action = ? ORDER BY seq", (action,))
    return [{"ref": row[0], **json.loads(row[1])} for row in rows]


KZ_ALERT = "!alert urgent to:UZ-TERMEZ tlp:amber\nplate: 01A123BC\nWhite Kamaz, heroin."
TJ_REQUEST = ("!request urgent to:UZ-TERMEZ\nномер: 01 А 123 ВС\n"
              "Who owns this truck?")


async def test_a_plate_in_cyrillic_hits_the_earlier_case_by_hit_no_hit(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, KZ_ALERT)
    assert await hit_notices(bot, KZ_ROOM) == []
    await bot.say(TJ_ROOM, TJ, TJ_REQUEST)

    # TJ never saw the AMBER case: it learns only that KZ holds something, and how to ask
    assert await hit_notices(bot, TJ_ROOM) == [
        "Hit: Zhibek post (KZ-ZHIBEK) holds information related to plate 01A123BC in "
        "TJ-0001.\nTo ask it: !request to:KZ-ZHIBEK ref:TJ-0001"]
    # the owner learns which GREEN case matched; UZ, which received both, sees both
    assert await hit_notices(bot, KZ_ROOM) == [
        "Hit: plate 01A123BC in KZ-0001 is also in TJ-0001 of Panj post (TJ-PANJ)."]
    assert await hit_notices(bot, UZ_ROOM) == [
        "Hit: plate 01A123BC in KZ-0001 is also in TJ-0001 of Panj post (TJ-PANJ)."]
    assert [(entry["ref"], entry["other"], entry["kind"]) for entry in
            await audited(bot, "hit")] == [("TJ-0001", "KZ-0001", "plate")]

    status = await bot.say(KZ_ROOM, KZ, "!status KZ-0001")
    assert "Links:\n• TJ-0001 of Panj post (TJ-PANJ): plate 01A123BC" in status.text
    links = await bot.say(TJ_ROOM, TJ, "!links TJ-0001")
    assert links.text == ("Links of TJ-0001:\n• Zhibek post (KZ-ZHIBEK) holds related "
                          "information: plate 01A123BC — !request to:KZ-ZHIBEK ref:TJ-0001")


async def test_each_pair_is_told_once_and_never_again_once_dismissed(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, KZ_ALERT)
    await bot.say(TJ_ROOM, TJ, TJ_REQUEST + "\nVIN 1M8GDM9AXKP042788, call +992 93 555 1234")
    await bot.say(KZ_ROOM, KZ, "!update KZ-0001 Also seen with VIN 1M8GDM9AXKP042788")
    assert len(await hit_notices(bot, KZ_ROOM)) == 1  # plate, then VIN: one pair, one notice

    refused = await bot.say(TJ_ROOM, TJ, "!unlink TJ-0001 KZ-0001")
    assert refused.text == "The link between TJ-0001 and KZ-0001 is dismissed; it will not " \
                           "be reported again."
    assert (await bot.say(KZ_ROOM, KZ, "!links KZ-0001")).text == "KZ-0001 has no links."
    await bot.say(TJ_ROOM, TJ, "!update TJ-0001 plate 01A123BC again")
    assert len(await hit_notices(bot, KZ_ROOM)) == 1
    assert [entry["other"] for entry in await audited(bot, "hit-unlinked")] == ["KZ-0001"]


async def test_check_answers_hit_or_no_hit_and_is_audited(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, KZ_ALERT)
    assert (await bot.say(UZ_ROOM, UZ, "!check plate 01 a 123 bc")).text == (
        "Hit for plate 01A123BC:\n• KZ-0001 of Zhibek post (KZ-ZHIBEK)")
    assert (await bot.say(AF_ROOM, AF, "!check госномер 01А123ВС")).text == (
        "Hit for plate 01A123BC:\n• Zhibek post (KZ-ZHIBEK) holds related information — "
        "!request to:KZ-ZHIBEK")
    assert (await bot.say(AF_ROOM, AF, "!check plate 99Z999ZZ")).text == (
        "No hit for plate 99Z999ZZ.")
    bad = await bot.say(AF_ROOM, AF, "!check shoe 42")
    assert bad.text.startswith("I cannot check “shoe”.")
    assert [(entry["kind"], entry["hits"]) for entry in await audited(bot, "hit-check")] == [
        ("plate", 1), ("plate", 1), ("plate", 0)]
    assert await hit_notices(bot, KZ_ROOM) == []  # a check tells nobody else


async def test_names_across_scripts_are_a_possible_hit(bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ\nфио: Мухаммад Абдулла\n"
                               "дата рождения: 03.02.1980\nDriver of the Kamaz.")
    await bot.say(TJ_ROOM, TJ, "!request urgent to:UZ-TERMEZ\nname: Muhammad Abdallah\n"
                               "dob: 1980-02-03\nKnown to you?")
    [told] = await hit_notices(bot, TJ_ROOM)
    assert told == ("Possible hit (99%): Zhibek post (KZ-ZHIBEK) holds information that may "
                    "relate to name Muhammad Abdallah in TJ-0001.\n"
                    "To ask it: !request to:KZ-ZHIBEK ref:TJ-0001")
    [owner] = await hit_notices(bot, KZ_ROOM)
    assert owner == ("Possible hit (99%): name Мухаммад Абдулла in KZ-0001 resembles a person "
                     "in TJ-0001 of Panj post (TJ-PANJ).")


async def test_strict_cases_match_only_their_own_post_and_purge_empties_the_index(
        bot: Bot) -> None:
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ tlp:amber+strict\nplate: 77B777BB\nx")
    await bot.say(TJ_ROOM, TJ, "!request urgent to:UZ-TERMEZ\nplate: 77B777BB\ny")
    assert await hit_notices(bot, TJ_ROOM) == [] and await hit_notices(bot, KZ_ROOM) == []
    assert (await bot.say(TJ_ROOM, TJ, "!check plate 77B777BB")).text.startswith("Hit for")
    # (TJ's own GREEN request holds it; KZ's STRICT case is not among the answers)
    assert "KZ" not in (await bot.say(TJ_ROOM, TJ, "!check plate 77B777BB")).text

    await bot.say(KZ_ROOM, KZ, "!close KZ-0001 done")
    case = await bot.case("KZ-0001")
    assert case is not None
    async with bot.db.transaction() as conn:
        await retention.purge_case(conn, case.id, now_ms=bot.clock.now_ms())
        assert await hits.entities_of(conn, case.id) == []


async def test_a_reply_carried_on_a_case_is_matched_too(tmp_path: Path) -> None:
    async for room in open_room(tmp_path, STRICT_CLEARED):
        await room.bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ,TJ-PANJ\nWatch the bridge")
        await room.bot.say(UZ_ROOM, UZ, "!alert urgent to:TJ-PANJ\nphone: 90 123 45 67\nx")
        await room.relays()
        tj_relay = [m for m in await room.bot.queued(TJ_ROOM) if m.kind == "case-relay"]
        first = str(tj_relay[0].event_id)  # KZ-0001 as TJ read it
        await room.reply(TJ_ROOM, TJ, "The driver called from +998 90 123 45 67",
                         thread_root=first)
        notices = [str(m.content["body"]) for m in await room.bot.queued(KZ_ROOM)
                   if m.kind == "case-hit"]
        assert notices == [
            "Hit: phone +998901234567 in KZ-0001 is also in UZ-0001 of Termez post (UZ-TERMEZ)."
        ], notices


async def test_a_case_matching_many_tells_a_few_and_lists_the_rest(tmp_path: Path) -> None:
    config = {**STRICT_CLEARED, "hits": {"max_notices_per_case": 1}}
    database = await Database.open(tmp_path / "many.db")
    bot = Bot(database, parse_config(json.dumps(config)), registry())
    try:
        for _ in range(3):
            await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ\nplate: 01A123BC\nagain")
        notices = await hit_notices(bot, KZ_ROOM)
        assert notices[-1] == ("KZ-0003 matches 1 more cases than I tell one by one: "
                               "!links KZ-0003 lists them.")
        assert len((await bot.say(KZ_ROOM, KZ, "!links KZ-0003")).text.splitlines()) == 3
    finally:
        await database.close()


async def test_a_case_with_hundreds_of_names_is_looked_up_in_chunks(bot: Bot) -> None:
    names = "\n".join(f"name: Ali{'a' * n} Karimov Rashid Salim Tariq" for n in range(40))
    await bot.say(KZ_ROOM, KZ, f"!alert urgent to:UZ-TERMEZ\n{names[:7000]}\nx")
    again = await bot.say(TJ_ROOM, TJ, f"!request urgent to:UZ-TERMEZ\n{names[:7000]}\ny")
    assert again.text.startswith("TJ-0001")
    assert len(await hit_notices(bot, KZ_ROOM)) == 1


async def test_a_case_with_more_identifiers_than_the_cap_says_so(tmp_path: Path) -> None:
    config = {**STRICT_CLEARED, "hits": {"max_entities_per_case": 2}}
    database = await Database.open(tmp_path / "capped.db")
    bot = Bot(database, parse_config(json.dumps(config)), registry())
    try:
        await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ\nplate: 01A111BC\n"
                                   "plate 01A222BC, plate 01A333BC, plate 01A444BC")
        assert await hit_notices(bot, KZ_ROOM) == [
            "KZ-0001 holds more identifiers than I match in one case: the first 2 were "
            "matched, 2 were not."]
        async with bot.db.read() as conn:
            assert len(await hits.entities_of(conn, 1)) == 2
    finally:
        await database.close()
