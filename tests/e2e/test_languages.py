"""One case across Arabic, English and Russian, end to end: a Russian alert from a Kazakh
post reaches an Afghan post in Arabic (right to left, Kabul time with its offset) and an
Uzbek post in Russian; the Afghan officer's Arabic reply reaches the origin's thread
exactly as written. Real Synapse, real encryption, every message as decrypted."""

from __future__ import annotations

import re
from typing import Any

from liaison.commands.render import FSI, LRI, PDI
from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_cases import about_case, replies_to

ALERT_RU = ("!тревога срочно кому:AF-HAIRATAN,UZ-TERMEZ тлп:amber кат:drugs\n"
            "транспорт: белый КамАЗ, номер 01A123BC\n"
            "маршрут: Хайратан -> مزار شریف\n"
            "прибытие: 18:30\n"
            "Подозрение на героин в грузе цемента.")
REPLY_AR = "شوهدت الشاحنة 01A123BC عند جسر الصداقة الساعة 18:40، متجهة شمالًا."


def post(post_id: str, room: str, timezone: str, language: str, names: dict[str, str],
         neighbours: list[str]) -> dict[str, Any]:
    return {"id": post_id, "names": names, "country": post_id[:2], "agency": "border",
            "room": room, "timezone": timezone, "language": language, "neighbours": neighbours}


async def test_a_russian_alert_is_read_in_arabic_at_kabul_and_russian_at_termez(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    kz, af, uz = [await officer_factory(name) for name in ("kz", "af", "uz")]
    rooms = {officer: await officer.create_room("post") for officer in (kz, af, uz)}
    bot = await bot_factory(config={"posts": [
        post("KZ-ZHIBEK", rooms[kz], "Asia/Almaty", "ru",
             {"en": "Zhibek Zholy", "ru": "Жибек Жолы", "ar": "جيبيك جولي"}, ["AF-HAIRATAN"]),
        post("AF-HAIRATAN", rooms[af], "Asia/Kabul", "ar", {"en": "Hairatan", "ar": "حيرتان"},
             ["KZ-ZHIBEK"]),
        post("UZ-TERMEZ", rooms[uz], "Asia/Tashkent", "ru", {"en": "Termez", "ru": "Термез"},
             ["KZ-ZHIBEK"]),
    ]})
    for officer, room_id in rooms.items():
        await officer.invite(room_id, bot.user_id)
        await officer.wait_until_joined(room_id, bot.user_id)

    alert_id = await kz.send_text(rooms[kz], ALERT_RU)
    answer = await kz.wait_for(lambda m: replies_to(m, alert_id), room_id=rooms[kz],
                               sender=bot.user_id)
    assert (answer.body or "").startswith("KZ-0001: Срочная ориентировка. Адресаты:"), answer.body

    in_arabic = await af.wait_for(lambda m: about_case(m, "KZ-0001"), room_id=rooms[af],
                                  sender=bot.user_id)
    assert in_arabic.encrypted
    html = in_arabic.content["formatted_body"]
    assert html.startswith('<div dir="rtl">') and html.endswith("</div>")
    lines = (in_arabic.body or "").split("\n")
    assert lines[0] == f"{LRI}TLP:AMBER{PDI} تنبيه عاجل {LRI}KZ-0001{PDI}", lines
    assert lines[1] == "يُتداول داخل جهتك فقط، وعلى أساس الحاجة إلى المعرفة."
    # Kabul's wall clock with its offset, the sender's Almaty time beside it.
    assert re.fullmatch(
        f"من جيبيك جولي \\({LRI}KZ-ZHIBEK{PDI}\\)، .* {LRI}\\d\\d:\\d\\d UTC\\+04:30{PDI} "
        f"\\(بتوقيت الجهة المرسِلة: .*{LRI}\\d\\d:\\d\\d UTC\\+05:00{PDI}\\)", lines[2]), lines[2]
    # Field keys typed in Russian are read in Arabic (the values as typed).
    assert f"المركبة: {FSI}белый КамАЗ, номер {LRI}01A123BC{PDI}{PDI}" in lines
    assert f"المسار: {FSI}Хайратан -> مزار شریف{PDI}" in lines
    eta = next(line for line in lines if line.startswith("الوصول: "))
    assert f"{LRI}18:00 UTC+04:30{PDI} (بتوقيت الجهة المرسِلة: " in eta, eta
    assert f"{LRI}18:30 UTC+05:00{PDI})" in eta, eta
    assert f"{LRI}!ack KZ-0001{PDI}" in lines[-1]

    in_russian = await uz.wait_for(lambda m: about_case(m, "KZ-0001"), room_id=rooms[uz],
                                   sender=bot.user_id)
    body = in_russian.body or ""
    assert "dir=" not in in_russian.content["formatted_body"]
    assert body.startswith("TLP:AMBER Срочная ориентировка KZ-0001\n"), body
    assert re.search(r"От: Жибек Жолы \(KZ-ZHIBEK\), \d\d\.\d\d\.\d{4} \d\d:\d\d UTC\+05:00\n",
                     body), body
    assert "транспорт: белый КамАЗ, номер 01A123BC" in body
    assert "прибытие: " in body and "18:30 UTC+05:00" in body
    assert body.endswith("Подтвердить получение: !ack KZ-0001")

    await af.send_text(rooms[af], REPLY_AR, thread_root=in_arabic.event_id)
    reply = await kz.wait_for(lambda m: about_case(m, "KZ-0001", "reply"), room_id=rooms[kz],
                              sender=bot.user_id)
    assert reply.relates_to.get("rel_type") == "m.thread"
    assert reply.relates_to.get("event_id") == alert_id
    reply_lines = (reply.body or "").split("\n")
    assert reply_lines[0] == (
        f"TLP:AMBER Ответ по делу KZ-0001 — Hairatan (AF-HAIRATAN) ({af.user_id}):")
    assert reply_lines[1:] == [REPLY_AR]
