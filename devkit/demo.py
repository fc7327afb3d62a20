"""`liaison demo`: a local homeserver, the bot, and scripted officers talking to it.

Everything is real: Synapse on loopback, the bot as its own process, and each
officer a matrix-nio client with its own device. What the terminal shows is
what each officer's client decrypted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import logging
import re
import secrets
import shutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from devkit.botprocess import BotProcess
from devkit.officer import Officer, SeenMessage
from devkit.push_rules import Verdict
from devkit.synapse import LocalSynapse, free_port


@dataclass(frozen=True)
class DemoPost:
    post_id: str
    names: dict[str, str]
    country: str
    agency: str
    language: str
    timezone: str
    officer: str


DEMO_POSTS = (
    DemoPost("KZ-ZHIBEK-ZHOLY", {"en": "Zhibek Zholy border post", "ru": "Погранпост Жибек Жолы",
                                 "ar": "مركز جيبيك جولي الحدودي"},
             "KZ", "border", "ru", "Asia/Almaty", "aigerim"),
    DemoPost("UZ-TERMEZ", {"en": "Termez customs post", "ru": "Таможенный пост Термез"},
             "UZ", "customs", "en", "Asia/Tashkent", "bekzod"),
    DemoPost("AF-HAIRATAN", {"en": "Hairatan border post", "ru": "Погранпост Хайратан",
                             "ar": "مركز حيرتان الحدودي"},
             "AF", "border", "ar", "Asia/Kabul", "ahmad"),
)
"""One case crosses the three working languages: Almaty writes in Russian, Termez reads
English, Hairatan reads Arabic (right to left, Kabul time at +4:30)."""


class Narrator:
    """Prints the conversation as each officer's client decrypted it."""

    def __init__(self) -> None:
        self.colour = sys.stdout.isatty()

    def _style(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def step(self, text: str) -> None:
        print("\n" + self._style("1", f"== {text}"), flush=True)

    def said(self, post: str, who: str, body: str) -> None:
        print(f"[{post}] {self._style('36', who)} → {body}", flush=True)

    def saw(self, post: str, reader: str, message: SeenMessage,
            verdict: Verdict | None = None) -> None:
        lock = "🔒" if message.encrypted else "⚠ unencrypted"
        header = f"[{post}] {self._style('33', 'liaison')} ({lock}, as {reader} decrypted it):"
        body = textwrap.indent(message.body or "", "    ")
        print(f"{header}\n{body}", flush=True)
        if verdict is not None:
            bell = "🔔" if verdict.notify else "🔕"
            print(self._style("35", f"    {bell} {message.msgtype}; push rules on {reader}'s "
                                    f"client: {verdict.describe()}"), flush=True)


def demo_config(synapse: LocalSynapse, rooms: dict[str, str], officers: dict[str, str]
                ) -> dict[str, Any]:
    posts = []
    ids = [p.post_id for p in DEMO_POSTS]
    for post in DEMO_POSTS:
        officer = officers[post.post_id]
        posts.append({
            "id": post.post_id, "names": post.names, "country": post.country,
            "agency": post.agency, "room": rooms[post.post_id], "language": post.language,
            "timezone": post.timezone, "clearance": "AMBER",
            "neighbours": [i for i in ids if i != post.post_id],
            "duty_officers": [officer], "supervisors": [],
        })
    return {"posts": posts, "groups": [{"name": "caricc", "posts": ids}],
            "logging": {"level": "INFO", "format": "text"}}


async def run_demo(workdir: Path) -> int:
    narrator = Narrator()
    # The officers' nio clients warn about routine Olm session set-up; not demo material.
    logging.getLogger("nio").setLevel(logging.ERROR)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    narrator.step(f"Starting a local Synapse homeserver (state in {workdir})")
    synapse = LocalSynapse(workdir / "synapse")
    await synapse.start()
    officers: dict[str, Officer] = {}
    bot: BotProcess | None = None
    try:
        print(f"homeserver at {synapse.url}")
        password = secrets.token_urlsafe(16)
        await synapse.register("liaison", password, displayname="Liaison")
        bot_user = f"@liaison:{synapse.server_name}"

        narrator.step("Registering officers; each post gets an end-to-end encrypted room")
        rooms: dict[str, str] = {}
        for post in DEMO_POSTS:
            officer = await Officer.create(synapse, post.officer, workdir / "officers",
                                           displayname=post.officer.capitalize())
            await officer.start()
            officers[post.post_id] = officer
            rooms[post.post_id] = await officer.create_room(
                post.names["en"], invite=[bot_user], encrypted=True)
            print(f"{post.post_id}: room {rooms[post.post_id]}, officer {officer.user_id}")

        narrator.step("Starting the bot (it accepts the invites and cross-signs its device)")
        metrics_port = free_port()
        config = with_chasing(synapse, demo_config(
            synapse, rooms, {p: o.user_id for p, o in officers.items()}))
        config["metrics"] = {"enabled": True, "port": metrics_port}
        bot = BotProcess(workdir / "bot", synapse, localpart="liaison", password=password,
                         config=config)
        await bot.start()
        print(f"bot {bot.user_id} device {bot.device_id} is ready")
        for post_id, officer in officers.items():
            await officer.wait_until_joined(rooms[post_id], bot.user_id)

        await converse(narrator, officers, rooms, bot.user_id)
        await chase(narrator, synapse, workdir, officers, rooms, bot.user_id)
        await requests_under_the_law(narrator, officers, rooms, bot.user_id)
        await operate(narrator, bot, metrics_port)
        narrator.step("Done. Everything above was end-to-end encrypted between real clients.")
        return 0
    finally:
        for officer in officers.values():
            await officer.stop()
        if bot is not None:
            await bot.stop()
        await synapse.stop()


async def ask(narrator: Narrator, officer: Officer, post_id: str, room_id: str, bot_user: str,
              body: str) -> SeenMessage:
    narrator.said(post_id, officer.user_id, body)
    event_id = await officer.send_text(room_id, body)
    answer = await officer.wait_for(
        lambda m: m.sender == bot_user
        and (m.content.get("m.relates_to") or {}).get("m.in_reply_to", {}).get("event_id")
        == event_id,
        room_id=room_id, timeout=60,
    )
    narrator.saw(post_id, officer.user_id, answer, await officer.push_verdict(answer))
    return answer


CASE_KEY = "org.liaison.case"
ALERT = (
    "!тревога срочно кому:UZ-TERMEZ,AF-HAIRATAN тлп:amber кат:drugs оценка:B2\n"
    "транспорт: белый КамАЗ, номер 01A123BC\n"
    "водитель: Мухаммад Абдулла, 03.02.1980\n"
    "маршрут: مزار شریف -> Хайратан -> Термез\n"
    "прибытие: 18:30\n"
    "Подозрение на героин в грузе цемента. Водитель проходил по делу 2026/117."
)

PLATE_PHOTO = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
"""A 1×1 PNG standing in for a photo of the plate."""


def case_ref(message: SeenMessage) -> str:
    match = re.search(r"([A-Z]{2}-\d{4,})", message.body or "")
    if match is None:
        raise RuntimeError(f"no case reference in the bot's answer: {message.body!r}")
    return match.group(1)


async def relayed(narrator: Narrator, officer: Officer, post_id: str, room_id: str,
                  bot_user: str, ref: str, about: str | None = None) -> SeenMessage:
    def matches(m: SeenMessage) -> bool:
        key = m.content.get(CASE_KEY)
        return (m.sender == bot_user and isinstance(key, dict) and key.get("ref") == ref
                and key.get("about") == about)

    message = await officer.wait_for(matches, room_id=room_id, timeout=60)
    narrator.saw(post_id, officer.user_id, message, await officer.push_verdict(message))
    return message


async def converse(narrator: Narrator, officers: dict[str, Officer], rooms: dict[str, str],
                   bot_user: str) -> None:
    kz, uz, af = "KZ-ZHIBEK-ZHOLY", "UZ-TERMEZ", "AF-HAIRATAN"
    narrator.step("An officer at the Kazakh post checks the bot is there")
    await ask(narrator, officers[kz], kz, rooms[kz], bot_user, "!ping")

    narrator.step("She posts an urgent AMBER alert for Termez and Hairatan, in Russian")
    answer = await ask(narrator, officers[kz], kz, rooms[kz], bot_user, ALERT)
    ref = case_ref(answer)

    narrator.step(f"Termez reads {ref} in English, Hairatan in Arabic at Kabul time")
    uz_case = await relayed(narrator, officers[uz], uz, rooms[uz], bot_user, ref)
    af_case = await relayed(narrator, officers[af], af, rooms[af], bot_user, ref)

    narrator.step("Termez acknowledges with a 👍 reaction; the Kazakh post is told")
    narrator.said(uz, officers[uz].user_id, f"👍 (a reaction on {ref})")
    await officers[uz].react(rooms[uz], uz_case.event_id, "👍")
    await relayed(narrator, officers[kz], kz, rooms[kz], bot_user, ref, "ack")

    narrator.step("Hairatan answers in Arabic in the case's thread; Almaty reads it in its thread")
    said = "شوهدت الشاحنة الساعة 18:40 متجهة نحو الجسر."
    narrator.said(af, officers[af].user_id, f"(in the {ref} thread) {said}")
    await officers[af].send_text(rooms[af], said, thread_root=af_case.event_id)
    await relayed(narrator, officers[kz], kz, rooms[kz], bot_user, ref, "reply")

    narrator.step("The Kazakh officer answers in her thread; both posts read it in theirs")
    said = "Спасибо. Остановите его на мосту, материалы направляем."
    narrator.said(kz, officers[kz].user_id, f"(in the {ref} thread) {said}")
    await officers[kz].send_text(rooms[kz], said,
                                 thread_root=answer.relates_to["m.in_reply_to"]["event_id"])
    await relayed(narrator, officers[uz], uz, rooms[uz], bot_user, ref, "reply")
    await relayed(narrator, officers[af], af, rooms[af], bot_user, ref, "reply")

    narrator.step("She sends a photo of the plate in her thread; both posts' clients decrypt "
                  "the very same bytes, re-encrypted by the bot under a fresh key")
    digest = hashlib.sha256(PLATE_PHOTO).hexdigest()
    narrator.said(kz, officers[kz].user_id,
                  f"(in the {ref} thread) [photo plate.png, {len(PLATE_PHOTO)} bytes,"
                  f" SHA-256 {digest[:16]}…] Номер 01A123BC")
    await officers[kz].send_attachment(
        rooms[kz], PLATE_PHOTO, filename="plate.png", mimetype="image/png",
        caption="Номер 01A123BC", thread_root=answer.relates_to["m.in_reply_to"]["event_id"])
    for post_id in (uz, af):
        photo = await relayed(narrator, officers[post_id], post_id, rooms[post_id], bot_user,
                              ref, "attachment")
        received = await officers[post_id].download_attachment(photo)
        if received != PLATE_PHOTO:
            raise RuntimeError(f"{post_id} decrypted a different photo")
        narrator.step(f"{post_id} decrypted {len(received)} bytes, SHA-256 "
                      f"{hashlib.sha256(received).hexdigest()[:16]}…: identical")

    narrator.step("Hairatan asks Termez about a driver, writing his name in Arabic: the bot "
                  "matches it to the Cyrillic name in " + ref + " and tells both case threads")
    request = await ask(narrator, officers[af], af, rooms[af], bot_user,
                        "!طلب عاجل إلى:UZ-TERMEZ\nالسائق: محمد عبدالله\n"
                        "تاريخ الميلاد: 1980-02-03\nهل تعرفون هذا السائق؟")
    await relayed(narrator, officers[af], af, rooms[af], bot_user, case_ref(request), "hit")
    await relayed(narrator, officers[kz], kz, rooms[kz], bot_user, ref, "hit")

    narrator.step("A group may not receive AMBER: the bot refuses and says why")
    await ask(narrator, officers[kz], kz, rooms[kz], bot_user,
              "!alert urgent to:caricc tlp:amber\nLook out for a blue Volvo")

    narrator.step("The Kazakh officer checks the case and closes it")
    await ask(narrator, officers[kz], kz, rooms[kz], bot_user, f"!status {ref}")
    await ask(narrator, officers[kz], kz, rooms[kz], bot_user,
              f"!close {ref} 40 kg seized at Termez")
    await relayed(narrator, officers[af], af, rooms[af], bot_user, ref, "closed")

    narrator.step("An officer at Termez mistypes a command and gets a useful answer")
    await ask(narrator, officers[uz], uz, rooms[uz], bot_user, "!pign")


# --- chasing: a reminder and an escalation ----------------------------------------------

SUPERVISOR = "rustam"
"""Termez's supervisor; the account is registered when the chase scene starts."""
DEMO_FLASH_POLICY = {
    "acknowledge_within": "5s", "remind_every": "5s", "reminders": 2, "snooze_max": "1m",
    "escalate": [{"after": "8s", "to": ["target-supervisors"]}],
}
"""Seconds instead of minutes, so the demo shows the chase without waiting."""


ANSWER_TIMEOUT_S = 60.0
SHOWN_METRICS = ("liaison_cases_total", "liaison_deliveries_total",
                 "liaison_acknowledgements_total", "liaison_escalations_total",
                 "liaison_outbox_pending", "liaison_time_to_acknowledge_seconds_count")


def with_chasing(synapse: LocalSynapse, config: dict[str, Any]) -> dict[str, Any]:
    """The demo configuration with a flash policy in seconds and a supervisor for Termez;
    Termez is cleared for TLP:RED and lists its officer, so he may be named for RED."""
    for post in config["posts"]:
        if post["id"] == "UZ-TERMEZ":
            post["supervisors"] = [f"@{SUPERVISOR}:{synapse.server_name}"]
            post["clearance"] = "RED"
            post["officers"] = list(post["duty_officers"])
    return {**config, "chasing": {"check_every": "1s",
                                  "policies": {"flash": DEMO_FLASH_POLICY}}}


async def chase(narrator: Narrator, synapse: LocalSynapse, workdir: Path,
                officers: dict[str, Officer], rooms: dict[str, str], bot_user: str) -> None:
    kz, uz = "KZ-ZHIBEK-ZHOLY", "UZ-TERMEZ"
    supervisor = await Officer.create(synapse, SUPERVISOR, workdir / "officers",
                                      displayname=SUPERVISOR.capitalize())
    await supervisor.start()
    try:
        narrator.step("A flash alert that nobody at Termez acknowledges")
        answer = await ask(narrator, officers[kz], kz, rooms[kz], bot_user,
                           "!alert flash to:UZ-TERMEZ\nvehicle: grey Hilux, plate 01B777CA\n"
                           "Crossing the Friendship Bridge now.")
        ref = case_ref(answer)
        await relayed(narrator, officers[uz], uz, rooms[uz], bot_user, ref)

        narrator.step("After 5 seconds the bot reminds Termez, mentioning its duty officer")
        await relayed(narrator, officers[uz], uz, rooms[uz], bot_user, ref, "reminder")

        narrator.step("After 8 seconds it escalates to Termez's supervisor in a direct message")
        direct = await supervisor.accept_invite(timeout=60)
        await relayed(narrator, supervisor, uz, direct, bot_user, ref, "escalation")

        narrator.step("Termez acknowledges; the chase stops and the supervisor is told")
        await ask(narrator, officers[uz], uz, rooms[uz], bot_user, f"!ack {ref}")
        await relayed(narrator, supervisor, uz, direct, bot_user, ref, "taken")

        narrator.step("The supervisor asks for the week's report: a table, then a chart")
        command = await supervisor.send_text(direct, "!report 7d")
        narrator.said(uz, supervisor.user_id, "!report 7d")
        chart = await supervisor.wait_for(
            lambda m: m.msgtype == "m.image"
            and m.relates_to.get("m.in_reply_to", {}).get("event_id") == command,
            room_id=direct, sender=bot_user, timeout=ANSWER_TIMEOUT_S)
        for message in supervisor.messages(direct, sender=bot_user):
            if message.msgtype == "m.notice" and message.relates_to.get(
                    "m.in_reply_to", {}).get("event_id") == command:
                narrator.saw(uz, supervisor.user_id, message)
        png = await supervisor.download_attachment(chart)
        saved = workdir / "report-7d.png"
        saved.write_bytes(png)
        info = chart.content.get("info", {})
        print(f"    chart {chart.body}: {info.get('w')}×{info.get('h')} PNG, {len(png)} bytes, "
              f"uploaded encrypted and decrypted by the supervisor's client; saved as {saved}")
    finally:
        await supervisor.stop()


# --- requests under the law: a deadline class, a delay, TLP:RED to a named officer -------


async def requests_under_the_law(narrator: Narrator, officers: dict[str, Officer],
                                 rooms: dict[str, str], bot_user: str) -> None:
    kz, uz = "KZ-ZHIBEK-ZHOLY", "UZ-TERMEZ"
    narrator.step("A request in the urgent-direct class (Directive 2023/977: answer within "
                  "8 hours of receipt), handling code H1, action: discreet check")
    answer = await ask(narrator, officers[kz], kz, rooms[kz], bot_user,
                       "!запрос срочно кому:UZ-TERMEZ класс:срочный-прямой h:H1 "
                       "действие:скрытно\nномер: 01A123BC\nЧей это автомобиль?")
    ref = case_ref(answer)
    request = await relayed(narrator, officers[uz], uz, rooms[uz], bot_user, ref)

    narrator.step("Termez needs a prosecutor's authorisation: it delays its answer by 12 hours "
                  "with the reason; the Kazakh post is told at once and the chase moves")
    await ask(narrator, officers[uz], uz, rooms[uz], bot_user,
              f"!delay {ref} 12h judicial the prosecutor signs tomorrow morning")
    await relayed(narrator, officers[kz], kz, rooms[kz], bot_user, ref, "delayed")

    narrator.step("Then Termez answers in the case's thread, and the request shows on time")
    said = "Registered to a Termez haulage firm; the owner is known to us."
    narrator.said(uz, officers[uz].user_id, f"(in the {ref} thread) {said}")
    await officers[uz].send_text(rooms[uz], said, thread_root=request.event_id)
    await relayed(narrator, officers[kz], kz, rooms[kz], bot_user, ref, "reply")
    await ask(narrator, officers[kz], kz, rooms[kz], bot_user, f"!status {ref}")

    officer = officers[uz]
    narrator.step(f"TLP:RED to a named officer ({officer.user_id}): the Kazakh room sees only "
                  "the reference and who was named")
    answer = await ask(narrator, officers[kz], kz, rooms[kz], bot_user,
                       f"!тревога срочно тлп:red кому:{officer.user_id}\n"
                       "Источник: водитель Рустам К., встреча с курьером в 18:00")
    ref = case_ref(answer)
    narrator.step(f"{officer.user_id} reads {ref} in an encrypted direct message with the bot")
    direct = await officer.accept_invite(timeout=ANSWER_TIMEOUT_S)
    await relayed(narrator, officer, uz, direct, bot_user, ref)


async def operate(narrator: Narrator, bot: BotProcess, metrics_port: int) -> None:
    """What an operator sees: the figures in a terminal, Prometheus metrics, health."""
    narrator.step("The operator's view: `liaison stats` in a terminal")
    stats = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "liaison.bot", "stats", "-c", str(bot.config_path), "--period", "7d",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await stats.communicate()
    print(textwrap.indent(output.decode().rstrip(), "    "))
    if stats.returncode != 0:
        raise RuntimeError(f"liaison stats exited {stats.returncode}")

    narrator.step(f"…and /metrics and /healthz on http://127.0.0.1:{metrics_port}")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            metrics = await response.text()
        async with session.get(f"http://127.0.0.1:{metrics_port}/healthz") as response:
            health = f"{response.status} {await response.text()}"
    shown = [line for line in metrics.splitlines()
             if line.startswith(SHOWN_METRICS) and not line.startswith("#")]
    print(textwrap.indent("\n".join(shown), "    "))
    print(f"    GET /healthz → {health.strip()}")


def main(argv: list[str] | None = None) -> None:
    """`python -m devkit.demo [--links] [--workdir DIR]`: the demo (`make demo`), or with
    `--links` two countries' bots and a case crossing the link between them
    (`make demo LINKS=1`)."""
    parser = argparse.ArgumentParser(prog="python -m devkit.demo", description=__doc__)
    parser.add_argument("--links", action="store_true",
                        help="two countries, each with its own bot, linked (issue 18)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the demo keeps its state (default: .demo, or .demo/links)")
    args = parser.parse_args(argv)
    if args.links:
        from devkit.demo_links import run_links_demo

        sys.exit(asyncio.run(run_links_demo(args.workdir or Path(".demo") / "links")))
    sys.exit(asyncio.run(run_demo(args.workdir or Path(".demo"))))


if __name__ == "__main__":
    main()
