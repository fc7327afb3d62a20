"""Links between bots (issue 18), end to end on the federating pair: the Kazakh bot on
`home` serves KZ-ZHIBEK, the Uzbek bot on `partner` serves UZ-TERMEZ (in Russian, with a
duty officer, a supervisor and its own chasing); neither configuration names a post of
the other side, and cases cross in one encrypted link room (`devkit.links`).

One pair of bots serves every test here (they start once, in the module's fixture): the
tests run in file order and each reads the references its own commands were given. Every
assertion is on what an officer's client decrypted or on a bot's database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from devkit.botprocess import BotProcess
from devkit.federation import SynapsePair
from devkit.links import UZ_NUKUS, Country, LinkedCountries, eventually, liaison
from devkit.officer import Officer, SeenMessage
from devkit.synapse import free_port
from liaison.bot.app import CROSS_SIGNING_FILE
from liaison.bot.crosssigning import (
    load_seeds,
    query_identity,
    reset_identity,
    sign_own_device,
)
from liaison.commands.case_render import CASE_KEY
from tests.e2e.conftest import assert_audit_chain_intact, unique
from tests.e2e.test_metrics import health_becomes, scrape

WAIT_S = 90.0
T = TypeVar("T")
UZ_CHASING = {"chasing": {
    "check_every": "1s",
    "policies": {"flash": {
        "acknowledge_within": "3s", "remind_every": "1m", "reminders": 1,
        "escalate": [{"after": "6s", "to": ["target-supervisors"]}],
    }}}}
"""Uzbekistan's own policy, in seconds: a flash case unacknowledged at Termez is
reminded after 3 s and escalated to Termez's supervisor after 6 s."""
KZ_CHASING = {"chasing": {
    "check_every": "1s",
    "policies": {"flash": {"acknowledge_within": "2s", "remind_every": "1m", "reminders": 1,
                           "escalate": []}}}}
"""Kazakhstan's policy would remind within 2 s: it must not, for a post behind a link."""
TERMEZ, ZHIBEK = "UZ-TERMEZ", "KZ-ZHIBEK"
PHOTO = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
"""A 1×1 PNG standing in for a photo of the plate."""
REPORT = b"%PDF-1.4\n% the arrest report of truck 01A123BC\n%%EOF\n"
REF_RE = re.compile(r"\b(KZ-\d{4,})\b")


# --- the two countries, once for the module ----------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def linked(synapse_pair: SynapsePair,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LinkedCountries]:
    world = await LinkedCountries.create(
        synapse_pair, tmp_path_factory.mktemp("links"), namer=unique,
        kz_config={**KZ_CHASING, "metrics": {"enabled": True, "port": free_port()}},
        uz_config={**UZ_CHASING, "metrics": {"enabled": True, "port": free_port()}})
    try:
        yield world
    finally:
        await world.close()
        for side in world.countries:
            await assert_audit_chain_intact(side.bot)


@pytest.fixture(autouse=True)
def bot_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Both bots' log tails after each test (pytest shows them when the test failed)."""
    yield
    if "linked" in request.fixturenames:
        world: LinkedCountries = request.getfixturevalue("linked")
        for side in world.countries:
            print(f"--- log of the {side.code} bot {side.bot.user_id} ---\n"
                  f"{side.bot.log_tail(80)}")


# --- helpers -------------------------------------------------------------------------------


def about_case(message: SeenMessage, ref: str, about: str | None = None) -> bool:
    key = message.content.get(CASE_KEY)
    return isinstance(key, dict) and key.get("ref") == ref and key.get("about") == about


def about(ref: str, what: str | None = None) -> Callable[[SeenMessage], bool]:
    return lambda message: about_case(message, ref, what)


def answering(event_id: str) -> Callable[[SeenMessage], bool]:
    return lambda message: answers(message, event_id)


def in_thread(message: SeenMessage, root: str) -> bool:
    relation = message.relates_to
    return relation.get("rel_type") == "m.thread" and relation.get("event_id") == root


def answers(message: SeenMessage, event_id: str) -> bool:
    relates = message.content.get("m.relates_to") or {}
    return bool(relates.get("m.in_reply_to", {}).get("event_id") == event_id)


async def ask(side: Country, post_id: str, body: str, *,
              officer: Officer | None = None) -> SeenMessage:
    """A command in a post's room and the bot's answer to it, as the officer decrypted it."""
    officer = officer or side.officer(post_id)
    room_id = side.room(post_id)
    event_id = await officer.send_text(room_id, body)
    answer = await officer.wait_for(lambda m: answers(m, event_id), room_id=room_id,
                                    sender=side.bot.user_id, timeout=WAIT_S)
    assert answer.encrypted and not answer.undecrypted, answer.describe()
    return answer


async def sent_case(side: Country, post_id: str, body: str) -> tuple[str, str]:
    """Send a case command; its reference and the command's event id (the thread root)."""
    officer, room_id = side.officer(post_id), side.room(post_id)
    event_id = await officer.send_text(room_id, body)
    answer = await officer.wait_for(lambda m: answers(m, event_id), room_id=room_id,
                                    sender=side.bot.user_id, timeout=WAIT_S)
    found = REF_RE.match(answer.body or "")
    assert found is not None, f"not sent: {answer.body}"
    return found.group(1), event_id


