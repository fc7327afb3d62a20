"""Arabic, English, Russian — and every post's own clock: the catalogues, right-to-left
rendering, times typed and shown across zones, help and errors in the reader's
language, and `!lang`."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from babel import Locale
from babel.messages.mofile import read_mo, write_mo

from devkit import catalogues
from liaison.bot.directory import Directory
from liaison.commands.case_render import CASE_KEY
from liaison.commands.errors import CommandError
from liaison.commands.localtime import (
    field_time_ms,
    format_elapsed,
    format_time,
    format_time_for,
    read_day_clock,
    to_ms,
    wall_clock,
)
from liaison.commands.parser import parse_case
from liaison.commands.registry import CommandRegistry, Invocation, split_command
from liaison.commands.render import (
    FSI,
    LRI,
    PDI,
    Code,
    Mention,
    Relayed,
    render_command_error,
    render_notice,
)
from liaison.commands.texts import MESSAGES, Term, catalogue, text
from liaison.config import Config, parse_config
from liaison.handlers import default_registry
from liaison.handlers.context import Services
from liaison.handlers.language import language_code
from liaison.storage import audit, outbox
from liaison.storage.db import Database
from tests.unit.test_case_commands import FixedClock

ALMATY, KABUL, TEHRAN, ISTANBUL = "Asia/Almaty", "Asia/Kabul", "Asia/Tehran", "Europe/Istanbul"
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ms(*args: int) -> int:
    return to_ms(utc(*args))


# --- the catalogues -----------------------------------------------------------------------


@pytest.mark.parametrize("language", catalogues.TRANSLATED)
def test_every_message_is_translated_current_and_has_the_english_placeholders(
        language: str) -> None:
    assert catalogues.problems(language) == []


def test_the_check_finds_missing_stale_and_misplaced_entries() -> None:
    english = {"a.one": "One {ref}.", "a.two": "Two.", "a.three": "Three {post}."}
    plurals = {"p.ok": ("{count} post", "{count} posts"), "p.few": ("{count} day", "{count} days"),
               "p.bad": ("{count} line", "{count} lines")}
    catalog = catalogues.template(english, plurals)
    catalog.locale = Locale("ru")  # three plural forms
    catalog["a.one"].string = "Один {ref}."
    catalog["a.three"].string = "Три {пост}."
    catalog["p.ok"].string = ("{count} пост", "{count} поста", "{count} постов")
    catalog["p.few"].string = ("{count} день", "{count} дня")  # Russian needs three
    catalog["p.bad"].string = ("{count} строка", "{count} строки", "{n} строк")
    catalog.add("a.gone", "Ушло", auto_comments=[catalogues.english_comment("Gone.")])
    changed = {**english, "a.one": "One {ref}, changed.", "a.four": "Four."}
    found = catalogues.problems("ru", changed, catalog, {**plurals, "p.new": ("a", "b")})
    assert found == [
        "ru: a.one: stale, translated from other English",
        "ru: a.two: not translated",
        "ru: a.three: placeholders ['пост'], the English has ['post']",
        "ru: p.few: not translated (needs 3 plural forms)",
        "ru: p.bad: form 2: placeholders ['n'], the English has ['count']",
        "ru: a.gone: stale, no such message id any more",
        "ru: a.four: missing",
        "ru: p.new: missing",
    ]


@pytest.mark.parametrize(("language", "count", "expected"), [
    ("en", 1, "1 more post is in the table only."),
    ("en", 2, "2 more posts are in the table only."),
    ("ru", 1, "Ещё 1 пост есть только в таблице."),
    ("ru", 3, "Ещё 3 поста есть только в таблице."),
    ("ru", 5, "Ещё 5 постов есть только в таблице."),
    ("ru", 21, "Ещё 21 пост есть только в таблице."),
    ("ru", 12, "Ещё 12 постов есть только в таблице."),
    ("ar", 2, "مركزان آخران (2) في الجدول فقط."),
    ("ar", 3, "3 مراكز أخرى في الجدول فقط."),
    ("ar", 11, "11 مركزًا آخر في الجدول فقط."),
    ("ar", 100, "100 مركز آخر في الجدول فقط."),
])
def test_plural_messages_take_the_form_each_language_needs(language: str, count: int,
                                                          expected: str) -> None:
    assert text("chart.ack.more", language, count=count) == expected


def test_a_plural_message_needs_its_count() -> None:
    with pytest.raises(TypeError, match="count"):
        text("count.posts", "en")


def test_update_keeps_translations_and_marks_changed_english_fuzzy() -> None:
    english = dict(MESSAGES)
    english["case.outcome"] = "Result:"
    english["brand.new"] = "New."
    del english["render.truncated"]
    merged = catalogues.update("ru", english)
    assert merged["case.sent"].string == catalogue("ru")["case.sent"]
    assert merged["case.outcome"].fuzzy
    assert merged["brand.new"].string == ""
    assert merged.get("render.truncated") is None


def test_compiled_catalogue_says_what_the_po_says() -> None:
    for language in catalogues.TRANSLATED:
        compiled = io.BytesIO()
        write_mo(compiled, catalogues.read(catalogues.catalogue_path(language), language))
        compiled.seek(0)
        from_mo = {m.id: m.string for m in read_mo(compiled) if m.id and isinstance(m.id, str)}
        assert from_mo == dict(catalogue(language))


def test_text_renders_terms_times_and_numbers_in_the_readers_language() -> None:
    assert text("error.targets_too_many", "en", count=1200, limit=32) == (
        "1,200 targets; the limit is 32.")
    assert text("error.targets_too_many", "ru", count=1200, limit=32) == (
        "1\xa0200 адресатов; допускается не более 32.")
    assert text("error.update_finished", "ar", ref="KZ-0042", state=Term("case.state.closed")) \
        == "القضية KZ-0042 مغلقة؛ لا تقبل مزيدًا من التحديثات."
    assert text("noun.ref", "xx") == "The case reference"  # unknown language: English


def test_tlp_labels_stay_in_english_capitals_in_every_language() -> None:
    for language in catalogues.TRANSLATED:
        for msg_id, english in MESSAGES.items():
            for label in ("TLP:RED", "TLP:AMBER+STRICT", "TLP:AMBER"):
                if label in english:
                    assert label in text(msg_id, language), (language, msg_id)


# --- times across zones ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "language", "shown"),
    [
        (ALMATY, "en", "2026-05-01 23:50 +05:00"),
        (KABUL, "en", "2026-05-01 23:20 +04:30"),
        (TEHRAN, "ru", "01.05.2026 22:20 UTC+03:30"),
        (ISTANBUL, "ar", "1 مايو 2026، 21:50 UTC+03:00"),
    ],
)
def test_times_are_shown_in_the_readers_zone_with_the_offset(zone: str, language: str,
                                                             shown: str) -> None:
    assert format_time(ms(2026, 5, 1, 18, 50), zone, language) == shown


def test_the_origins_time_is_beside_when_the_offsets_differ_even_across_midnight() -> None:
    at = ms(2026, 5, 1, 19, 10)  # 00:10 on 2 May in Almaty, 23:40 on 1 May in Kabul
    assert format_time_for(at, KABUL, "en", origin_timezone=ALMATY) == (
        "2026-05-01 23:40 +04:30 (sender's time 2026-05-02 00:10 +05:00)")
    assert format_time_for(at, TEHRAN, "ru", origin_timezone=ISTANBUL) == (
        "01.05.2026 22:40 UTC+03:30 (у отправителя 22:10 UTC+03:00)")
    assert format_time_for(at, ALMATY, "en", origin_timezone="Asia/Tashkent") == (
        "2026-05-02 00:10 +05:00")  # the same offset: nothing beside


def test_a_clock_time_is_read_in_the_senders_zone_across_midnight() -> None:
    now = utc(2026, 5, 1, 19, 0)  # 00:00 on 2 May in Almaty, 23:30 on 1 May in Kabul
    almaty, istanbul, kabul = ZoneInfo(ALMATY), ZoneInfo(ISTANBUL), ZoneInfo(KABUL)
    assert read_day_clock("06:00", now=now, tz=almaty) == utc(2026, 5, 2, 1, 0)
    assert read_day_clock("23:45", now=now, tz=istanbul) == utc(2026, 5, 1, 20, 45)
    assert read_day_clock("завтра 00:15", now=now, tz=kabul) == utc(2026, 5, 1, 19, 45)
    assert read_day_clock("غدا 09:00", now=now, tz=ZoneInfo(TEHRAN)) == utc(2026, 5, 2, 5, 30)
    assert read_day_clock("tomorrow", now=now, tz=kabul) is None


def test_due_in_a_kabul_room_is_read_at_plus_four_thirty_and_refused_once_past() -> None:
    now = utc(2026, 5, 1, 19, 0)  # 23:30 in Kabul
    kabul = ZoneInfo(KABUL)
    draft = parse_case("request", "urgent due:tomorrow 00:15", ["Кто владелец?"], now=now,
                       tz=kabul)
    assert draft.due == utc(2026, 5, 1, 19, 45)
    with pytest.raises(CommandError) as caught:
        parse_case("request", "urgent due:00:15", ["Кто владелец?"], now=now, tz=kabul)
    assert caught.value.message_in("ar") == (
        "المهلة 00:15 قد انقضت: الوقت الآن 1 مايو 2026، 23:30 UTC+04:30 بتوقيت Asia/Kabul.")


def test_a_wall_clock_time_the_clocks_skip_or_repeat_is_refused_in_the_senders_language() -> None:
    with pytest.raises(CommandError) as gap:
        wall_clock(utc(2027, 3, 28).date(), 2, 30, BERLIN, "02:30")
    assert gap.value.message_in("ru") == (
        "Времени 02:30 в поясе Europe/Berlin не существует: в этот момент переводят часы. "
        "Укажите другое время.")
    with pytest.raises(CommandError) as repeat:
        wall_clock(utc(2026, 10, 25).date(), 2, 30, BERLIN, "02:30")
    assert repeat.value.msg_id == "error.due_ambiguous"
    assert "2026-10-25T02:30+02:00" in repeat.value.message_in("ar")


def test_an_eta_field_names_a_time_in_the_origins_zone_on_the_day_it_was_sent() -> None:
    sent = ms(2026, 5, 1, 18, 50)  # 23:50 in Almaty
    assert field_time_ms("18:30", created_ms=sent, timezone=ALMATY) == ms(2026, 5, 1, 13, 30)
    assert field_time_ms("завтра 06:00", created_ms=sent, timezone=ALMATY) == ms(2026, 5, 2, 1, 0)
    assert field_time_ms("2026-05-02 00:30", created_ms=sent, timezone=ISTANBUL) == (
        ms(2026, 5, 1, 21, 30))
    assert field_time_ms("about an hour", created_ms=sent, timezone=ALMATY) is None
    assert field_time_ms("25:00", created_ms=sent, timezone=ALMATY) is None


def test_durations_read_naturally_in_each_language() -> None:
    ninety = timedelta(minutes=90)
    assert [format_elapsed(ninety, language) for language in ("en", "ru", "ar")] == [
        "1h30m", "1 ч 30 мин", "1 س 30 د"]
    assert format_elapsed(timedelta(0), "ru") == "0 с"


# --- right to left --------------------------------------------------------------------------


def test_an_arabic_notice_is_right_to_left_with_latin_isolated_in_both_bodies() -> None:
    notice = render_notice(
        [Code("KZ-0042"), " " + text("case.ack.done", "ar", ref="KZ-0042",
                                     origin="Zhibek (KZ-ZHIBEK)")],
        [Mention("@aigerim:example.org")],
        Relayed("vehicle: white Kamaz, plate 01A123BC\nالمركبة: كاماز 01A123BC"),
        language="ar")
    assert notice.html.startswith('<div dir="rtl">') and notice.html.endswith("</div>")
    for body in (notice.text, notice.html):
        assert f"{LRI}KZ-0042{PDI}" in body
        assert f"{LRI}Zhibek{PDI} ({LRI}KZ-ZHIBEK{PDI})" in body
        assert f"{LRI}@aigerim:example.org{PDI}" in body
        assert f"{FSI}{LRI}vehicle{PDI}: " in body
        assert f"{FSI}المركبة: كاماز {LRI}01A123BC{PDI}{PDI}" in body


def test_officer_text_cannot_bring_its_own_isolates_or_overrides() -> None:
    notice = render_notice(Relayed(f"a{LRI}b\u202ec{PDI}{PDI}"), language="ar")
    assert notice.text == f"{FSI}{LRI}abc{PDI}{PDI}"


def test_english_and_russian_notices_are_left_to_right_and_untouched() -> None:
    for language in ("en", "ru"):
        notice = render_notice([Code("KZ-0042"), " текст"], language=language)
        assert notice.text == "KZ-0042 текст" and "dir=" not in notice.html


# --- help and errors in the reader's language -------------------------------------------------


def test_help_is_generated_in_each_language_with_its_own_command_words() -> None:
    registry = default_registry()
    ru = registry.help_overview("ru")
    assert ru.startswith("Команды:\n")
    assert "!alert, !тревога, !ориентировка — Направить ориентировку другим постам." in ru
    ar = registry.help_overview_notice("ar")
    assert f"{LRI}!alert{PDI}, !تنبيه — إرسال تنبيه إلى مراكز أخرى." in ar.text
    assert ar.html.startswith('<div dir="rtl">')
    detail = registry.help_for("запрос", "ru")
    assert detail.startswith("Формат: !request ПРИОРИТЕТ [to:КОМУ]")
    assert "Кому доступна: сотрудникам поста" in detail


def test_an_error_is_rendered_in_the_senders_language_with_its_usage_line() -> None:
    with pytest.raises(CommandError) as caught:
        parse_case("alert", "urgant", ["x"], now=utc(2026, 5, 1, 10), tz=ZoneInfo(ALMATY))
    error = caught.value
    ru = render_command_error(error, "ru")
    assert ru.text == (
        "urgant — не приоритет; укажите молния (минуты), срочно (часы) или обычно (дни).\n"
        "Возможно, вы имели в виду: urgent?\n"
        "Формат: !alert ПРИОРИТЕТ [to:КОМУ] [tlp:УРОВЕНЬ] [cat:КАТЕГОРИЯ] [grade:XN] [ref:ДЕЛО]"
        " [h:КОД] [action:ДЕЙСТВИЕ]")
    ar = render_command_error(error, "ar")
    assert ar.html.startswith('<div dir="rtl">')
    assert ar.text.startswith(f"{LRI}urgant{PDI} ليست أولوية")


# --- !lang and cases across languages -----------------------------------------------------------

KZ_ROOM, AF_ROOM, UZ_ROOM, DM_ROOM = ("!kz:liaison.example", "!af:liaison.example",
                                      "!uz:liaison.example", "!dm:liaison.example")
KZ, AF, UZ, VISITOR = ("@aigerim:liaison.example", "@ahmad:liaison.example",
                       "@bekzod:liaison.example", "@visitor:liaison.example")
ROOMS = frozenset({KZ_ROOM, AF_ROOM, UZ_ROOM, DM_ROOM})


def post(post_id: str, room: str, timezone: str, language: str, names: dict[str, str],
         **extra: Any) -> dict[str, Any]:
    return {"id": post_id, "names": names, "country": post_id[:2], "agency": "border",
            "room": room, "timezone": timezone, "language": language, **extra}


CONFIG = {
    "homeserver": {"url": "https://matrix.liaison.example"},
    "bot": {"user_id": "@liaison:liaison.example", "password": {"env": "X"},
            "pickle_key": {"env": "Y"}},
    "data_dir": "data",
    "trust": {"policy": "tofu"},
    "posts": [
        post("KZ-ZHIBEK", KZ_ROOM, ALMATY, "ru",
             {"en": "Zhibek Zholy", "ru": "Жибек Жолы", "ar": "جيبيك جولي"},
             neighbours=["UZ-TERMEZ", "AF-HAIRATAN"], officers=[KZ]),
        post("AF-HAIRATAN", AF_ROOM, KABUL, "ar", {"en": "Hairatan", "ar": "حيرتان"},
             neighbours=["KZ-ZHIBEK"]),
        post("UZ-TERMEZ", UZ_ROOM, "Asia/Tashkent", "ru", {"en": "Termez", "ru": "Термез"}),
    ],
}

ALERT_RU = ("!тревога срочно кому:AF-HAIRATAN,UZ-TERMEZ тлп:amber\n"
            "транспорт: белый КамАЗ, номер 01A123BC\n"
            "маршрут: Хайратан -> مزار شریف\n"
            "прибытие: 18:30\n"
            "Подозрение на героин в грузе цемента.")


@dataclass
class Bot:
    db: Database
    config: Config
    registry: CommandRegistry = field(default_factory=default_registry)
    clock: FixedClock = field(default_factory=lambda: FixedClock(utc(2026, 5, 1, 12, 0)))
    events: int = 0

    def __post_init__(self) -> None:
        self.languages = Directory(self.config)

    async def say(self, room_id: str, sender: str, body: str) -> Any:
        """One command as the router runs it: the rooms' languages read again first."""
        await self.languages.refresh(self.db)
        parsed = split_command(body)
        assert parsed is not None
        word, args, lines = parsed
        self.events += 1
        language = self.languages.language_for_room(room_id)
        async with self.db.transaction() as conn:
            services = Services(config=self.languages.config, clock=self.clock, conn=conn,
                                bot_user_id="@liaison:liaison.example", joined_rooms=ROOMS,
                                encrypted_rooms=ROOMS)
            try:
                spec = self.registry.resolve(word)
                return await spec.handler(Invocation(
                    command=spec, args=args, lines=lines, room_id=room_id, sender=sender,
                    event_id=f"$event{self.events}", sent_at=self.clock.at, now=self.clock.at,
                    post=self.languages.post_for_room(room_id),
                    audience=services.audience(room_id), language=language,
                    bot_device_id="DEVICE", services=services))
            except CommandError as error:
                return render_command_error(error, language)

    async def relayed(self, room_id: str) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await conn.execute_fetchall("SELECT id FROM outbox ORDER BY id")
            messages = [await outbox.get(conn, row[0]) for row in rows]
        return [m.content for m in messages if m is not None and m.room_id == room_id]


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    db = await Database.open(tmp_path / "liaison.db")
    try:
        yield Bot(db, parse_config(json.dumps(CONFIG)))
    finally:
        await db.close()


