"""Photos and files on a case, end to end: an officer's encrypted photo reaches the posts
that may see the case re-encrypted, byte for byte, with its digest in the timeline; what
is too big, of a refused type, broken, unreachable or late gets an answer and goes nowhere."""

from __future__ import annotations

import hashlib
import json
import os

from devkit.officer import Officer, SeenMessage
from tests.e2e.conftest import BotFactory, OfficerFactory
from tests.e2e.test_case_flow import crash_and_replay, db_rows, in_thread
from tests.e2e.test_cases import Posts, about_case, post, replies_to

ALERT = ("!alert urgent to:UZ-TERMEZ tlp:amber cat:drugs\n"
         "vehicle: white Kamaz, plate 01A123BC\n"
         "Suspected heroin in a cement load.")
LIMIT = 64 * 1024


async def posts_with_attachments(officer_factory: OfficerFactory,
                                 bot_factory: BotFactory) -> Posts:
    kz, uz, tj = [await officer_factory(name) for name in ("kz", "uz", "tj")]
    rooms = {officer: await officer.create_room("post") for officer in (kz, uz, tj)}
    bot = await bot_factory(config={
        "posts": [
            post("KZ-ZHIBEK", rooms[kz], "Asia/Almaty", ["UZ-TERMEZ"]),
            post("UZ-TERMEZ", rooms[uz], "Asia/Tashkent", ["KZ-ZHIBEK", "TJ-PANJ"]),
            post("TJ-PANJ", rooms[tj], "Asia/Dushanbe", ["UZ-TERMEZ", "KZ-ZHIBEK"]),
        ],
        "attachments": {"max_bytes": LIMIT, "types": ["image/*", "application/pdf"],
                        "window": "2m", "fetch_timeout": "5s"},
    })
    for officer, room_id in rooms.items():
        await officer.invite(room_id, bot.user_id)
        await officer.wait_until_joined(room_id, bot.user_id)
    return Posts(bot, kz, uz, tj, rooms[kz], rooms[uz], rooms[tj])


async def answer_to(posts: Posts, officer: Officer, room_id: str, event_id: str) -> SeenMessage:
    return await officer.wait_for(lambda m: replies_to(m, event_id), room_id=room_id,
                                  sender=posts.bot.user_id)


def attachments_seen(posts: Posts, officer: Officer, room_id: str) -> list[SeenMessage]:
    return [m for m in officer.messages(room_id, sender=posts.bot.user_id)
            if about_case(m, "KZ-0001", "attachment")]