async def from_bot(side: Country, officer: Officer, room_id: str,
                   predicate: Callable[[SeenMessage], bool], *,
                   timeout: float = WAIT_S) -> SeenMessage:
    message = await officer.wait_for(predicate, room_id=room_id, sender=side.bot.user_id,
                                     timeout=timeout)
    assert message.encrypted and not message.undecrypted, message.describe()
    return message


def count(officer: Officer, room_id: str, bot: BotProcess,
          predicate: Callable[[SeenMessage], bool]) -> int:
    return len([m for m in officer.messages(room_id, sender=bot.user_id) if predicate(m)])


def db(side: Country, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of a bot's database, read-only (the bot may be running)."""
    uri = f"{side.database.as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        found = conn.execute(query, params).fetchall()
    conn.close()
    return [tuple(row) for row in found]


def link_log(side: Country, ref: str | None = None) -> list[tuple[str, str, str]]:
    """(direction, event_type, key) of every row of `side`'s link_log (about `ref`: the
    idempotency keys of the events about a case name it)."""
    rows = db(side, "SELECT direction, event_type, key FROM link_log ORDER BY id")
    return [(d, t, k) for d, t, k in rows if ref is None or f":{ref}:" in k]


def refused(side: Country) -> list[tuple[str, str, dict[str, Any]]]:
    """(event_type, key, detail) of the protocol events `side`'s bot refused."""
    rows = db(side, "SELECT event_type, key, detail FROM link_log "
                     "WHERE direction = 'refused' ORDER BY id")
    return [(t, k, json.loads(d) if d else {}) for t, k, d in rows]


def audited(side: Country, action: str) -> list[dict[str, Any]]:
    rows = db(side, "SELECT detail FROM audit_log WHERE action = ? ORDER BY seq", action)
    return [json.loads(detail) for (detail,) in rows]


def assert_once_each(side: Country) -> None:
    """Every protocol event `side`'s bot sent or accepted is in its link_log once."""
    keys = Counter((d, k) for d, _, k in link_log(side) if d in ("sent", "received"))
    assert [key for key, n in keys.items() if n > 1] == [], keys.most_common(3)


async def assert_nothing_lost(linked: LinkedCountries) -> None:
    """Every protocol event either bot sent reached the other: accepted or refused there
    (never lost undecryptable on the way), once the queues have drained."""
    for sender in linked.countries:
        receiver = linked.other(sender)

        def missing(sender: Country = sender, receiver: Country = receiver) -> set[str]:
            sent = {k for d, _, k in link_log(sender) if d == "sent"}
            arrived = {k for d, _, k in link_log(receiver) if d in ("received", "refused")}
            return sent - arrived

        try:
            await eventually(lambda: not missing(), "the protocol events in flight", 30)
        except TimeoutError:
            raise AssertionError(f"sent by the {sender.code} bot, never accepted or refused "
                                 f"by the {receiver.code} bot: {sorted(missing())}") from None


def forged_offer(ref: str, *, origin: str = TERMEZ, target: str = ZHIBEK,
                 sender: str, tlp: str = "GREEN", text: str) -> dict[str, Any]:
    return {"v": 1, "id": f"offer:{ref}:{target}", "ref": ref, "kind": "alert",
            "origin_post": origin, "origin_sender": sender, "target": target,
            "targets": [target], "priority": "urgent", "tlp": tlp, "text": text,
            "created_ms": 1_796_000_000_000}


# --- a case crosses the link and is worked on both sides ---------------------------------


async def test_a_kazakh_alert_reaches_termez_through_the_uzbek_bot_chased_by_uzbek_policy(
    linked: LinkedCountries,
) -> None:
    kz, uz = linked.kz, linked.uz
    aigerim, bekzod = kz.officer(ZHIBEK), uz.officer(TERMEZ)
    rustam = uz.supervisors[TERMEZ]
    # Neither configuration names the other side's posts: KZ routes by UZ's directory.
    for side, own in ((kz, ZHIBEK), (uz, TERMEZ)):
        written = json.loads(side.bot.config_path.read_text())
        assert [post["id"] for post in written["posts"]] == [own]

    ref, alert_id = await sent_case(kz, ZHIBEK, (
        "!alert flash to:UZ-TERMEZ tlp:amber grade:B2\n"
        "vehicle: white Kamaz, plate 01A123BC\nSuspected heroin in a cement load."))

    # Termez reads it from its own (Uzbek) bot, in Russian, under the Kazakh reference.
    case = await from_bot(uz, bekzod, uz.room(TERMEZ), lambda m: about_case(m, ref))
    body = case.body or ""
    assert body.startswith(f"TLP:AMBER Ориентировка «Молния» {ref}"), body
    assert "plate 01A123BC" in body and "Suspected heroin" in body, body
    assert "Жибек Жолы (KZ-ZHIBEK)" in body, body
    assert case.msgtype == "m.text"  # it rings

    # Uzbek chasing: a reminder at Termez, then the escalation to Termez's supervisor,
    # in Russian, in a direct message from the Uzbek bot.
    reminder = await from_bot(uz, bekzod, uz.room(TERMEZ), lambda m: about_case(m, ref,
                                                                                 "reminder"))
    assert bekzod.user_id in reminder.content.get("m.mentions", {}).get("user_ids", [])
    direct = await rustam.accept_invite(timeout=WAIT_S)
    escalation = await from_bot(uz, rustam, direct, lambda m: about_case(m, ref, "escalation"))
    assert f"Эскалация: {ref}" in (escalation.body or ""), escalation.body

    # Termez acknowledges with a reaction; Zhibek Zholy is told in its thread, and the
    # supervisor that the case is taken.
    await bekzod.react(uz.room(TERMEZ), case.event_id, "👍")
    ack = await from_bot(kz, aigerim, kz.room(ZHIBEK), lambda m: about_case(m, ref, "ack"))
    assert f"Termez (UZ-TERMEZ) acknowledged {ref}" in (ack.body or ""), ack.body
    assert bekzod.user_id in (ack.body or "") and in_thread(ack, alert_id), ack.describe()
    await from_bot(uz, rustam, direct, lambda m: about_case(m, ref, "taken"))

    # Termez replies in the case's thread; Zhibek Zholy reads it in its own thread.
    await bekzod.send_text(uz.room(TERMEZ), "Грузовик замечен у моста",
                           thread_root=case.event_id)
    reply = await from_bot(kz, aigerim, kz.room(ZHIBEK), lambda m: about_case(m, ref, "reply"))
    assert f"Reply from Termez (UZ-TERMEZ) on {ref} ({bekzod.user_id})" in (reply.body or "")
    assert (reply.body or "").endswith("Грузовик замечен у моста"), reply.body
    assert in_thread(reply, alert_id), reply.describe()

    # Zhibek Zholy answers in its thread; Termez reads it in the case's thread.
    await aigerim.send_text(kz.room(ZHIBEK), "Stop it at the bridge", thread_root=alert_id)
    carried = await from_bot(uz, bekzod, uz.room(TERMEZ),
                             lambda m: about_case(m, ref, "reply"))
    assert (carried.body or "").endswith("Stop it at the bridge"), carried.body
    assert in_thread(carried, case.event_id), carried.describe()

    # A photo in the Kazakh thread reaches Termez's thread, the very same bytes; a file
    # from Termez's thread reaches the Kazakh one.
    await aigerim.send_attachment(kz.room(ZHIBEK), PHOTO, filename="plate.png",
                                  mimetype="image/png", caption="plate 01A123BC",
                                  thread_root=alert_id)
    photo = await from_bot(uz, bekzod, uz.room(TERMEZ), about(ref, "attachment"))
    assert await bekzod.download_attachment(photo) == PHOTO, photo.describe()
    assert in_thread(photo, case.event_id), photo.describe()
    await bekzod.send_attachment(uz.room(TERMEZ), REPORT, filename="protocol.pdf",
                                 mimetype="application/pdf", msgtype="m.file",
                                 thread_root=case.event_id)
    report = await from_bot(kz, aigerim, kz.room(ZHIBEK), about(ref, "attachment"))
    assert await aigerim.download_attachment(report) == REPORT, report.describe()
    assert in_thread(report, alert_id), report.describe()

    # !status agrees on both sides: acknowledged at Termez by the same officer.
    kz_status = (await ask(kz, ZHIBEK, f"!status {ref}")).body or ""
    assert "Termez (UZ-TERMEZ): acknowledged" in kz_status, kz_status
    assert bekzod.user_id in kz_status, kz_status
    uz_status = (await ask(uz, TERMEZ, f"!status {ref}")).body or ""
    assert "Термез (UZ-TERMEZ): подтверждено" in uz_status, uz_status
    assert bekzod.user_id in uz_status, uz_status

    # Each bot keeps its own record of the case and of what crossed.
    assert db(kz, "SELECT link, direction, foreign_ref FROM link_cases") == [
        ("uz", "outbound", ref)]
    assert db(uz, "SELECT link, direction, foreign_ref FROM link_cases") == [
        ("kz", "inbound", ref)]
    assert db(kz, "SELECT d.post, d.room_id, d.state, d.acknowledged_by FROM deliveries d "
                   "JOIN cases c ON c.id = d.case_id WHERE c.ref = ?", ref) == [
        (TERMEZ, linked.link_room, "acknowledged", bekzod.user_id)]
    assert db(uz, "SELECT d.post, d.room_id, d.state, d.acknowledged_by FROM deliveries d "
                   "JOIN cases c ON c.id = d.case_id WHERE c.ref = ?", ref) == [
        (TERMEZ, uz.room(TERMEZ), "acknowledged", bekzod.user_id)]
    kz_log, uz_log = set(link_log(kz, ref)), set(link_log(uz, ref))
    offer = f"offer:{ref}:{TERMEZ}"
    receipt = f"receipt:{ref}:{TERMEZ}"
    ack_key = f"case:{ref}:ack:{TERMEZ}"
    assert {("sent", "org.liaison.link.offer", offer),
            ("received", "org.liaison.link.receipt", receipt),
            ("received", "org.liaison.link.case", ack_key)} <= kz_log, kz_log
    assert {("received", "org.liaison.link.offer", offer),
            ("sent", "org.liaison.link.receipt", receipt),
            ("sent", "org.liaison.link.case", ack_key)} <= uz_log, uz_log
    for side in (kz, uz):
        assert_once_each(side)
        assert refused(side) == []

    # The Kazakh bot did not chase a post behind the link (Uzbekistan did), and nobody but
    # the two bots could read the link room: the operators in it got no keys.
    assert db(kz, "SELECT count(*) FROM chase_steps s JOIN deliveries d ON d.id = "
                   "s.delivery_id JOIN cases c ON c.id = d.case_id "
                   "WHERE c.ref = ? AND s.state = 'fired'", ref) == [(0,)]
    assert db(uz, "SELECT s.action FROM chase_steps s JOIN deliveries d ON d.id = "
                   "s.delivery_id JOIN cases c ON c.id = d.case_id "
                   "WHERE c.ref = ? AND s.state = 'fired' ORDER BY s.id", ref) == [
        ("remind",), ("escalate",)]
    bots = {kz.bot.user_id, uz.bot.user_id}
    for operator in (linked.kz_operator, linked.uz_operator):
        read = [m.describe() for m in operator.messages(linked.link_room)
                if m.sender in bots and m.encrypted and not m.undecrypted]
        assert read == [], read

    # Zhibek Zholy closes the case: Termez is told, in Russian, and the Uzbek record of it
    # is closed with the outcome.
    await ask(kz, ZHIBEK, f"!close {ref} 40 kg seized at Termez")
    closed = await from_bot(uz, bekzod, uz.room(TERMEZ), about(ref, "closed"))
    assert "40 kg seized at Termez" in (closed.body or ""), closed.body
    assert db(uz, "SELECT state, outcome FROM cases WHERE ref = ?", ref) == [
        ("closed", "40 kg seized at Termez")]

    await assert_nothing_lost(linked)

    # `liaison stats` on each side counts Termez's part alike: received, acknowledged,
    # escalated once (the origin's from the partner's case events).
    for side in (uz, kz):
        code, output = await liaison(side.bot, "stats", "--period", "1d")
        assert code == 0, output
        row = stats_row(output, TERMEZ)
        assert row is not None, f"{side.code}'s stats have no {TERMEZ} row:\n{output}"
        assert (row["received"], row["acked"], row["escalations"]) == ("1", "1", "1"), \
            f"{side.code}: {row}"


def metrics_port(side: Country) -> int:
    return int(side.bot.config_dict()["metrics"]["port"])


def stats_row(output: str, post_id: str) -> dict[str, str] | None:
    """One post's row of `liaison stats`, by its column names."""
    lines = output.splitlines()
    header = next((line.split() for line in lines if line.startswith("post ")), None)
    row = next((line.split() for line in lines if line.startswith(f"{post_id} ")), None)
    if header is None or row is None:
        return None
    names = " ".join(header).replace("ack median", "ack_median").replace(
        "ack p90", "ack_p90").replace("answer median", "answer_median").replace(
        "answer p90", "answer_p90").split()
    return dict(zip(names, row, strict=False))


async def test_an_uzbek_request_reaches_zhibek_zholy_and_its_answer_comes_back(
    linked: LinkedCountries,
) -> None:
    kz, uz = linked.kz, linked.uz
    aigerim, bekzod = kz.officer(ZHIBEK), uz.officer(TERMEZ)
    command = await bekzod.send_text(uz.room(TERMEZ), "!request urgent to:KZ-ZHIBEK due:4h\n"
                                                      "plate: 01A123BC\nWho owns this truck?")
    sent = await from_bot(uz, bekzod, uz.room(TERMEZ),  # (not a hit notice on the plate)
                          lambda m: answers(m, command) and (m.body or "").startswith("UZ-"))
    found = re.match(r"(UZ-\d{4,})", sent.body or "")
    assert found is not None, sent.body
    ref = found.group(1)

    # Zhibek Zholy reads it from the Kazakh bot, in English, and answers in its thread.
    case = await from_bot(kz, aigerim, kz.room(ZHIBEK), about(ref))
    assert "Who owns this truck?" in (case.body or "") and "Termez (UZ-TERMEZ)" in (
        case.body or ""), case.body
    await aigerim.send_text(kz.room(ZHIBEK), "A haulage firm in Shymkent",
                            thread_root=case.event_id)
    reply = await from_bot(uz, bekzod, uz.room(TERMEZ), about(ref, "reply"))
    assert (reply.body or "").endswith("A haulage firm in Shymkent"), reply.body
    assert in_thread(reply, command), reply.describe()

    # Answered, on both sides' !status.
    uz_status = (await ask(uz, TERMEZ, f"!status {ref}")).body or ""
    assert "Жибек Жолы (KZ-ZHIBEK): ответ" in uz_status, uz_status
    kz_status = (await ask(kz, ZHIBEK, f"!status {ref}")).body or ""
    assert "Zhibek Zholy (KZ-ZHIBEK): answered" in kz_status, kz_status
    assert db(kz, "SELECT link, direction, foreign_ref FROM link_cases lc JOIN cases c "
                  "ON c.id = lc.case_id WHERE c.ref = ?", ref) == [("uz", "inbound", ref)]


# --- refusals -------------------------------------------------------------------------------


async def test_what_may_not_cross_and_what_is_not_the_partner_are_refused(
    linked: LinkedCountries, tmp_path: Path,
) -> None:
    kz, uz = linked.kz, linked.uz
    aigerim = kz.officer(ZHIBEK)
    cases_before = db(kz, "SELECT count(*) FROM cases")[0][0]

    # AMBER+STRICT never crosses a link: refused at the origin, with the reason.
    strict = await ask(kz, ZHIBEK, "!alert urgent to:UZ-TERMEZ tlp:amber+strict\n"
                                   "Informant meets the courier at 18:00")
    assert (strict.body or "").startswith("Nothing was sent."), strict.body
    assert "UZ-TERMEZ: TLP:AMBER+STRICT does not cross the link" in (strict.body or ""), strict.body

    # A protocol event from another user in the link room (the Uzbek operator, on the
    # partner bot's own server): refused, audited, nothing delivered.
    operator = linked.uz_operator
    forged = await operator.send_raw(linked.link_room, "org.liaison.link.offer", forged_offer(
        "UZ-9901", sender=operator.user_id, text="forged by a member of the link room"))
    detail = await eventually(lambda: _refused_key(kz, "offer:UZ-9901:KZ-ZHIBEK", forged),
                              "the forged offer to be refused")
    assert detail.get("reason") == "not_partner", detail

    # A new device on the partner bot's account (its homeserver's admin could make one),
    # not signed by the pinned master key: refused as well.
    rogue = await Officer.create(uz.server, uz.bot.user_id[1:].split(":")[0],
                                 tmp_path / "rogue", password=uz.bot.password)
    await rogue.start()
    try:
        forged = await rogue.send_raw(linked.link_room, "org.liaison.link.offer", forged_offer(
            "UZ-9902", sender=rogue.user_id, text="forged by an unsigned device"))
        detail = await eventually(lambda: _refused_key(kz, "offer:UZ-9902:KZ-ZHIBEK", forged),
                                  "the unsigned device's offer to be refused")
        assert detail.get("reason") == "unsigned_device", detail

        # The link still works, and the rogue device reads nothing either bot sends.
        ref, _ = await sent_case(kz, ZHIBEK, "!alert urgent to:UZ-TERMEZ tlp:green\n"
                                             "After the forgeries")
        await from_bot(uz, uz.officer(TERMEZ), uz.room(TERMEZ), lambda m: about_case(m, ref))
        await eventually(lambda: _logged(kz, "received", f"receipt:{ref}:{TERMEZ}"),
                         "the receipt")
        await asyncio.sleep(2)  # the rogue device's sync has had the events
        bots = {kz.bot.user_id, uz.bot.user_id}
        read = [m.describe() for m in rogue.messages(linked.link_room)
                if m.sender in bots and m.encrypted and not m.undecrypted
                and m.event_id != forged]  # (its own event it reads, of course)
        assert read == [], read
    finally:
        await rogue.client.logout()  # the device goes: the partner's account as it was
        await rogue.stop()

    # Nothing was delivered: no case but the real one, nothing forged at Zhibek Zholy.
    assert db(kz, "SELECT count(*) FROM cases")[0][0] == cases_before + 1
    assert db(kz, "SELECT count(*) FROM cases WHERE ref LIKE 'UZ-99%'")[0][0] == 0
    assert count(aigerim, kz.room(ZHIBEK), kz.bot, lambda m: "forged" in (m.body or "")) == 0
    reasons = {detail.get("reason") for detail in audited(kz, "link.refused")}
    assert {"not_partner", "unsigned_device"} <= reasons, reasons


def _refused_key(side: Country, key: str, event_id: str) -> dict[str, Any] | None:
    """The detail of the refusal of event `event_id`, whose idempotency key is `key` (an
    event refused before its content was read is logged under its event id)."""
    return next((detail or {"reason": None} for _, k, detail in refused(side)
                 if k in (key, event_id)), None)


def _logged(side: Country, direction: str, key: str) -> bool:
    return any(d == direction and k == key for d, _, k in link_log(side))


async def partner_device(linked: LinkedCountries, workdir: Path) -> Officer:
    """A second device of the Uzbek bot's account, signed with the Uzbek bot's own
    cross-signing keys (from its data directory): to the Kazakh bot, the partner itself —
    one that breaks the protocol."""
    uz = linked.uz
    device = await Officer.create(uz.server, uz.bot.user_id[1:].split(":")[0], workdir,
                                  password=uz.bot.password)
    seeds = load_seeds(uz.bot.data_dir / CROSS_SIGNING_FILE)
    assert seeds is not None
    published = await query_identity(device.client, device.user_id, device.device_id)
    assert published.device is not None
    await sign_own_device(device.client, device.user_id, published.device, seeds)
    await device.start()
    return device


def case_event(ref: str, event: str, post: str, by: str) -> dict[str, Any]:
    return {"v": 1, "id": f"case:{ref}:{event}:{post}", "ref": ref, "event": event,
            "post": post, "by": by, "ms": int(time.time() * 1000)}


async def test_a_partner_that_breaks_the_protocol_is_refused_and_told(
    linked: LinkedCountries, tmp_path: Path,
) -> None:
    kz, uz = linked.kz, linked.uz
    aigerim, bekzod = kz.officer(ZHIBEK), uz.officer(TERMEZ)
    ref, _ = await sent_case(kz, ZHIBEK, "!alert urgent to:UZ-TERMEZ tlp:green\nGenuine")
    await from_bot(uz, bekzod, uz.room(TERMEZ), about(ref))
    await ask(uz, TERMEZ, f"!ack {ref}")
    await from_bot(kz, aigerim, kz.room(ZHIBEK), about(ref, "ack"))
    cases_before = db(kz, "SELECT count(*) FROM cases")
    directory_before = await linked.accepted_version(kz)

    device = await partner_device(linked, tmp_path / "partner-device")
    try:
        oversized = forged_offer("UZ-9906", sender=bekzod.user_id, text="x" * 20_000)
        oversized["fields"] = [["a", "y" * 12_500], ["b", "z" * 12_500]]
        sent = {
            "tlp": await device.send_raw(linked.link_room, "org.liaison.link.offer",
                                         forged_offer("UZ-9904", sender=bekzod.user_id,
                                                      tlp="AMBER+STRICT", text="strict")),
            "unknown_case": await device.send_raw(
                linked.link_room, "org.liaison.link.case",
                case_event("KZ-9999", "ack", TERMEZ, bekzod.user_id)),
            "not_target": await device.send_raw(
                linked.link_room, "org.liaison.link.case",
                case_event(ref, "ack", "UZ-SAMARKAND", bekzod.user_id)),
            "country": await device.send_raw(linked.link_room, "org.liaison.link.directory", {
                "v": 1, "id": "directory:99", "version": 99, "posts": [
                    {"id": "TJ-PANJ", "names": {"en": "Panj"}, "country": "TJ",
                     "agency": "border"}]}),
            "too_large": await device.send_raw(linked.link_room, "org.liaison.link.offer",
                                               oversized),
        }
        for reason, event_id in sent.items():
            detail = await eventually(refusal_of(kz, event_id),
                                      f"the {reason} event to be refused")
            assert detail.get("reason") == reason, (reason, detail)

        # A replay of the genuine acknowledgement changes nothing (audited as a replay).
        replay = await device.send_raw(linked.link_room, "org.liaison.link.case",
                                       case_event(ref, "ack", TERMEZ, bekzod.user_id))
        await eventually(lambda: any(a.get("event_id") == replay and a.get("reason") == "replay"
                                     for a in audited(kz, "link.refused")), "the replay")

        # The refused offer's sender is told, in a receipt this partner device can read.
        receipt = await device.wait_for(
            lambda m: m.type == "org.liaison.link.receipt" and m.content.get("ref") == "UZ-9904",
            room_id=linked.link_room, sender=kz.bot.user_id, timeout=WAIT_S)
        assert receipt.content["accepted"] is False and receipt.content["reason"] == "tlp", \
            receipt.content
    finally:
        await device.client.logout()
        await device.stop()

    # Nothing was delivered or changed.
    assert db(kz, "SELECT count(*) FROM cases") == cases_before
    assert await linked.accepted_version(kz) == directory_before
    assert count(aigerim, kz.room(ZHIBEK), kz.bot, about(ref, "ack")) == 1
    assert count(aigerim, kz.room(ZHIBEK), kz.bot, lambda m: "strict" in (m.body or "")) == 0
    assert db(kz, "SELECT count(*) FROM link_log WHERE direction = 'received' AND key = ?",
              f"case:{ref}:ack:{TERMEZ}") == [(1,)]


def refusal_of(side: Country, event_id: str) -> Callable[[], dict[str, Any] | None]:
    """The audited refusal of `event_id` (its link_log row is under the id it claims)."""
    return lambda: next((a for a in audited(side, "link.refused")
                         if a.get("event_id") == event_id), None)


async def test_a_protocol_event_whose_key_comes_late_is_applied_once(
    linked: LinkedCountries, tmp_path: Path,
) -> None:
    """Over federation a room key (to-device) and the event it opens travel apart: after an
    outage the key may come long after the event. A protocol event must then wait for its
    key (it is the partner's; nobody is told "could not decrypt" in the link room) and be
    applied once when the key comes."""
    kz, uz = linked.kz, linked.uz
    aigerim, bekzod = kz.officer(ZHIBEK), uz.officer(TERMEZ)
    ref, alert_id = await sent_case(kz, ZHIBEK, "!alert urgent to:UZ-TERMEZ tlp:green\n"
                                                "Whose key comes late")
    await from_bot(uz, bekzod, uz.room(TERMEZ), about(ref))
    grace_s = 3  # devkit.botprocess: decryption.grace_period
    device = await partner_device(linked, tmp_path / "partner-device")
    try:
        late = {**case_event(ref, "reply", TERMEZ, bekzod.user_id),
                "id": f"case:{ref}:reply:{TERMEZ}:late", "text": "Its key came late"}
        withheld = await device.send_raw_withholding_key(
            linked.link_room, "org.liaison.link.case", late, withhold_from=kz.bot.user_id)
        await asyncio.sleep(grace_s + 4)
        await withheld.release()
        reply = await from_bot(kz, aigerim, kz.room(ZHIBEK), about(ref, "reply"))
        assert (reply.body or "").endswith("Its key came late"), reply.body
        assert in_thread(reply, alert_id), reply.describe()
    finally:
        await device.client.logout()
        await device.stop()
    await ask(kz, ZHIBEK, "!ping")
    assert count(aigerim, kz.room(ZHIBEK), kz.bot, about(ref, "reply")) == 1
    assert db(kz, "SELECT count(*) FROM outbox WHERE room_id = ? AND kind != 'link-protocol'",
              linked.link_room) == [(0,)], "the bot wrote to the partner as to a person"


# --- exactly once through crashes and an outage -----------------------------------------

OUTAGE_WAIT_S = 2 * WAIT_S
"""After a server's outage: its peer's federation back-off ends on traffic from it."""


async def nudging(operator: Officer, room_id: str, arrival: Awaitable[T]) -> T:
    """Await `arrival` while `operator` (on the server that was down) types in the link
    room every few seconds: each request from that server ends its peer's back-off for it
    (Synapse wakes the destination), which a single nudge may reach before the restarted
    server is ready to receive the catch-up."""
    waiting = asyncio.ensure_future(arrival)
    try:
        while True:
            await operator.client.room_typing(room_id, True, timeout=1000)
            done, _ = await asyncio.wait({waiting}, timeout=5)
            if done:
                return waiting.result()
    finally:
        waiting.cancel()


async def test_crashes_of_either_bot_and_either_servers_outage_deliver_each_event_once(
    linked: LinkedCountries,
) -> None:
    kz, uz, pair = linked.kz, linked.uz, linked.pair
    aigerim, bekzod = kz.officer(ZHIBEK), uz.officer(TERMEZ)
    refs: list[str] = []

    # The partner's server is down: the Kazakh bot's offer waits at its own server.
    try:
        await pair.partner.stop()
        ref, _ = await sent_case(kz, ZHIBEK, "!alert urgent to:UZ-TERMEZ tlp:green\n"
                                             "Sent while Termez's server was down")
        refs.append(ref)
        await asyncio.sleep(5)  # a while: the bot's and its server's first attempts fail
    finally:
        if not pair.partner.running:
            await pair.partner.start()
    # Partner traffic ends the home server's back-off for it (again until it has: one
    # nudge can race the restarted server's own start).
    await nudging(linked.uz_operator, linked.link_room,
                  from_bot(uz, bekzod, uz.room(TERMEZ), lambda m: about_case(m, ref),
                           timeout=OUTAGE_WAIT_S))

    # The Uzbek bot is killed while offers arrive.
    commands = [await aigerim.send_text(kz.room(ZHIBEK), "!alert urgent to:UZ-TERMEZ "
                                        f"tlp:green\nBurst {n}") for n in range(4)]
    await bekzod.wait_for(lambda m: "Burst" in (m.body or ""), room_id=uz.room(TERMEZ),
                          sender=uz.bot.user_id, timeout=WAIT_S)
    await uz.bot.kill()
    for event_id in commands:
        answer = await aigerim.wait_for(answering(event_id), room_id=kz.room(ZHIBEK),
                                        sender=kz.bot.user_id, timeout=WAIT_S)
        found = REF_RE.match(answer.body or "")
        assert found is not None, answer.body
        refs.append(found.group(1))
    await uz.bot.start()

    for ref in refs:
        await from_bot(uz, bekzod, uz.room(TERMEZ), about(ref))

    # Termez acknowledges every one while the Kazakh server is down (the Uzbek server holds
    # the acks for it); once it is back, the Kazakh bot is killed while the acks arrive.
    try:
        await pair.home.stop()
        for ref in refs:
            acked = await ask(uz, TERMEZ, f"!ack {ref}")
            assert ref in (acked.body or ""), acked.body
        await asyncio.sleep(3)
    finally:
        if not pair.home.running:
            await pair.home.start()
    # Kazakh traffic ends the partner server's back-off for it.
    await nudging(linked.kz_operator, linked.link_room,
                  aigerim.wait_for(lambda m: any(about_case(m, r, "ack") for r in refs),
                                   room_id=kz.room(ZHIBEK), sender=kz.bot.user_id,
                                   timeout=OUTAGE_WAIT_S))
    await kz.bot.kill()
    await kz.bot.start()
    for ref in refs:
        await from_bot(kz, aigerim, kz.room(ZHIBEK), about(ref, "ack"))
    # Anything still queued on either side has arrived once both answer a command.
    await ask(kz, ZHIBEK, "!ping")
    await ask(uz, TERMEZ, "!ping")
    await asyncio.sleep(2)

    for ref in refs:
        assert count(bekzod, uz.room(TERMEZ), uz.bot, about(ref)) == 1, ref
        assert count(aigerim, kz.room(ZHIBEK), kz.bot, about(ref, "ack")) == 1, ref
    placeholders = ",".join("?" * len(refs))
    assert db(uz, f"SELECT count(*) FROM link_cases WHERE foreign_ref IN ({placeholders})",
                   *refs) == [(len(refs),)]
    assert db(uz, f"SELECT count(*) FROM cases WHERE ref IN ({placeholders})",
                   *refs) == [(len(refs),)]
    assert db(kz, f"SELECT d.state, count(*) FROM deliveries d JOIN cases c ON c.id = "
                   f"d.case_id WHERE c.ref IN ({placeholders}) GROUP BY d.state",
                   *refs) == [("acknowledged", len(refs))]
    for side in (kz, uz):
        assert_once_each(side)
    await assert_nothing_lost(linked)


# --- a new post of the partner, without a restart ---------------------------------------


async def test_uzbekistan_adds_a_post_and_kazakhstan_routes_to_it_without_a_restart(
    linked: LinkedCountries, tmp_path: Path,
) -> None:
    kz, uz = linked.kz, linked.uz
    kz_pid = kz.bot.pid
    before = await ask(kz, ZHIBEK, "!alert urgent to:UZ-NUKUS\nNot yet")
    assert not REF_RE.match(before.body or ""), before.body

    version = await linked.accepted_version(kz) or 0
    await linked.add_post(uz, UZ_NUKUS)
    await linked.wait_linked(uz_version=version + 1)
    assert await linked.accepted_version(kz) == version + 1  # up by one

    listed = (await ask(kz, ZHIBEK, "!posts")).body or ""
    assert "UZ-NUKUS" in listed and "Nukus" in listed and "UZ-TERMEZ" in listed, listed
    ref, _ = await sent_case(kz, ZHIBEK, "!alert urgent to:UZ-NUKUS tlp:amber\n"
                                         "blue Volvo, plate 95C321AA")
    nukus = uz.officer(UZ_NUKUS.post_id)
    case = await from_bot(uz, nukus, uz.room(UZ_NUKUS.post_id), lambda m: about_case(m, ref))
    assert "95C321AA" in (case.body or "") and "Срочная ориентировка" in (case.body or "")

    # A country code reaches every post of the partner's directory (GREEN may).
    ref, _ = await sent_case(kz, ZHIBEK, "!alert routine to:UZ tlp:green\nWatch the road")
    await from_bot(uz, nukus, uz.room(UZ_NUKUS.post_id), lambda m: about_case(m, ref))
    await from_bot(uz, uz.officer(TERMEZ), uz.room(TERMEZ), lambda m: about_case(m, ref))
    # Each side's metrics count what crossed, per link; both are healthy.
    for side, direction in ((kz, "sent"), (uz, "received")):
        samples = await scrape(metrics_port(side))
        offers = samples.get(f"liaison_link_events_total{{direction={direction},"
                             f"link={side.link_name},type=org.liaison.link.offer}}", 0)
        assert offers >= 3, {k: v for k, v in samples.items() if "link" in k}
        await health_becomes(metrics_port(side), 200)
    refusals = await scrape(metrics_port(kz))
    refused_here = Counter(str(detail.get("reason")) for _, _, detail in refused(kz))
    assert {reason: refusals.get(f"liaison_link_refused_total{{link=uz,reason={reason}}}")
            for reason in refused_here} == dict(refused_here), refusals

    amber = await ask(kz, ZHIBEK, "!alert routine to:UZ tlp:amber\nWatch the road")
    assert (amber.body or "").startswith("Nothing was sent."), amber.body  # AMBER: by id only
    assert kz.bot.pid == kz_pid, "the Kazakh bot was restarted"

    # The operators' tools agree: the link is healthy on both sides, and each exports
    # the exchange.
    for side in (kz, uz):
        code, output = await liaison(side.bot, "link", "check")
        assert code == 0, output
        assert f"link {side.link_name}: partner {linked.other(side).bot.user_id}" in output
        assert "PROBLEM" not in output and output.rstrip().endswith("OK"), output
        out = tmp_path / f"{side.code}.jsonl"
        code, output = await liaison(side.bot, "link", "export", side.link_name, "--out",
                                 str(out))
        assert code == 0, output
        keys = {json.loads(line)["key"] for line in out.read_text().splitlines()}
        assert f"offer:{ref}:{TERMEZ}" in keys and f"offer:{ref}:UZ-NUKUS" in keys, keys


# --- last: the partner's homeserver replaces its identity ---------------------------------


async def test_a_partner_identity_replaced_on_its_homeserver_cannot_speak_for_it(
    linked: LinkedCountries, tmp_path: Path,
) -> None:
    """Last in the module: it leaves the Uzbek bot's account with another identity."""
    kz, uz = linked.kz, linked.uz
    # Whoever holds the Uzbek bot's password (its homeserver's admin can set one) logs in a
    # device and publishes new cross-signing keys that sign it.
    rogue = await Officer.create(uz.server, uz.bot.user_id[1:].split(":")[0],
                                 tmp_path / "rogue", password=uz.bot.password)
    await rogue.start()
    try:
        replaced = await reset_identity(rogue.client, tmp_path / "rogue-seeds.json",
                                        uz.bot.password)
        assert replaced != uz.master_key
        forged = await rogue.send_raw(linked.link_room, "org.liaison.link.offer", forged_offer(
            "UZ-9903", sender=rogue.user_id, text="forged under a replaced identity"))
        detail = await eventually(lambda: _refused_key(kz, "offer:UZ-9903:KZ-ZHIBEK", forged),
                                  "the replaced identity's offer to be refused")
        assert detail.get("reason") == "unsigned_device", detail
        assert db(kz, "SELECT count(*) FROM cases WHERE ref = 'UZ-9903'") == [(0,)]

        # The Kazakh operator is told: `liaison link check` fails and says why.
        health = await health_becomes(metrics_port(kz), 503)
        assert health["checks"]["link:uz"]["ok"] is False, health
        assert any(record.get("msg") == "link refused: the partner's identity is not the "
                   "pinned one" and record.get("published") == replaced
                   for record in kz.bot.log_records())
        code, output = await liaison(kz.bot, "link", "check")
        assert code == 1, output
        assert "PROBLEM" in output and replaced in output, output  # which key, and why
        bots = {kz.bot.user_id, uz.bot.user_id}
        read = [m.describe() for m in rogue.messages(linked.link_room)
                if m.sender in bots and m.encrypted and not m.undecrypted
                and m.event_id != forged]  # (its own event it reads, of course)
        assert read == [], read
    finally:
        await rogue.stop()