async def test_a_russian_alert_reaches_kabul_in_arabic_and_termez_in_russian(bot: Bot) -> None:
    answer = await bot.say(KZ_ROOM, KZ, ALERT_RU)
    assert answer.text == ("KZ-0001: Срочная ориентировка. Адресаты:\n"
                           "• Hairatan (AF-HAIRATAN)\n• Термез (UZ-TERMEZ)")
    [af] = await bot.relayed(AF_ROOM)
    assert af[CASE_KEY]["ref"] == "KZ-0001"
    assert af["formatted_body"].startswith('<div dir="rtl">')
    lines = af["body"].split("\n")
    assert lines[0] == f"{LRI}TLP:AMBER{PDI} تنبيه عاجل {LRI}KZ-0001{PDI}"
    # sent 12:00 UTC: 17:00 in Almaty, 16:30 in Kabul
    assert lines[2] == (f"من جيبيك جولي ({LRI}KZ-ZHIBEK{PDI})، {LRI}1{PDI} مايو {LRI}2026{PDI}، "
                        f"{LRI}16:30 UTC+04:30{PDI} (بتوقيت الجهة المرسِلة: "
                        f"{LRI}17:00 UTC+05:00{PDI})")
    # Known field keys typed in Russian are read in Arabic; the values stay as typed.
    assert lines[3] == f"المركبة: {FSI}белый КамАЗ, номер {LRI}01A123BC{PDI}{PDI}"
    assert lines[4] == f"المسار: {FSI}Хайратан -> مزار شریف{PDI}"
    assert lines[5] == (f"الوصول: {LRI}1{PDI} مايو {LRI}2026{PDI}، {LRI}18:00 UTC+04:30{PDI} "
                        f"(بتوقيت الجهة المرسِلة: {LRI}18:30 UTC+05:00{PDI})")
    [uz] = await bot.relayed(UZ_ROOM)
    assert "dir=" not in uz["formatted_body"]
    assert uz["body"].split("\n")[:4] == [
        "TLP:AMBER Срочная ориентировка KZ-0001",
        "Только внутри вашего ведомства и только тем, кому это необходимо по службе.",
        "От: Жибек Жолы (KZ-ZHIBEK), 01.05.2026 17:00 UTC+05:00",
        "транспорт: белый КамАЗ, номер 01A123BC",
    ]
    assert "прибытие: 01.05.2026 18:30 UTC+05:00" in uz["body"]


