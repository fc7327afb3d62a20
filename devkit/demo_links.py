"""`python -m devkit.demo --links` (`make demo LINKS=1`): a case crossing a link between two
countries' bots.

Two federating homeservers on loopback: Kazakhstan's, with its bot and the Zhibek Zholy
post, and Uzbekistan's, with its own bot and the Termez post (its duty officer, its
supervisor, its language and its own chasing rules). Neither bot's configuration names
the other's posts: the bots share one encrypted link room and each publishes the posts
it exposes. What the terminal shows is what each officer's client decrypted.
"""

from __future__ import annotations

import logging
import shutil
import textwrap
from pathlib import Path

from devkit.demo import Narrator, ask, case_ref, relayed
from devkit.federation import SynapsePair
from devkit.links import LinkedCountries, LinkedPost, liaison

KZ, UZ = "KZ-ZHIBEK-ZHOLY", "UZ-TERMEZ"
LINKED_KZ = (LinkedPost(KZ, {"en": "Zhibek Zholy border post", "ru": "Погранпост Жибек Жолы",
                             "ar": "مركز جيبيك جولي الحدودي"},
                        "border", "ru", "Asia/Almaty", "aigerim"),)
LINKED_UZ = (LinkedPost(UZ, {"en": "Termez customs post", "ru": "Таможенный пост Термез",
                             "ar": "مركز ترمذ الجمركي"},
                        "customs", "en", "Asia/Tashkent", "bekzod", supervisor="rustam"),)
UZ_POLICY = {"chasing": {"check_every": "1s", "policies": {"flash": {
    "acknowledge_within": "5s", "remind_every": "1m", "reminders": 1,
    "escalate": [{"after": "8s", "to": ["target-supervisors"]}]}}}}
"""Uzbekistan's own flash policy, in seconds so the demo shows it without waiting."""
ALERT = ("!тревога молния кому:UZ-TERMEZ тлп:amber\n"
         "транспорт: серый Hilux, номер 01B777CA\n"
         "Пересекает мост Дружбы сейчас.")
TIMEOUT_S = 90.0


async def run_links_demo(workdir: Path) -> int:
    narrator = Narrator()
    logging.getLogger("nio").setLevel(logging.ERROR)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    narrator.step(f"Two homeservers that federate: Kazakhstan's and Uzbekistan's (state in "
                  f"{workdir})")
    pair = SynapsePair(workdir / "servers")
    await pair.start()
    try:
        print(f"Kazakhstan: {pair.home.server_name}   Uzbekistan: {pair.partner.server_name}")
        narrator.step("Each country runs its own bot with its own posts. The operators "
                      "exchange `liaison identity` keys by phone; a Kazakh operator creates "
                      "the encrypted link room and invites both bots")
        world = await LinkedCountries.create(pair, workdir, kz_posts=LINKED_KZ,
                                             uz_posts=LINKED_UZ, uz_config=UZ_POLICY)
        try:
            await scenes(narrator, world)
        finally:
            await world.close()
        narrator.step("Done. Each bot kept its own record; everything above crossed the "
                      "border end-to-end encrypted.")
        return 0
    finally:
        await pair.stop()


async def scenes(narrator: Narrator, world: LinkedCountries) -> None:
    kz, uz = world.kz, world.uz
    aigerim, bekzod = kz.officer(KZ), uz.officer(UZ)
    rustam = uz.supervisors[UZ]
    for side in world.countries:
        other = world.other(side)
        print(f"{side.code} bot {side.bot.user_id}: pins {other.code}'s master key "
              f"{other.master_key}; accepted {other.code}'s directory version "
              f"{await world.accepted_version(side)}")

    narrator.step("The Kazakh post asks what the link offers: Termez comes from Uzbekistan's "
                  "directory, not from Kazakhstan's configuration")
    await ask(narrator, aigerim, KZ, kz.room(KZ), kz.bot.user_id, "!posts")

    narrator.step("She sends a flash alert to Termez, in Russian")
    answer = await ask(narrator, aigerim, KZ, kz.room(KZ), kz.bot.user_id, ALERT)
    ref = case_ref(answer)

    narrator.step(f"Termez reads {ref} in English, from Uzbekistan's own bot")
    case = await relayed(narrator, bekzod, UZ, uz.room(UZ), uz.bot.user_id, ref)

    narrator.step("Nobody acknowledges: Uzbekistan's bot chases by Uzbek rules, then "
                  "escalates to Termez's supervisor")
    await relayed(narrator, bekzod, UZ, uz.room(UZ), uz.bot.user_id, ref, "reminder")
    direct = await rustam.accept_invite(timeout=TIMEOUT_S)
    await relayed(narrator, rustam, UZ, direct, uz.bot.user_id, ref, "escalation")

    narrator.step("Termez acknowledges with a 👍; the Kazakh post is told in its thread")
    narrator.said(UZ, bekzod.user_id, f"👍 (a reaction on {ref})")
    await bekzod.react(uz.room(UZ), case.event_id, "👍")
    await relayed(narrator, aigerim, KZ, kz.room(KZ), kz.bot.user_id, ref, "ack")

    narrator.step("Termez answers in the case's thread; Zhibek Zholy reads it in its thread")
    said = "Stopped at the bridge, driver detained."
    narrator.said(UZ, bekzod.user_id, f"(in the {ref} thread) {said}")
    await bekzod.send_text(uz.room(UZ), said, thread_root=case.event_id)
    await relayed(narrator, aigerim, KZ, kz.room(KZ), kz.bot.user_id, ref, "reply")

    narrator.step("AMBER+STRICT never crosses a link: the Kazakh bot refuses and says why")
    await ask(narrator, aigerim, KZ, kz.room(KZ), kz.bot.user_id,
              "!alert urgent to:UZ-TERMEZ tlp:amber+strict\nSource meets the courier at 18:00")

    narrator.step(f"!status {ref} on both sides of the link")
    await ask(narrator, aigerim, KZ, kz.room(KZ), kz.bot.user_id, f"!status {ref}")
    await ask(narrator, bekzod, UZ, uz.room(UZ), uz.bot.user_id, f"!status {ref}")

    narrator.step("Each operator checks the link: `liaison link check`")
    for side in world.countries:
        code, output = await liaison(side.bot, "link", "check")
        print(f"    [{side.code}] exit {code}")
        print(textwrap.indent(output.rstrip(), "    "))
        if code != 0:
            raise RuntimeError(f"liaison link check exited {code} on the {side.code} side")

