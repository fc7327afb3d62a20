"""Element's own crypto stack against the bot: matrix-js-sdk with Rust crypto, the code
Element Web and Desktop encrypt with, in both of its device-isolation modes.

"all": Element shares room keys with every device and decrypts from every device (the
default). "signed" ("exclude insecure devices"): Element shares keys only with devices
their owner has cross-signed, and refuses to decrypt messages from any other device,
so the bot is only usable there because it cross-signs its own device.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devkit.botprocess import BotProcess
from devkit.element import ElementMessage, ElementOfficer, Isolation, node_available
from devkit.officer import Officer
from devkit.synapse import LocalSynapse
from liaison.bot.crosssigning import ensure_cross_signed
from liaison.commands.case_render import CASE_KEY
from tests.e2e.conftest import BotFactory, OfficerFactory, post_rooms, unique
from tests.e2e.test_case_flow import in_thread
from tests.e2e.test_cases import about_case, post, replies_to
from tests.e2e.test_chasing import flash_policy
from tests.e2e.test_chasing import post as chase_post
from tests.e2e.test_resilience import FALLBACK_PUBLISHED_MSG, claim_bot_key, wait_for_log

ALERT = (
    "!alert urgent to:UZ-TERMEZ tlp:amber cat:drugs\n"
    "vehicle: white Kamaz, plate 01A123BC\n"
    "Suspected heroin in a cement load."
)


def answers(message: ElementMessage, event_id: str) -> bool:
    relates = message.content.get("m.relates_to") or {}
    return bool(relates.get("m.in_reply_to", {}).get("event_id") == event_id)


@dataclass
class ElementAndNio:
    """An Element officer at KZ-ZHIBEK and a nio officer at UZ-TERMEZ, the bot in both rooms."""

    bot: BotProcess
    uz: Officer
    kz_room: str
    uz_room: str


async def element_and_nio_posts(
    kz: ElementOfficer, officer_factory: OfficerFactory, bot_factory: BotFactory,
    tmp_path: Path, policy: str, **config: Any,
) -> ElementAndNio:
    uz = await officer_factory("uz")
    if policy == "cross-signed":  # a nio officer gets keys from the bot only then
        await ensure_cross_signed(uz.client, tmp_path / "uz-keys.json",
                                  f"devkit-{uz.user_id[1:].split(':')[0]}")
    kz_room = await kz.create_room("KZ post")
    uz_room = await uz.create_room("UZ post")
    bot = await bot_factory(config={
        "posts": [post("KZ-ZHIBEK", kz_room, "Asia/Almaty", ["UZ-TERMEZ"]),
                  post("UZ-TERMEZ", uz_room, "Asia/Tashkent", ["KZ-ZHIBEK"])],
        "trust": {"policy": policy},
        **config,
    })
    await kz.invite(kz_room, bot.user_id)
    await uz.invite(uz_room, bot.user_id)
    await kz.wait_until_joined(kz_room, bot.user_id)
    await uz.wait_until_joined(uz_room, bot.user_id)
    return ElementAndNio(bot, uz, kz_room, uz_room)


@pytest.mark.parametrize(("isolation", "policy"), [("all", "tofu"), ("signed", "cross-signed")])
async def test_an_element_officer_works_a_case_with_a_nio_officer_through_the_bot(
    synapse: LocalSynapse, officer_factory: OfficerFactory, bot_factory: BotFactory,
    tmp_path: Path, isolation: Isolation, policy: str,
) -> None:
    reason = node_available()
    assert reason is None, reason
    kz = await ElementOfficer.create(synapse, unique("kz-element"), tmp_path / "element",
                                     isolation=isolation)
    try:
        assert kz.cross_signed, "Element bootstraps cross-signing at first login"
        posts = await element_and_nio_posts(kz, officer_factory, bot_factory, tmp_path, policy)
        bot, uz, kz_room, uz_room = posts.bot, posts.uz, posts.kz_room, posts.uz_room

        # Element sees the bot's device as signed by its owner: no shield at all, and in
        # "signed" mode its room keys and messages are accepted at all.
        status = await kz.device_status(bot.user_id, bot.device_id)
        assert status["known"] and status["signed_by_owner"], status

        ping = await kz.send_text(kz_room, "!ping")
        pong = await kz.wait_for(lambda m: answers(m, ping), room_id=kz_room, sender=bot.user_id)
        assert pong.encrypted and (pong.body or "").startswith("pong"), pong.describe()
        assert (pong.shield_colour, pong.shield_reason) == ("NONE", None), pong.describe()

        # An alert typed in Element reaches the nio officer's room, decrypted.
        sent_id = await kz.send_text(kz_room, ALERT)
        sent = await kz.wait_for(lambda m: answers(m, sent_id), room_id=kz_room,
                                 sender=bot.user_id)
        assert (sent.body or "").startswith("KZ-0001: Urgent alert sent to:"), sent.describe()
        # Element's PushProcessor: the answer to a command is quiet (an m.notice).
        assert sent.push is not None and not sent.push["notify"], sent.push
        # Element shows the bot's read receipt on the officer's !alert.
        receipt: dict[str, str | None] = {}
        for _ in range(300):
            receipt = await kz.read_receipt(kz_room, bot.user_id)
            if receipt["event_id"] == sent_id:
                break
            await asyncio.sleep(0.1)
        assert receipt == {"event_id": sent_id, "thread_id": "main"}, receipt
        relayed = await uz.wait_for(lambda m: about_case(m, "KZ-0001"), room_id=uz_room,
                                    sender=bot.user_id)
        assert relayed.encrypted
        assert "vehicle: white Kamaz, plate 01A123BC" in (relayed.body or ""), relayed.body

        # The nio officer acknowledges; Element reads who did.
        ack_id = await uz.send_text(uz_room, "!ack KZ-0001")
        await uz.wait_for(lambda m: replies_to(m, ack_id), room_id=uz_room, sender=bot.user_id)
        told = await kz.wait_for(lambda m: "acknowledged KZ-0001" in (m.body or ""),
                                 room_id=kz_room, sender=bot.user_id)
        assert told.encrypted and "Termez (UZ-TERMEZ)" in (told.body or ""), told.describe()
        # ... while the acknowledgement of an urgent case rings its sender, highlighted.
        assert told.push == {"notify": True, "highlight": True, "sound": "default"}, told.push

        # An alert the other way arrives in Element, and Element's thread reply goes back.
        await uz.send_text(uz_room, "!alert flash to:KZ-ZHIBEK\nconvoy of three trucks, "
                                    "heading north")
        incoming = await kz.wait_for(lambda m: "convoy of three trucks" in (m.body or ""),
                                     room_id=kz_room, sender=bot.user_id)
        assert incoming.encrypted and "UZ-0001" in (incoming.body or ""), incoming.describe()
        assert incoming.shield_colour == "NONE", incoming.describe()
        assert incoming.push is not None and incoming.push["notify"], incoming.push  # rings
        # Element sends reactions in the clear. Under tofu its 👍 acknowledges; under
        # cross-signed nothing vouches for it, and the officer is told so, once per case.
        await kz.react(kz_room, incoming.event_id, "👍")
        if policy == "tofu":
            acked = await uz.wait_for(lambda m: "acknowledged UZ-0001" in (m.body or ""),
                                      room_id=uz_room, sender=bot.user_id)
            assert "Zhibek (KZ-ZHIBEK)" in (acked.body or ""), acked.body
        else:
            told_why = await kz.wait_for(lambda m: answers(m, incoming.event_id),
                                         room_id=kz_room, sender=bot.user_id)
            assert (told_why.body or "").startswith(
                "Your reaction did not acknowledge UZ-0001"), told_why.describe()
            await kz.react(kz_room, incoming.event_id, "✅")
            ping = await kz.send_text(kz_room, "!ping")  # the ✅ has been handled after this
            await kz.wait_for(lambda m: answers(m, ping), room_id=kz_room, sender=bot.user_id)
            assert len([m for m in await kz.messages(kz_room)
                        if answers(m, incoming.event_id)]) == 1
            status = await uz.send_text(uz_room, "!status UZ-0001")
            shown = await uz.wait_for(lambda m: replies_to(m, status), room_id=uz_room,
                                      sender=bot.user_id)
            assert "not acknowledged" in (shown.body or ""), shown.body

        # Element's reply in the case's thread goes back (and acknowledges, if not yet).
        await kz.send_text(kz_room, "seen at the Zhibek Zholy checkpoint, 14:05",
                           thread_root=incoming.event_id)
        carried = await uz.wait_for(lambda m: "Zhibek Zholy checkpoint" in (m.body or ""),
                                    room_id=uz_room, sender=bot.user_id)
        assert carried.encrypted and "UZ-0001" in (carried.body or ""), carried.body
        status = await uz.send_text(uz_room, "!status UZ-0001")
        shown = await uz.wait_for(lambda m: replies_to(m, status), room_id=uz_room,
                                  sender=bot.user_id)
        assert "not acknowledged" not in (shown.body or ""), shown.body

        # Nothing the bot sent to Element failed to decrypt.
        undecrypted = [m.describe() for m in await kz.messages(kz_room)
                       if m.sender == bot.user_id and m.decryption_failure]
        assert undecrypted == []
    finally:
        await kz.stop()
        print(f"--- log of the Element officer ---\n{kz.log_path.read_text()[-4000:]}")


def element_attachment(message: ElementMessage, ref: str) -> bool:
    key = message.content.get(CASE_KEY)
    return isinstance(key, dict) and key.get("ref") == ref and key.get("about") == "attachment"


def in_element_thread(message: ElementMessage, root: str) -> bool:
    relates = message.content.get("m.relates_to") or {}
    return relates.get("rel_type") == "m.thread" and relates.get("event_id") == root


async def test_photos_and_files_cross_between_element_and_nio_byte_for_byte(
    synapse: LocalSynapse, officer_factory: OfficerFactory, bot_factory: BotFactory,
    tmp_path: Path,
) -> None:
    """Element encrypts attachments outside the SDK (matrix-encrypt-attachment) and sends
    them without `filename`; the bot must take them as they come and give Element back
    files it can fetch over authenticated media and decrypt. Under the strictest pairing:
    Element excluding unsigned devices, the bot obeying only cross-signed ones."""
    reason = node_available()
    assert reason is None, reason
    kz = await ElementOfficer.create(synapse, unique("kz-element"), tmp_path / "element",
                                     isolation="signed")
    try:
        posts = await element_and_nio_posts(
            kz, officer_factory, bot_factory, tmp_path, "cross-signed",
            attachments={"types": ["image/*", "application/pdf"]})
        bot, uz, kz_room, uz_room = posts.bot, posts.uz, posts.kz_room, posts.uz_room

        alert_id = await kz.send_text(kz_room, ALERT)
        uz_case = await uz.wait_for(lambda m: about_case(m, "KZ-0001"), room_id=uz_room,
                                    sender=bot.user_id)

        # Element's photo in the alert's thread reaches the nio officer, decryptable, and
        # the digest it carries is that of what Element encrypted.
        photo = os.urandom(30_000)
        await kz.send_file(kz_room, photo, name="plate 01A123BC.jpg", mimetype="image/jpeg",
                           msgtype="m.image", thread_root=alert_id, size=(1280, 960))
        relayed = await uz.wait_for(lambda m: about_case(m, "KZ-0001", "attachment"),
                                    room_id=uz_room, sender=bot.user_id)
        assert relayed.encrypted and relayed.msgtype == "m.image", relayed.describe()
        assert relayed.content["filename"] == "plate 01A123BC.jpg", relayed.content
        assert (relayed.content["info"]["w"], relayed.content["info"]["h"]) == (1280, 960)
        assert in_thread(relayed, uz_case.event_id), relayed.relates_to
        assert await uz.download_attachment(relayed) == photo
        assert hashlib.sha256(photo).hexdigest() in (relayed.body or ""), relayed.body

        # The nio officer's document in its thread reaches Element in the alert's thread;
        # Element fetches it over authenticated media, checks its hash and decrypts it.
        document = os.urandom(12_000)
        await uz.send_attachment(uz_room, document, filename="manifest.pdf",
                                 mimetype="application/pdf", msgtype="m.file",
                                 thread_root=uz_case.event_id)
        back = await kz.wait_for(lambda m: element_attachment(m, "KZ-0001"), room_id=kz_room,
                                 sender=bot.user_id)
        assert back.encrypted and back.content["msgtype"] == "m.file", back.describe()
        assert (back.shield_colour, back.shield_reason) == ("NONE", None), back.describe()
        assert in_element_thread(back, alert_id), back.content.get("m.relates_to")
        assert back.content["filename"] == "manifest.pdf"
        assert "url" not in back.content, "an encrypted room's file travels only in `file`"
        assert await kz.download_file(back) == document
    finally:
        await kz.stop()
        print(f"--- log of the Element officer ---\n{kz.log_path.read_text()[-4000:]}")


@pytest.mark.parametrize(("isolation", "policy"), [("all", "tofu"), ("signed", "cross-signed")])
async def test_an_element_supervisor_reads_the_escalation_in_the_direct_message_the_bot_opens(
    synapse: LocalSynapse, officer_factory: OfficerFactory, bot_factory: BotFactory,
    tmp_path: Path, isolation: Isolation, policy: str,
) -> None:
    reason = node_available()
    assert reason is None, reason
    boss = await ElementOfficer.create(synapse, unique("uzboss-element"), tmp_path / "element",
                                       isolation=isolation)
    try:
        kz, uz = await officer_factory("kz"), await officer_factory("uz")
        if policy == "cross-signed":
            for officer in (kz, uz):
                localpart = officer.user_id[1:].split(":")[0]
                await ensure_cross_signed(officer.client, tmp_path / f"{localpart}-keys.json",
                                          f"devkit-{localpart}")
        kz_room, uz_room = await kz.create_room("KZ post"), await uz.create_room("UZ post")
        bot = await bot_factory(config={
            "posts": [
                chase_post("KZ-ZHIBEK", kz_room, neighbours=["UZ-TERMEZ"]),
                chase_post("UZ-TERMEZ", uz_room, neighbours=["KZ-ZHIBEK"],
                           duty_officers=[uz.user_id], supervisors=[boss.user_id]),
            ],
            "trust": {"policy": policy},
            "chasing": {"check_every": "1s", "policies": {"flash": flash_policy(
                reminders=0, remind_every="1h",
                escalate=[{"after": "3s", "to": ["target-supervisors"]}])}},
        })
        for officer, room_id in ((kz, kz_room), (uz, uz_room)):
            await officer.invite(room_id, bot.user_id)
            await officer.wait_until_joined(room_id, bot.user_id)

        await kz.send_text(kz_room, "!alert flash to:UZ-TERMEZ\nvehicle: white Kamaz\n"
                                    "Heroin suspected.")
        dm = await boss.accept_invite(timeout=60)
        escalation = await boss.wait_for(lambda m: "Escalation: KZ-0001" in (m.body or ""),
                                         room_id=dm, sender=bot.user_id, timeout=60)
        assert escalation.encrypted and escalation.shield_colour == "NONE", escalation.describe()
        assert "vehicle: white Kamaz" in (escalation.body or ""), escalation.describe()
        assert escalation.content.get("m.mentions") == {"user_ids": [boss.user_id]}
        # Element's own PushProcessor: the escalation rings the supervisor, highlighted.
        assert escalation.push == {"notify": True, "highlight": True, "sound": "default"}, (
            escalation.push)

        await uz.send_text(uz_room, "!ack KZ-0001")
        taken = await boss.wait_for(lambda m: "Termez (UZ-TERMEZ) acknowledged it"
                                    in (m.body or ""), room_id=dm, sender=bot.user_id)
        assert taken.encrypted, taken.describe()
        assert taken.push is not None and taken.push["notify"], taken.push  # a flash case
    finally:
        await boss.stop()
        print(f"--- log of the Element supervisor ---\n{boss.log_path.read_text()[-4000:]}")


async def test_element_opens_its_session_with_the_bots_fallback_key_after_the_one_time_keys_ran_out(
    synapse: LocalSynapse, officer_factory: OfficerFactory, bot_factory: BotFactory,
    tmp_path: Path,
) -> None:
    """Element's Rust crypto checks a claimed key's signature, `fallback: true` included,
    before it opens an Olm session with it."""
    reason = node_available()
    assert reason is None, reason
    kz = await officer_factory("kz")
    room_id = await kz.create_room("post")  # a post's room: the newcomer joins it too
    bot = await bot_factory(config=post_rooms(room_id))
    await kz.invite(room_id, bot.user_id)
    await kz.wait_until_joined(room_id, bot.user_id)
    await wait_for_log(bot, lambda r: r.get("msg") == FALLBACK_PUBLISHED_MSG)
    newcomer = await ElementOfficer.create(synapse, unique("kz-element"), tmp_path / "element",
                                           isolation="signed")
    try:
        await kz.invite(room_id, newcomer.user_id)
        assert await newcomer.accept_invite() == room_id
        await bot.stop()
        while not (await claim_bot_key(kz, bot)).get("fallback"):
            pass  # claim_bot_key fails the test if the keys run out with no fallback key

        ping = await newcomer.send_text(room_id, "!ping")
        await bot.start()
        pong = await newcomer.wait_for(lambda m: answers(m, ping), room_id=room_id,
                                       sender=bot.user_id, timeout=60)
        assert pong.encrypted and (pong.body or "").startswith("pong"), pong.describe()
    finally:
        await newcomer.stop()
        print(f"--- log of the Element officer ---\n{newcomer.log_path.read_text()[-4000:]}")


WITHHELD_UNVERIFIED = "MEGOLM_KEY_WITHHELD_FOR_UNVERIFIED_DEVICE"
"""What Element's crypto reports for a room key withheld with `m.unverified`."""


