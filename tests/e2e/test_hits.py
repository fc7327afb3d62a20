"""Hits on a real Synapse: KZ alerts UZ about a plate; TJ, which never saw that case,
names the same plate in Cyrillic letters and is told only that KZ holds related
information, while KZ is told in its case thread; a VIN in free text hits a VIN field;
a RED alert is never matched; `!check` answers hit or no hit; `!unlink` stops repeats."""

from __future__ import annotations

from devkit.officer import Officer, SeenMessage
from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_disclosure import ask, post


def in_thread(message: SeenMessage, root: str, about: str = "hit") -> bool:
    key = message.content.get("org.liaison.case") or {}
    return (message.relates_to.get("rel_type") == "m.thread"
            and message.relates_to.get("event_id") == root and key.get("about") == about)


def hits_in(officer: Officer, room_id: str, bot_id: str, root: str) -> list[str]:
    return [m.body or "" for m in officer.messages(room_id, sender=bot_id) if in_thread(m, root)]


async def test_a_plate_in_cyrillic_hits_by_hit_no_hit_across_posts(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz, uz, tj = [await officer_factory(name) for name in ("kz", "uz", "tj")]
    rooms = {officer: await officer.create_room("post") for officer in (kz, uz, tj)}
    bot = await bot_factory(config={"posts": [
        post("KZ-ZHIBEK", rooms[kz]), post("UZ-TERMEZ", rooms[uz]),
        post("TJ-PANJ", rooms[tj], language="ru")]})
    for officer, room_id in rooms.items():
        await officer.invite(room_id, bot.user_id)
        await officer.wait_until_joined(room_id, bot.user_id)

    alert = await kz.send_text(rooms[kz], "!alert urgent to:UZ-TERMEZ tlp:amber\n"
                                          "plate: 01A123BC\nWhite Kamaz, heroin in cement.")
    request = await tj.send_text(rooms[tj], "!запрос срочно to:UZ-TERMEZ\n"
                                            "госномер: 01 А 123 ВС\n"
                                            "Чей грузовик? VIN 1M8GDM9AXKP042788")
    told_tj = await tj.wait_for(lambda m: in_thread(m, request), room_id=rooms[tj],
                                sender=bot.user_id)
    assert told_tj.body == (
        "Совпадение (номер 01A123BC, TJ-0001): у поста Zhibek (KZ-ZHIBEK) есть связанные "
        "сведения.\nЧтобы запросить их: !request to:KZ-ZHIBEK ref:TJ-0001"), told_tj.body
    told_kz = await kz.wait_for(lambda m: in_thread(m, alert), room_id=rooms[kz],
                                sender=bot.user_id)
    assert told_kz.body == ("Hit: plate 01A123BC in KZ-0001 is also in TJ-0001 of "
                            "Panj (TJ-PANJ)."), told_kz.body
    for message in tj.messages(rooms[tj], sender=bot.user_id):
        assert "KZ-0001" not in (message.body or "") and "Kamaz" not in (message.body or "")

    # a VIN in free text (TJ's request) hits a VIN field (KZ's second alert)
    second = await kz.send_text(rooms[kz], "!alert urgent to:UZ-TERMEZ\n"
                                           "vin: 1M8GDM9AXKP042788\nSame truck?")
    vin = await kz.wait_for(lambda m: in_thread(m, second), room_id=rooms[kz],
                            sender=bot.user_id)
    assert vin.body == ("Hit: Panj (TJ-PANJ) holds information related to VIN "
                        "1M8GDM9AXKP042788 in KZ-0002.\n"
                        "To ask it: !request to:TJ-PANJ ref:KZ-0002"), vin.body
    owner = await tj.wait_for(lambda m: in_thread(m, request) and "KZ-0002" in (m.body or ""),
                              room_id=rooms[tj], sender=bot.user_id)
    assert owner.body == "Совпадение: VIN 1M8GDM9AXKP042788 из TJ-0001 есть и в KZ-0002 " \
                         "поста Zhibek (KZ-ZHIBEK).", owner.body

    # RED never goes into a room, so it is never matched either
    red = await ask(bot, kz, rooms[kz], "!alert flash to:UZ-TERMEZ tlp:red\nplate: 01A123BC")
    assert "KZ-0003" not in (red.body or ""), red.body
    check = await ask(bot, uz, rooms[uz], "!check plate 01 A 123 BC")
    assert check.body == ("Hit for plate 01A123BC:\n• KZ-0001 of Zhibek (KZ-ZHIBEK)\n"
                          "• TJ-0001 of Panj (TJ-PANJ)"), check.body
    none = await ask(bot, uz, rooms[uz], "!check plate 99X999XX")
    assert none.body == "No hit for plate 99X999XX.", none.body

    unlinked = await ask(bot, kz, rooms[kz], "!unlink KZ-0001 TJ-0001")
    assert (unlinked.body or "").startswith("The link between KZ-0001 and TJ-0001 is dismissed")
    await ask(bot, tj, rooms[tj], "!обновить TJ-0001 снова номер 01A123BC, VIN 1M8GDM9AXKP042788")
    await ask(bot, kz, rooms[kz], "!ping")  # the update was handled before this answer
    assert len(hits_in(kz, rooms[kz], bot.user_id, alert)) == 1
