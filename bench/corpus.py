"""Realistic alerts and requests as officers type them, in English, Russian and Arabic.

Used by the parser benchmark (as typed, with every alias and a few of the untidy habits
the parser tolerates) and by the flows (English alerts carrying a `tag:` field line that
lets a benchmark find each relayed copy)."""

from __future__ import annotations

ENGLISH = [
    "!alert urgent to:UZ-TERMEZ,TJ-PANJ tlp:amber cat:drugs grade:B2\n"
    "vehicle: white Kamaz, plate 01A123BC\nroute: Hairatan -> Termez\n"
    "Suspected heroin in a cement load.",
    "!alert flash to:neighbours tlp:green cat:precursors\n"
    "vehicle: blue MAN tanker, plate 80B456KA\ncargo: acetic anhydride, 20 t declared as vinegar\n"
    "Driver left the queue at the checkpoint and turned back south.",
    "!request urgent to:KZ-ZHIBEK-ZHOLY tlp:amber ref:UZ-0042 due:4h\n"
    "person: Karimov Aziz, born 1984\npassport: FA1234567\n"
    "Please check entries and exits for the last 90 days.",
    "!alert routine to:caricc tlp:green cat:financial grade:C3\n"
    "Cash couriers crossing on foot in pairs, sums just under the declaration limit.",
    "  !alert urgent to:AF-HAIRATAN tlp:clear\nboat: wooden, two outboard motors\n"
    "location: 3 km downstream of the bridge\nSeen loading bags at 02:10 local time.",
    "!request routine to:TJ-DRUG-CONTROL tlp:green due:2026-06-01T18:00\n"
    "Statistics of seizures on the Panj section for the third quarter, please.",
]

RUSSIAN = [
    "!тревога срочно кому:UZ-TERMEZ,TJ-PANJ тлп:amber кат:drugs оценка:B2\n"
    "транспорт: белый КамАЗ, номер 01A123BC\nмаршрут: Хайратан -> Термез\n"
    "Подозрение на героин в грузе цемента.",
    "!ориентировка молния кому:соседи тлп:green категория:precursors\n"
    "транспорт: синий MAN, цистерна, номер 80B456KA\n"
    "груз: уксусный ангидрид, 20 т, заявлен как уксус\n"
    "Водитель покинул очередь на пункте пропуска и развернулся на юг.",
    "!запрос срочно кому:KZ-ZHIBEK-ZHOLY тлп:amber дело:UZ-0042 срок:4h\n"
    "лицо: Каримов Азиз, 1984 г.р.\nпаспорт: FA1234567\n"
    "Прошу проверить въезды и выезды за последние 90 дней.",
    "!тревога обычно кому:caricc тлп:green кат:financial оценка:C3\n"
    "Наличные перевозят пешком парами, суммы чуть ниже порога декларирования.",
    "!тревога срочный кому:AF-HAIRATAN тлп:clear\nлодка: деревянная, два мотора\n"
    "место: 3 км ниже моста\nЗамечена погрузка мешков в 02:10 по местному времени.",
    "!запрос плановый кому:TJ-DRUG-CONTROL тлп:green срок:2026-06-01T18:00\n"
    "Просим статистику изъятий на участке Пяндж за третий квартал.",
]

ARABIC = [
    "!تنبيه عاجل إلى:UZ-TERMEZ,TJ-PANJ tlp:amber فئة:drugs تقييم:B2\n"
    "المركبة: كاماز بيضاء، لوحة 01A123BC\nالطريق: حيرتان -> ترمذ\n"
    "يشتبه بوجود هيروين في حمولة إسمنت.",
    "!تنبيه فوري إلى:الجيران tlp:green فئة:precursors\n"
    "المركبة: صهريج مان أزرق، لوحة 80B456KA\nالحمولة: أنهيدريد الخل، ٢٠ طن مصرح بها كخل\n"
    "غادر السائق الطابور عند المنفذ وعاد جنوبا.",
    "!طلب عاجل إلى:KZ-ZHIBEK-ZHOLY tlp:amber مرجع:UZ-٠٠٤٢ موعد:4h\n"
    "الشخص: كريموف عزيز، مواليد ١٩٨٤\nجواز: FA1234567\n"
    "يرجى التحقق من الدخول والخروج خلال آخر ٩٠ يوما.",
    "!تنبيه عادي إلى:caricc tlp:green فئة:financial تقييم:C3\n"
    "ناقلو النقد يعبرون سيرا على الأقدام في أزواج بمبالغ أقل بقليل من حد التصريح.",
    "!تنبيه عاجل إلى:AF-HAIRATAN tlp:clear\nالقارب: خشبي بمحركين\n"
    "الموقع: ٣ كم أسفل الجسر\nشوهد تحميل أكياس عند الساعة 02:10 بالتوقيت المحلي.",
    "!طلب عادي إلى:TJ-DRUG-CONTROL tlp:green موعد:2026-06-01T18:00\n"
    "نرجو إحصاءات المضبوطات على قطاع بنج للربع الثالث.",
]

CORPUS = {"en": ENGLISH, "ru": RUSSIAN, "ar": ARABIC}


def flow_alert(tag: str, *, to: str, tlp: str = "amber", priority: str = "urgent") -> str:
    """An alert for the end-to-end flows: realistic fields, plus `tag:` to find it by."""
    return (f"!alert {priority} to:{to} tlp:{tlp} cat:drugs grade:B2\n"
            f"vehicle: white Kamaz, plate 01A123BC\nroute: Hairatan -> Termez\ntag: {tag}\n"
            "Suspected heroin in a cement load; driver nervous, papers look altered.")


def plain_message(tag: str) -> str:
    """The same words as `flow_alert` without the command: what an officer would type
    straight into the other post's room if there were no bot."""
    return flow_alert(tag, to="UZ-TERMEZ").removeprefix("!")