async def test_an_unverified_element_session_is_told_the_key_was_withheld_as_unverified(
    synapse: LocalSynapse, bot_factory: BotFactory, tmp_path: Path,
) -> None:
    """Under `cross-signed` the bot gives no room key to an officer's session they never
    verified, and says so (`m.room_key.withheld`, `m.unverified`): Element shows "not
    verified" instead of a bare "unable to decrypt", and the answer still reaches the
    officer's verified session."""
    reason = node_available()
    assert reason is None, reason
    localpart = unique("kz-element")
    kz = await ElementOfficer.create(synapse, localpart, tmp_path / "element",
                                     isolation="all")
    unverified: ElementOfficer | None = None
    try:
        room_id = await kz.create_room("KZ post")
        bot = await bot_factory(config={
            "posts": [post("KZ-ZHIBEK", room_id, "Asia/Almaty", [])],
            "trust": {"policy": "cross-signed"}})
        await kz.invite(room_id, bot.user_id)
        await kz.wait_until_joined(room_id, bot.user_id)
        unverified = await ElementOfficer.create(synapse, localpart, tmp_path / "element",
                                                 isolation="all", cross_sign=False)
        assert kz.cross_signed and not unverified.cross_signed

        ping = await kz.send_text(room_id, "!ping")
        pong = await kz.wait_for(lambda m: answers(m, ping), room_id=room_id,
                                 sender=bot.user_id, timeout=60)
        assert (pong.body or "").startswith("pong"), pong.describe()

        async def withheld() -> ElementMessage | None:
            seen = [m for m in await unverified.messages(room_id) if m.event_id == pong.event_id]
            return seen[0] if seen and seen[0].decryption_failure_reason else None

        # Until the withheld notice has been taken into account: the client may first show
        # the bare "unknown session" while the to-device notice is on its way.
        for _ in range(300):
            seen = await withheld()
            if seen is not None and seen.decryption_failure_reason == WITHHELD_UNVERIFIED:
                break
            await asyncio.sleep(0.1)
        assert seen is not None, [m.describe() for m in await unverified.messages(room_id)]
        assert seen.decryption_failure
        assert seen.decryption_failure_reason == WITHHELD_UNVERIFIED
    finally:
        if unverified is not None:
            await unverified.stop()
        await kz.stop()
