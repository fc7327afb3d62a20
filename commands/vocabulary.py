"""The vocabulary officers type: command words, priority names, option keys, the word for
"neighbours", languages, days and field keys, each with Russian and Arabic aliases; and
the fold they are compared in."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Mapping

from liaison.commands.model import Priority

COMMAND_ALIASES: Mapping[str, tuple[str, ...]] = {
    "alert": ("тревога", "ориентировка", "تنبيه"),
    "request": ("запрос", "طلب"),
    "ack": ("принято", "تم"),
    "update": ("обновить", "تحديث"),
    "close": ("закрыть", "إغلاق"),
    "cancel": ("отмена", "إلغاء"),
    "status": ("статус", "حالة"),
    "pending": ("открытые", "معلقة"),
    "help": ("помощь", "مساعدة"),
    "ping": ("пинг", "فحص"),
    "lang": ("язык", "لغة"),
    "report": ("отчёт", "تقرير"),
    "escalations": ("эскалации", "تصعيدات"),
    "snooze": ("отложить", "تأجيل"),
    "delay": ("задержка", "تمديد"),
    "refuse": ("отказ", "رفض"),
    "permit": ("разрешить", "إذن"),
    "check": ("проверить", "تحقق"),
    "links": ("связи", "روابط"),
    "unlink": ("отвязать", "فك"),
}
"""Aliases per command name; matched after `fold_word` (so `отчет` finds `отчёт`)."""

PRIORITY_WORDS: Mapping[Priority, tuple[str, ...]] = {
    Priority.FLASH: ("flash", "молния", "فوري"),
    Priority.URGENT: ("urgent", "срочно", "срочный", "عاجل"),
    Priority.ROUTINE: ("routine", "обычно", "плановый", "عادي"),
}

OPTION_KEYS: Mapping[str, tuple[str, ...]] = {
    "to": ("кому", "إلى"),
    "tlp": ("тлп",),
    "cat": ("category", "кат", "категория", "فئة"),
    "grade": ("оценка", "تقييم"),
    "ref": ("дело", "مرجع"),
    "due": ("срок", "موعد"),
}
"""First-line option keys (`to:UZ-TERMEZ`) and their aliases; canonical form first."""

NEIGHBOUR_WORDS: tuple[str, ...] = ("neighbours", "neighbors", "соседи", "الجيران", "جيران")
"""Target words meaning "the origin post's neighbours"; canonical form first."""

LANGUAGE_WORDS: Mapping[str, tuple[str, ...]] = {
    "en": ("english", "eng", "английский", "англ", "الإنجليزية", "انجليزي", "إنجليزي"),
    "ru": ("russian", "rus", "русский", "рус", "الروسية", "روسي"),
    "ar": ("arabic", "ara", "арабский", "العربية", "عربي"),
}
"""What `!lang` accepts besides the codes: each language's name in the three."""

DAY_WORDS: Mapping[int, tuple[str, ...]] = {
    0: ("today", "сегодня", "اليوم"),
    1: ("tomorrow", "завтра", "غدا", "غدًا"),
}
"""Words before a clock time (`due: tomorrow 09:00`): days after today in the sender's zone."""

FIELD_KEYS: Mapping[str, tuple[str, ...]] = {
    "vehicle": ("vehicle", "транспорт", "автомобиль", "المركبة", "مركبة", "السيارة"),
    "plate": ("plate", "госномер", "номер", "لوحة", "اللوحة", "رقم_اللوحة"),
    "route": ("route", "маршрут", "المسار", "مسار", "الطريق"),
    "eta": ("eta", "arrival", "прибытие", "الوصول", "وصول"),
    "driver": ("driver", "водитель", "السائق", "سائق"),
    "cargo": ("cargo", "груз", "الحمولة", "حمولة", "الشحنة"),
    "container": ("container", "контейнер", "الحاوية", "حاوية"),
    "vin": ("vin", "вин", "vin-код", "رقم_الشاصي", "الشاصي", "شاصي"),
    "passport": ("passport", "паспорт", "جواز", "جواز_السفر", "الجواز"),
    "phone": ("phone", "tel", "телефон", "тел", "هاتف", "الهاتف", "جوال"),
    "iban": ("iban", "счёт", "счет", "ايبان", "الآيبان", "حساب"),
    "name": ("name", "фио", "имя", "الاسم", "اسم"),
    "dob": ("dob", "born", "дата рождения", "تاريخ الميلاد", "الميلاد", "مواليد"),
    "nationality": ("nationality", "гражданство", "الجنسية", "جنسية"),
}
"""Case field keys the bot knows, by the key each is shown as (`field.<key>` in the
reader's language), with what officers type for them in English, Russian and Arabic.
Any other key is shown as typed."""

TIME_FIELD_KEYS: tuple[str, ...] = FIELD_KEYS["eta"]
"""Case field keys whose value is a time of day (`eta: 18:30`), shown in each reader's zone."""

ENTITY_FIELDS: Mapping[str, str] = {
    "plate": "plate", "container": "container", "vin": "vin", "passport": "passport",
    "phone": "phone", "iban": "iban", "name": "name", "driver": "name",
    "dob": "dob", "nationality": "nationality",
}
"""Which known field keys (`FIELD_KEYS`) hold an entity that hits are matched on
(`commands.entities`), by the entity kind, or the attribute of a name (`dob`,
`nationality`). A field key typed in any of the three languages counts."""

_ARABIC_MARKS = {chr(c) for c in range(0x064B, 0x0653)} | {"\u0640", "\u0670"}
_ARABIC_ALEFS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا"})
_ARABIC_FOLD = {**dict.fromkeys(map(ord, _ARABIC_MARKS)), **_ARABIC_ALEFS}


@functools.lru_cache(maxsize=4096)
def fold_word(word: str) -> str:
    """The form vocabulary is compared in: NFKC, case-folded, `ё` as `е`, Arabic without
    diacritics or tatweel and with one alef. Used for command words, priorities and
    option keys only, never for identifiers such as post ids."""
    if word.isascii():  # NFKC and the Cyrillic/Arabic rules leave ASCII as it is
        return word.lower()
    folded = unicodedata.normalize("NFKC", word).casefold().replace("ё", "е")
    return folded.translate(_ARABIC_FOLD)