async def test_a_photo_in_the_alert_thread_reaches_the_target_byte_for_byte_and_only_it(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    posts = await posts_with_attachments(officer_factory, bot_factory)
    kz, uz, tj = posts.kz, posts.uz, posts.tj
    alert_id = await kz.send_text(posts.kz_room, ALERT)
    uz_case = await uz.wait_for(lambda m: about_case(m, "KZ-0001"), room_id=posts.uz_room,
                                sender=posts.bot.user_id)

    photo = os.urandom(20_000)
    digest = hashlib.sha256(photo).hexdigest()
    await kz.send_attachment(posts.kz_room, photo, filename="plate.jpg", mimetype="image/jpeg",
                             caption="<b>plate</b> 01A123BC", thread_root=alert_id,
                             thumbnail=b"small plate")
    relayed = await uz.wait_for(lambda m: about_case(m, "KZ-0001", "attachment"),
                                room_id=posts.uz_room, sender=posts.bot.user_id)
    assert relayed.encrypted and relayed.msgtype == "m.image", relayed.describe()
    assert in_thread(relayed, uz_case.event_id)
    assert relayed.content["file"]["url"] != "" and relayed.content["filename"] == "plate.jpg"
    assert await uz.download_attachment(relayed) == photo
    assert await uz.download_attachment(relayed, thumbnail=True) == b"small plate"
    body = relayed.body or ""
    assert f"Attachment from Zhibek (KZ-ZHIBEK) on KZ-0001 ({kz.user_id})" in body, body
    assert digest in body and "<b>plate</b> 01A123BC" in body
    assert "&lt;b&gt;plate&lt;/b&gt;" in relayed.content["formatted_body"]

    # The chain of custody: the digest in the timeline and on the audit log.
    details = [json.loads(row[0]) for row in
               db_rows(posts, "SELECT detail FROM timeline WHERE kind = 'attached'")]
    assert [(d["sha256"], d["size"], d["mimetype"]) for d in details] == [
        (digest, len(photo), "image/jpeg")]
    audited = [json.loads(row[0]) for row in
               db_rows(posts, "SELECT detail FROM audit_log WHERE action = 'attached'")]
    assert [d["sha256"] for d in audited] == [digest]

    # A bare photo right after the alert joins it too; TJ, which may not see the case,
    # never hears of either.
    second = os.urandom(5000)
    await kz.send_attachment(posts.kz_room, second, filename="seal.png", mimetype="image/png")
    await uz.wait_for(lambda m: len(attachments_seen(posts, uz, posts.uz_room)) == 2,
                      room_id=posts.uz_room)
    assert await uz.download_attachment(attachments_seen(posts, uz, posts.uz_room)[1]) == second
    refused = await posts.ask(tj, posts.tj_room, "!status KZ-0001")
    assert "KZ-0001" in (refused.body or "")
    assert [m for m in tj.messages(posts.tj_room, sender=posts.bot.user_id)
            if "file" in m.content] == []

    # UZ answers with a document in its thread: KZ reads it in the alert's thread.
    document = os.urandom(3000)
    await uz.send_attachment(posts.uz_room, document, filename="manifest.pdf",
                             mimetype="application/pdf", msgtype="m.file",
                             thread_root=uz_case.event_id)
    back = await kz.wait_for(lambda m: about_case(m, "KZ-0001", "attachment"),
                             room_id=posts.kz_room, sender=posts.bot.user_id)
    assert back.msgtype == "m.file" and in_thread(back, alert_id)
    assert await kz.download_attachment(back) == document

    status = await posts.ask(kz, posts.kz_room, "!status KZ-0001")
    assert f"attachment from Zhibek (KZ-ZHIBEK) ({kz.user_id}): plate.jpg" in (
        status.body or ""), status.body
    assert digest in (status.body or "")

    # A crash that makes sync deliver every event again relays nothing twice.
    await crash_and_replay(posts)
    await posts.ask(kz, posts.kz_room, "!ping")
    await posts.ask(uz, posts.uz_room, "!ping")
    assert len(attachments_seen(posts, uz, posts.uz_room)) == 2
    assert len(db_rows(posts, "SELECT id FROM timeline WHERE kind = 'attached'")) == 3


async def test_bad_attachments_get_an_answer_and_go_nowhere(
    officer_factory: OfficerFactory, bot_factory: BotFactory
) -> None:
    posts = await posts_with_attachments(officer_factory, bot_factory)
    kz, uz = posts.kz, posts.uz
    alert_id = await kz.send_text(posts.kz_room, ALERT)
    await uz.wait_for(lambda m: about_case(m, "KZ-0001"), room_id=posts.uz_room,
                      sender=posts.bot.user_id)

    big = await kz.send_attachment(posts.kz_room, os.urandom(LIMIT + 1), filename="scan.pdf",
                                   mimetype="application/pdf", msgtype="m.file",
                                   thread_root=alert_id)
    answer = await answer_to(posts, kz, posts.kz_room, big)
    assert (answer.body or "").startswith(f"scan.pdf was not attached: it is {LIMIT + 1:,} bytes,"
                                          f" over the limit of {LIMIT:,} bytes"), answer.body
    assert in_thread(answer, alert_id)

    # A size that lies (declared small, is big) is caught on the bytes.
    liar = await kz.send_attachment(posts.kz_room, os.urandom(LIMIT + 10), filename="a.jpg",
                                    mimetype="image/jpeg", declared_size=100,
                                    thread_root=alert_id)
    assert "over the limit" in ((await answer_to(posts, kz, posts.kz_room, liar)).body or "")

    archive = await kz.send_attachment(posts.kz_room, b"PK\x03\x04", filename="x.zip",
                                       mimetype="application/zip", msgtype="m.file",
                                       thread_root=alert_id)
    answer = await answer_to(posts, kz, posts.kz_room, archive)
    assert "files of type application/zip are not accepted" in (answer.body or ""), answer.body

    forged = await kz.send_attachment(posts.kz_room, b"original", filename="doc.jpg",
                                      mimetype="image/jpeg", upload_data=b"tampered",
                                      thread_root=alert_id)
    answer = await answer_to(posts, kz, posts.kz_room, forged)
    assert "could not be decrypted" in (answer.body or ""), answer.body

    remote = await kz.send_raw(posts.kz_room, "m.room.message", {
        "msgtype": "m.image", "body": "far.jpg",
        "info": {"mimetype": "image/jpeg", "size": 10},
        "file": {"url": "mxc://unreachable.invalid/abc", "v": "v2", "iv": "AAAAAAAAAAAAAAAAAAAAAA",
                 "key": {"kty": "oct", "alg": "A256CTR", "ext": True,
                         "k": "A" * 43, "key_ops": ["encrypt", "decrypt"]},
                 "hashes": {"sha256": "A" * 43}},
        "m.relates_to": {"rel_type": "m.thread", "event_id": alert_id, "is_falling_back": True,
                         "m.in_reply_to": {"event_id": alert_id}},
    })
    answer = await answer_to(posts, kz, posts.kz_room, remote)
    assert "could not fetch it from the media server" in (answer.body or ""), answer.body

    await posts.ask(kz, posts.kz_room, "!close KZ-0001 done")
    late = await kz.send_attachment(posts.kz_room, b"late photo", filename="late.jpg",
                                    mimetype="image/jpeg", thread_root=alert_id)
    answer = await answer_to(posts, kz, posts.kz_room, late)
    assert "KZ-0001 is closed; attachments are no longer passed on" in (answer.body or "")

    await posts.ask(uz, posts.uz_room, "!ping")
    assert attachments_seen(posts, uz, posts.uz_room) == []
    assert db_rows(posts, "SELECT id FROM timeline WHERE kind = 'attached'") == []