async def test_known_field_keys_are_translated_and_unknown_ones_kept_verbatim(
        bot: Bot) -> None:
    await bot.say(UZ_ROOM, UZ, "!lang en")
    await bot.say(KZ_ROOM, KZ, "!тревога срочно кому:UZ-TERMEZ\n"
                               "прибытие: 18:30\nгруз: цемент\nпломба: 77-12\nHeroin.")
    [uz] = await bot.relayed(UZ_ROOM)
    assert uz["body"].split("\n")[3:6] == [
        "eta: 2026-05-01 18:30 +05:00", "cargo: цемент",
        "пломба: 77-12",  # not a key the bot knows: as typed
    ]


async def test_lang_changes_the_rooms_language_stored_and_audited(bot: Bot) -> None:
    answer = await bot.say(UZ_ROOM, UZ, "!lang ar")
    assert answer.text == "سيكتب البوت في هذه الغرفة باللغة العربية من الآن."
    assert answer.html.startswith('<div dir="rtl">')
    assert f"{LRI}pong{PDI} — الجهاز {LRI}DEVICE{PDI}" in (await bot.say(UZ_ROOM, UZ, "!ping")).text
    await bot.say(KZ_ROOM, KZ, "!alert urgent to:UZ-TERMEZ\nLook out for a blue Volvo")
    [relayed] = await bot.relayed(UZ_ROOM)
    assert relayed["body"].startswith(f"{LRI}TLP:GREEN{PDI} تنبيه عاجل")
    assert (await bot.say(UZ_ROOM, UZ, "!язык русский")).text == (
        "Теперь бот пишет в этой комнате по-русски.")
    async with bot.db.read() as conn:
        logged = [entry for entry in await audit.entries(conn) if entry.action == "language-set"]
    assert [(entry.actor, entry.room_id, entry.detail["language"], entry.detail["was"])
            for entry in logged] == [(UZ, UZ_ROOM, "ar", "ru"), (UZ, UZ_ROOM, "ru", "ar")]


async def test_lang_refuses_an_unknown_language_in_the_senders_language(bot: Bot) -> None:
    answer = await bot.say(KZ_ROOM, KZ, "!lang de")
    assert answer.text == ("de — такого языка нет; укажите en, ru или ar.\n"
                           "Формат: !lang en|ru|ar")
    assert (await bot.say(KZ_ROOM, KZ, "!lang")).text.startswith("Бот пишет в этой комнате")


async def test_only_the_posts_officers_change_its_rooms_language(bot: Bot) -> None:
    answer = await bot.say(KZ_ROOM, VISITOR, "!lang en")
    assert answer.text.startswith("Вы не числитесь сотрудником поста KZ-ZHIBEK")
    assert (await bot.say(DM_ROOM, VISITOR, "!lang ar")).text.startswith("سيكتب البوت")


def test_language_names_are_read_in_any_of_the_three() -> None:
    assert [language_code(word) for word in ("EN", "Русский", "العربية", "عربي", "de")] == [
        "en", "ru", "ar", "ar", None]


def test_config_with_room_languages_reindexes_the_posts(tmp_path: Path) -> None:
    config = parse_config(json.dumps(CONFIG))
    assert config.with_room_languages({DM_ROOM: "ar"}) is config
    changed = config.with_room_languages({UZ_ROOM: "ar"})
    termez = changed.post_by_room(UZ_ROOM)
    assert termez is not None and termez.language == "ar"
    assert changed.post_by_id("UZ-TERMEZ") is termez
    original = config.post_by_room(UZ_ROOM)
    assert original is not None and original.language == "ru"

