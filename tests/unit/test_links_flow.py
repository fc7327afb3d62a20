"""Cases across a link between two bots (`handlers.links`, `docs/links.md`): a Kazakh bot
and an Uzbek bot, each with its own database, posts and configuration, neither knowing
the other's rooms. Protocol events are carried between them as the shell would carry
them (claimed, then `handlers.links.receive`); the assertions are on what the officers
of each side read and what each side's record says."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nio import MatrixRoom, Receipt, ReceiptEvent

from liaison.bot.chaser import Chaser
from liaison.bot.clock import Clock
from liaison.bot.seen import note_receipts
from liaison.commands.attachments import Fetched, attachment_of, media_fields
from liaison.commands.audience import (
    CaseParties,
    Detail,
    case_detail,
    escalation_detail,
    link_audience,
)
from liaison.commands.links import (
    CaseEventKind,
    DirectoryContent,
    LinkEventType,
    LinkView,
    case_event_key,
    directory_key,
    directory_posts,
)
from liaison.commands.model import Priority, Tlp
from liaison.commands.records import NewCase
from liaison.commands.relations import relation_of
from liaison.commands.render import Notice
from liaison.commands.texts import text
from liaison.config import Config, parse_config
from liaison.handlers import default_registry
from liaison.handlers import links as link_handlers
from liaison.handlers.case_events import (
    CaseLink,
    carry_attachment,
    carry_edit,
    carry_reply,
    withdraw,
)
from liaison.handlers.context import Services
from liaison.storage import audit, cases, chasing, outbox
from liaison.storage import links as link_store
from liaison.storage.db import Database
from tests.unit.commandrun import run_command, transactions_for

NOW = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)

KZ_BOT = "@liaison:kz.example"
UZ_BOT = "@liaison:uz.example"
LINK_ROOM = "!link:kz.example"
KZ_ROOM = "!zhibek:kz.example"
KZ_FIU_ROOM = "!fiu:kz.example"
UZ_ROOM = "!termez:uz.example"
UZ_NUKUS_ROOM = "!nukus:uz.example"
AIGERIM = "@aigerim:kz.example"
BEKZOD = "@bekzod:uz.example"
MALLORY = "@mallory:uz.example"


def key(seed: int) -> str:
    return base64.b64encode(bytes([seed]) * 32).decode().rstrip("=")


def base(user_id: str, posts: list[dict[str, Any]], link: dict[str, Any]) -> dict[str, Any]:
    return {
        "homeserver": {"url": "https://matrix.example"},
        "bot": {"user_id": user_id, "password": {"env": "X"}, "pickle_key": {"env": "Y"}},
        "data_dir": "data", "trust": {"policy": "tofu"}, "posts": posts, "links": [link],
    }


KZ_CONFIG = base(KZ_BOT, [
    {"id": "KZ-ZHIBEK", "names": {"en": "Zhibek Zholy", "ru": "Жибек Жолы"}, "country": "KZ",
     "agency": "border", "room": KZ_ROOM, "timezone": "Asia/Almaty", "language": "en",
     "officers": [AIGERIM]},
    {"id": "KZ-FIU", "names": {"en": "KZ FIU"}, "country": "KZ", "agency": "fiu",
     "room": KZ_FIU_ROOM},
], {"name": "uz", "partner": UZ_BOT, "room": LINK_ROOM, "partner_master_key": key(1),
    "countries": ["UZ"], "expose": ["KZ-ZHIBEK"]})

UZ_CONFIG = base(UZ_BOT, [
    {"id": "UZ-TERMEZ", "names": {"en": "Termez", "ru": "Термез"}, "country": "UZ",
     "agency": "border", "room": UZ_ROOM, "timezone": "Asia/Tashkent", "language": "ru",
     "officers": [BEKZOD]},
    {"id": "UZ-NUKUS", "names": {"en": "Nukus", "ru": "Нукус"}, "country": "UZ",
     "agency": "border", "room": UZ_NUKUS_ROOM, "timezone": "Asia/Tashkent",
     "language": "ru", "clearance": "GREEN"},
], {"name": "kz", "partner": KZ_BOT, "room": LINK_ROOM, "partner_master_key": key(2),
    "countries": ["KZ"]})

ALERT = ("!alert urgent to:UZ-TERMEZ tlp:amber\n"
         "plate: 01A123BC\n"
         "Suspected heroin in a cement load.")


class FixedClock(Clock):
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at

    def now_ms(self) -> int:
        return int(self.at.timestamp() * 1000)


@dataclass
class LinkedBot:
    """One side: its database and configuration, run as the router runs it."""

    name: str
    db: Database
    config: Config
    user_id: str
    joined: frozenset[str]
    clock: FixedClock = field(default_factory=lambda: FixedClock(NOW))
    events: int = 0
    registry: Any = field(default_factory=default_registry)

    @property
    def link(self) -> Any:
        return self.config.links[0]

    async def view(self) -> LinkView:
        """The links as the shell's directory shows them: config plus accepted directories."""
        async with self.db.read() as conn:
            directories = await link_store.accepted_directories(conn)
        return LinkView(links=tuple(self.config.links), directories=directories)

    async def say(self, room_id: str, sender: str, body: str) -> Notice:
        self.events += 1
        return await run_command(
            self.db, self.config, self.clock, self.registry, room_id=room_id, sender=sender,
            body=body, event_id=f"${self.name}-cmd{self.events}", at=self.clock.at,
            joined=self.joined, links=await self.view(), user_id=self.user_id)

    async def run(self, room_id: str, event_id: str | None,
                  work: Callable[[Services], Awaitable[Any]]) -> bool:
        transactions = transactions_for(self.db, self.config, self.clock, joined=self.joined,
                                        links=await self.view(), user_id=self.user_id)

        async def wrapped(services: Services) -> None:
            await work(services)
        return await transactions.run(room_id, event_id, wrapped)

    async def receive(self, event_type: str, content: dict[str, Any], *, event_id: str,
                      sender: str | None = None) -> bool:
        """A protocol event in the link room, as the shell hands it over once verified."""
        link = self.link
        return await self.run(link.room, event_id, lambda services: link_handlers.receive(
            services, link, event_type, content, sender=sender or link.partner,
            event_id=event_id))

    async def reply(self, room_id: str, sender: str, body: str, *, in_thread_of: str) -> None:
        """An officer's reply in a case's thread."""
        self.events += 1
        event_id = f"${self.name}-reply{self.events}"
        relation = relation_of({"m.relates_to": {"rel_type": "m.thread",
                                                 "event_id": in_thread_of}})
        await self.run(room_id, None, lambda services: carry_reply(
            services, room_id=room_id, sender=sender, event_id=event_id, relation=relation,
            body=body))

    async def sent(self) -> list[outbox.OutboxMessage]:
        """Everything queued and not yet sent, now marked sent (as `$<name>-<id>`)."""
        async with self.db.transaction() as conn:
            rows = await conn.execute_fetchall(
                "SELECT id FROM outbox WHERE state = 'pending' ORDER BY id")
            messages = []
            for row in rows:
                await outbox.mark_sent(conn, row[0], event_id=f"${self.name}-{row[0]}",
                                       now_ms=self.clock.now_ms())
                message = await outbox.get(conn, row[0])
                assert message is not None
                messages.append(message)
        return messages

    async def case(self, ref: str) -> cases.Case:
        async with self.db.read() as conn:
            found = await cases.case_by_ref(conn, ref)
        assert found is not None
        return found

    async def deliveries(self, ref: str) -> list[cases.Delivery]:
        case = await self.case(ref)
        async with self.db.read() as conn:
            return await cases.deliveries(conn, case.id)

    async def timeline(self, ref: str) -> list[cases.TimelineEntry]:
        case = await self.case(ref)
        async with self.db.read() as conn:
            return await cases.timeline(conn, case.id)

    async def audited(self, action: str) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            entries = await audit.entries(conn)
        return [entry.detail for entry in entries if entry.action == action]


@dataclass
class Pair:
    kz: LinkedBot
    uz: LinkedBot
    seen: dict[str, list[outbox.OutboxMessage]] = field(default_factory=dict)

    async def carry(self, source: LinkedBot, target: LinkedBot) -> list[outbox.OutboxMessage]:
        """Send what `source` queued; the protocol events in the link room reach `target`.
        Returns every message `source` sent."""
        messages = await source.sent()
        for message in messages:
            if message.room_id == LINK_ROOM and message.kind == "link-protocol":
                assert message.event_id is not None
                await target.receive(message.event_type, message.content,
                                     event_id=message.event_id)
        return messages

    async def settle(self) -> dict[str, list[outbox.OutboxMessage]]:
        """Carry both ways until nothing is left; every message sent but the answers to
        commands (which `LinkedBot.say` returns), by room."""
        by_room: dict[str, list[outbox.OutboxMessage]] = {}
        for _ in range(6):
            moved = await self.carry(self.kz, self.uz) + await self.carry(self.uz, self.kz)
            for message in moved:
                if message.kind not in ("reply", "refusal"):  # answers to commands
                    by_room.setdefault(message.room_id, []).append(message)
            if not moved:
                break
        return by_room


async def publish(source: LinkedBot, target: LinkedBot, version: int = 1) -> None:
    """`source` publishes its directory to `target` (the shell does this at start)."""
    link = source.link
    posts = directory_posts(link, source.config.posts, source.config.groups)
    content = DirectoryContent(id=directory_key(version), version=version, posts=posts)
    assert await target.receive(LinkEventType.DIRECTORY, content.model_dump(mode="json"),
                                event_id=f"${source.name}-directory{version}")


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    kz_db = await Database.open(tmp_path / "kz.db")
    uz_db = await Database.open(tmp_path / "uz.db")
    kz = LinkedBot("kz", kz_db, parse_config(json.dumps(KZ_CONFIG)), KZ_BOT,
                   frozenset({KZ_ROOM, KZ_FIU_ROOM, LINK_ROOM}))
    uz = LinkedBot("uz", uz_db, parse_config(json.dumps(UZ_CONFIG)), UZ_BOT,
                   frozenset({UZ_ROOM, UZ_NUKUS_ROOM, LINK_ROOM}))
    await publish(kz, uz)
    await publish(uz, kz)
    yield Pair(kz, uz)
    await kz_db.close()
    await uz_db.close()


def bodies(messages: list[outbox.OutboxMessage]) -> list[str]:
    return [str(message.content.get("body", "")) for message in messages]


# --- an offer becomes an inbound case ---------------------------------------------------


async def test_alert_to_a_partner_post_is_relayed_in_termez_in_russian(pair: Pair) -> None:
    answer = await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    assert "KZ-0001" in answer.text and "UZ-TERMEZ" in answer.text

    rooms = await pair.settle()

    offers = [m for m in rooms[LINK_ROOM] if m.event_type == LinkEventType.OFFER]
    assert [(m.content["ref"], m.content["target"], m.content["tlp"]) for m in offers] == [
        ("KZ-0001", "UZ-TERMEZ", "AMBER")]
    assert "body" not in offers[0].content  # read by a bot, never shown to a person
    relayed = rooms[UZ_ROOM]
    assert len(relayed) == 1 and relayed[0].kind == "case-relay"
    body = relayed[0].content["body"]
    assert "KZ-0001" in body and "Жибек Жолы (KZ-ZHIBEK)" in body
    assert text("case.ack_hint", "ru") in body  # Termez reads Russian
    assert "01A123BC" in body and "Suspected heroin" in body
    assert relayed[0].content["msgtype"] == "m.text"  # it rings, like any relay

    inbound = await pair.uz.case("KZ-0001")  # the origin's reference, free here
    assert (inbound.origin_post, inbound.origin_room, inbound.origin_sender, inbound.tlp) == (
        "KZ-ZHIBEK", LINK_ROOM, AIGERIM, "AMBER")
    [delivery] = await pair.uz.deliveries("KZ-0001")
    assert (delivery.post, delivery.room_id) == ("UZ-TERMEZ", UZ_ROOM)
    [outbound] = await pair.kz.deliveries("KZ-0001")
    assert (outbound.post, outbound.room_id) == ("UZ-TERMEZ", LINK_ROOM)

    receipts = [m for m in rooms[LINK_ROOM] if m.event_type == LinkEventType.RECEIPT]
    assert [(m.content["accepted"], m.content["partner_ref"]) for m in receipts] == [
        (True, "KZ-0001")]
    assert [d["type"] for d in await pair.kz.audited("link.received")] == [
        LinkEventType.DIRECTORY, LinkEventType.RECEIPT]
    assert KZ_ROOM not in rooms  # an accepted receipt tells the officer nothing new
    async with pair.uz.db.read() as conn:
        logged = await link_store.exchange(conn, "kz")
    assert [(e.direction, e.key, e.case_ref) for e in logged if e.case_ref] == [
        ("received", "offer:KZ-0001:UZ-TERMEZ", "KZ-0001"),
        ("sent", "receipt:KZ-0001:UZ-TERMEZ", "KZ-0001")]


async def test_a_taken_reference_gets_the_partners_own_and_keeps_the_foreign_one(
        pair: Pair) -> None:
    await pair.uz.say(UZ_ROOM, BEKZOD, "!alert routine to:UZ-NUKUS tlp:green\nlocal one")
    await pair.uz.sent()
    async with pair.uz.db.transaction() as conn:  # this bot already holds a KZ-0001
        await conn.execute("UPDATE cases SET ref = 'KZ-0001' WHERE ref = 'UZ-0001'")

    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    rooms = await pair.settle()

    async with pair.uz.db.read() as conn:
        case_id = await link_store.case_id_by_foreign_ref(conn, "kz", "inbound", "KZ-0001")
        assert case_id is not None
        inbound = await cases.case_by_id(conn, case_id)
    assert inbound is not None and inbound.ref == "UZ-0002"
    [receipt] = [m for m in rooms[LINK_ROOM] if m.event_type == LinkEventType.RECEIPT]
    assert (receipt.content["ref"], receipt.content["partner_ref"]) == ("KZ-0001", "UZ-0002")
    assert "UZ-0002" in rooms[UZ_ROOM][0].content["body"]


# --- case events both ways --------------------------------------------------------------


async def test_ack_at_termez_is_applied_at_kz_and_told_in_its_thread(pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    await pair.settle()
    pair.uz.clock.at += timedelta(minutes=4)
    pair.kz.clock.at += timedelta(minutes=4)

    answer = await pair.uz.say(UZ_ROOM, BEKZOD, "!ack KZ-0001")
    assert "KZ-0001" in answer.text
    rooms = await pair.settle()

    [event] = [m for m in rooms[LINK_ROOM] if m.event_type == LinkEventType.CASE]
    assert (event.content["event"], event.content["post"], event.content["by"]) == (
        "ack", "UZ-TERMEZ", BEKZOD)
    [told] = rooms[KZ_ROOM]
    assert told.kind == "case-ack"
    assert told.content["m.relates_to"]["event_id"] == "$kz-cmd1"  # the alert's thread
    assert "Termez (UZ-TERMEZ)" in told.content["body"]
    [delivery] = await pair.kz.deliveries("KZ-0001")
    assert (delivery.acknowledged_by, delivery.state) == (BEKZOD, "acknowledged")
    assert UZ_ROOM not in rooms  # nothing goes back to Termez

    kz_status = await pair.kz.say(KZ_ROOM, AIGERIM, "!status KZ-0001")
    uz_status = await pair.uz.say(UZ_ROOM, BEKZOD, "!status KZ-0001")
    assert BEKZOD in kz_status.text and BEKZOD in uz_status.text


async def test_thread_reply_at_termez_reaches_kz_and_kz_reply_reaches_termez(
        pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    first = await pair.settle()
    relay_id = first[UZ_ROOM][0].event_id
    assert relay_id is not None

    await pair.uz.reply(UZ_ROOM, BEKZOD, "Stopped at the border, searching.",
                        in_thread_of=relay_id)
    rooms = await pair.settle()
    [told] = rooms[KZ_ROOM]
    assert "Stopped at the border, searching." in told.content["body"]
    assert told.content["m.relates_to"]["event_id"] == "$kz-cmd1"
    [delivery] = await pair.kz.deliveries("KZ-0001")
    assert delivery.acknowledged_by == BEKZOD  # a reply to an alert acknowledges

    await pair.kz.reply(KZ_ROOM, AIGERIM, "Thank you, keep us posted.", in_thread_of="$kz-cmd1")
    rooms = await pair.settle()
    [back] = rooms[UZ_ROOM]
    assert "Thank you, keep us posted." in back.content["body"]
    assert back.content["m.relates_to"]["event_id"] == relay_id  # Termez's case thread


async def test_close_at_kz_closes_the_inbound_case_and_tells_termez(pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    await pair.settle()

    await pair.kz.say(KZ_ROOM, AIGERIM, "!close KZ-0001 seized 40 kg")
    rooms = await pair.settle()

    [event] = [m for m in rooms[LINK_ROOM] if m.event_type == LinkEventType.CASE]
    assert (event.content["event"], event.content["outcome"]) == ("close", "seized 40 kg")
    inbound = await pair.uz.case("KZ-0001")
    assert (inbound.state, inbound.outcome) == ("closed", "seized 40 kg")
    assert len(rooms[UZ_ROOM]) == 1 and rooms[UZ_ROOM][0].kind == "case-closed"


# --- refusals ---------------------------------------------------------------------------


async def test_amber_strict_is_refused_at_the_link_before_anything_crosses(
        pair: Pair) -> None:
    answer = await pair.kz.say(KZ_ROOM, AIGERIM,
                               "!alert urgent to:UZ-TERMEZ tlp:amber+strict\nsecret")
    rooms = await pair.settle()
    assert "UZ-TERMEZ" in answer.text
    assert LINK_ROOM not in rooms


async def test_an_offer_the_partner_refuses_is_told_to_the_officer_with_the_reason(
        pair: Pair) -> None:
    # KZ's view of UZ-NUKUS says AMBER; UZ keeps it at GREEN: UZ refuses the offer.
    directory = DirectoryContent(id=directory_key(2), version=2, posts=tuple(
        post.model_copy(update={"clearance": Tlp.AMBER})
        for post in directory_posts(pair.uz.link, pair.uz.config.posts, ())))
    assert await pair.kz.receive(LinkEventType.DIRECTORY, directory.model_dump(mode="json"),
                                 event_id="$uz-directory2")

    await pair.kz.say(KZ_ROOM, AIGERIM, "!alert urgent to:UZ-NUKUS tlp:amber\nlook out")
    rooms = await pair.settle()

    assert UZ_NUKUS_ROOM not in rooms
    [receipt] = [m for m in rooms[LINK_ROOM] if m.event_type == LinkEventType.RECEIPT]
    assert (receipt.content["accepted"], receipt.content["reason"]) == (False, "clearance")
    [told] = rooms[KZ_ROOM]
    assert told.content["body"].startswith("TLP:AMBER") or "KZ-0001" in told.content["body"]
    assert text("link.reason.clearance", "en") in told.content["body"]
    assert told.content["m.relates_to"]["event_id"] == "$kz-cmd1"
    [delivery] = await pair.kz.deliveries("KZ-0001")
    assert delivery.refused_by == UZ_BOT and delivery.refusal_reason == "link"
    async with pair.uz.db.read() as conn:
        assert await cases.case_by_ref(conn, "KZ-0001") is None
    assert [d["reason"] for d in await pair.uz.audited("link.refused")] == ["clearance"]


async def test_an_event_about_a_case_never_offered_is_refused_and_changes_nothing(
        pair: Pair) -> None:
    forged = {"v": 1, "id": case_event_key("KZ-0099", CaseEventKind.ACK, "UZ-TERMEZ", ""),
              "ref": "KZ-0099", "event": "ack", "post": "UZ-TERMEZ", "by": BEKZOD,
              "ms": 0}
    assert await pair.kz.receive(LinkEventType.CASE, forged, event_id="$forged")
    assert [d["reason"] for d in await pair.kz.audited("link.refused")] == ["unknown_case"]
    assert await pair.kz.sent() == []


async def test_an_ack_for_a_post_the_case_was_not_offered_to_is_refused(pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    await pair.settle()
    wrong = {"v": 1, "id": case_event_key("KZ-0001", CaseEventKind.ACK, "UZ-NUKUS", ""),
             "ref": "KZ-0001", "event": "ack", "post": "UZ-NUKUS", "by": BEKZOD, "ms": 0}
    assert await pair.kz.receive(LinkEventType.CASE, wrong, event_id="$wrong")
    assert [d["reason"] for d in await pair.kz.audited("link.refused")] == ["not_target"]
    [delivery] = await pair.kz.deliveries("KZ-0001")
    assert delivery.acknowledged_ms is None
    assert await pair.kz.sent() == []


async def test_an_unknown_schema_is_refused(pair: Pair) -> None:
    assert await pair.uz.receive(LinkEventType.OFFER, {"v": 1, "id": "offer:x:y", "evil": 1},
                                 event_id="$bad")
    assert [d["reason"] for d in await pair.uz.audited("link.refused")] == ["schema"]


# --- replays ----------------------------------------------------------------------------


async def test_a_replayed_offer_or_ack_changes_nothing(pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    first = await pair.kz.sent()
    [offer] = [m for m in first if m.event_type == LinkEventType.OFFER]
    await pair.uz.receive(offer.event_type, offer.content, event_id="$offer-once")
    await pair.uz.receive(offer.event_type, offer.content, event_id="$offer-again")
    uz_sent = await pair.uz.sent()
    assert len([m for m in uz_sent if m.room_id == UZ_ROOM]) == 1
    assert len([m for m in uz_sent if m.event_type == LinkEventType.RECEIPT]) == 1
    assert [d["reason"] for d in await pair.uz.audited("link.refused")] == ["replay"]
    assert len(await pair.uz.deliveries("KZ-0001")) == 1

    await pair.uz.say(UZ_ROOM, BEKZOD, "!ack KZ-0001")
    [ack] = [m for m in await pair.uz.sent() if m.event_type == LinkEventType.CASE]
    for event_id in ("$ack-once", "$ack-again"):
        await pair.kz.receive(ack.event_type, ack.content, event_id=event_id)
    told = [m for m in await pair.kz.sent() if m.room_id == KZ_ROOM]
    assert len(told) == 1


# --- !posts -----------------------------------------------------------------------------


async def test_posts_lists_local_posts_and_what_the_link_offers(pair: Pair) -> None:
    answer = await pair.kz.say(KZ_ROOM, AIGERIM, "!posts")
    assert answer.text.splitlines() == [
        "Posts of this bot:",
        "• Zhibek Zholy (KZ-ZHIBEK): KZ, border, up to TLP:AMBER",
        "• KZ FIU (KZ-FIU): KZ, fiu, up to TLP:AMBER",
        f"Link “uz” ({UZ_BOT}), directory version 1:",
        "• Termez (UZ-TERMEZ): UZ, border, up to TLP:AMBER",
        "• Nukus (UZ-NUKUS): UZ, border, up to TLP:GREEN",
    ]
    russian = await pair.uz.say(UZ_ROOM, BEKZOD, "!посты")
    assert russian.text.splitlines()[0] == "Посты этого бота:"
    assert "Жибек Жолы (KZ-ZHIBEK)" in russian.text


# --- chasing ----------------------------------------------------------------------------


@dataclass
class Rooms:
    """The chaser's Matrix side: the bot's joined rooms, no direct rooms."""

    joined: frozenset[str]

    def joined_rooms(self) -> frozenset[str]:
        return self.joined

    def members(self, room_id: str) -> frozenset[str] | None:
        return None

    async def direct_room(self, user_id: str) -> str | None:
        return None


async def test_only_the_partner_chases_and_the_origin_hears_of_each_reminder(
        pair: Pair) -> None:
    kz_chaser = Chaser(pair.kz.db, pair.kz.clock, pair.kz.config,
                       destinations=Rooms(pair.kz.joined), wake_sender=lambda: None)
    uz_chaser = Chaser(pair.uz.db, pair.uz.clock, pair.uz.config,
                       destinations=Rooms(pair.uz.joined), wake_sender=lambda: None)
    await pair.kz.say(KZ_ROOM, AIGERIM, "!alert flash to:UZ-TERMEZ tlp:amber\nwhite Kamaz")
    await pair.settle()
    for bot in (pair.kz, pair.uz):
        bot.clock.at = NOW + timedelta(minutes=10)
    await kz_chaser.tick()
    await uz_chaser.tick()

    rooms = await pair.settle()
    [reminder] = rooms[UZ_ROOM]
    assert reminder.kind == "chase-remind" and "KZ-0001" in reminder.content["body"]
    assert [m.content.get("event") for m in rooms[LINK_ROOM]] == ["reminded"]
    assert KZ_ROOM not in rooms  # the origin's own chaser says nothing of a linked post
    kinds = [entry.kind for entry in await pair.kz.timeline("KZ-0001")]
    assert kinds.count("reminded") == 1


# --- hits stay on their side ------------------------------------------------------------


async def test_a_hit_on_an_inbound_case_is_never_written_into_the_link_room(
        pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    await pair.settle()

    await pair.uz.say(UZ_ROOM, BEKZOD, "!alert routine to:UZ-NUKUS tlp:green\n"
                                       "plate: 01A123BC\nseen again")
    rooms = await pair.settle()

    assert LINK_ROOM not in rooms
    [hit] = [body for body in bodies(rooms.get(UZ_ROOM, [])) if "KZ-0001" in body]
    assert "Жибек Жолы (KZ-ZHIBEK)" in hit  # the origin as its directory names it


# --- a request delayed and refused at the partner ---------------------------------------


async def test_a_request_delayed_then_refused_at_termez_is_told_to_the_requester(
        pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, "!request urgent to:UZ-TERMEZ tlp:amber\n"
                                        "Who owns plate 01A123BC?")
    await pair.settle()

    await pair.uz.say(UZ_ROOM, BEKZOD, "!delay KZ-0001 2d judicial waiting for the court")
    rooms = await pair.settle()
    [delayed] = rooms[KZ_ROOM]
    assert delayed.kind == "case-delayed"
    assert "Termez (UZ-TERMEZ)" in delayed.content["body"]
    assert text("request.reason.judicial", "en") in delayed.content["body"]
    assert "waiting for the court" in delayed.content["body"]
    # the partner's new deadline crosses: the origin's record of Termez moves with it
    [uz_delivery] = await pair.uz.deliveries("KZ-0001")
    [kz_delivery] = await pair.kz.deliveries("KZ-0001")
    assert uz_delivery.due_ms is not None and kz_delivery.due_ms == uz_delivery.due_ms
    assert "now due" in delayed.content["body"]
    status = await pair.kz.say(KZ_ROOM, AIGERIM, "!status KZ-0001")
    assert f"answer delayed by Termez (UZ-TERMEZ) ({BEKZOD}) until " in status.text

    await pair.uz.say(UZ_ROOM, BEKZOD, "!delay KZ-0001 1d judicial still waiting")
    rooms = await pair.settle()
    assert "still waiting" in rooms[KZ_ROOM][0].content["body"]  # a second delay crosses too

    await pair.uz.say(UZ_ROOM, BEKZOD, "!refuse KZ-0001 law not permitted")
    rooms = await pair.settle()
    [refused] = rooms[KZ_ROOM]
    assert refused.kind == "case-declined"
    assert text("request.reason.law", "en") in refused.content["body"]
    [delivery] = await pair.kz.deliveries("KZ-0001")
    assert (delivery.refused_by, delivery.refusal_reason) == (BEKZOD, "law")


# --- more of the flow -------------------------------------------------------------------


async def test_two_posts_of_one_partner_are_two_offers_and_one_inbound_case(
        pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, "!alert urgent to:UZ-TERMEZ,UZ-NUKUS tlp:green\n"
                                        "white Kamaz")
    rooms = await pair.settle()

    offers = [m.content for m in rooms[LINK_ROOM] if m.event_type == LinkEventType.OFFER]
    assert [(o["target"], o["targets"]) for o in offers] == [
        ("UZ-TERMEZ", ["UZ-TERMEZ", "UZ-NUKUS"]), ("UZ-NUKUS", ["UZ-TERMEZ", "UZ-NUKUS"])]
    assert [d.post for d in await pair.uz.deliveries("KZ-0001")] == ["UZ-TERMEZ", "UZ-NUKUS"]
    assert len(rooms[UZ_ROOM]) == len(rooms[UZ_NUKUS_ROOM]) == 1
    status = await pair.uz.say(UZ_ROOM, BEKZOD, "!status KZ-0001")
    assert "Жибек Жолы (KZ-ZHIBEK)" in status.text  # the origin as its directory names it


async def test_update_and_cancel_at_kz_reach_termez(pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    await pair.settle()

    await pair.kz.say(KZ_ROOM, AIGERIM, "!update KZ-0001 The truck turned back north.")
    rooms = await pair.settle()
    [update] = rooms[UZ_ROOM]
    assert update.kind == "case-update"
    assert "The truck turned back north." in update.content["body"]

    await pair.kz.say(KZ_ROOM, AIGERIM, "!cancel KZ-0001")
    rooms = await pair.settle()
    assert [m.kind for m in rooms[UZ_ROOM]] == ["case-cancelled"]
    assert (await pair.uz.case("KZ-0001")).state == "cancelled"


async def test_a_directory_of_posts_the_link_does_not_serve_or_an_old_one_is_refused(
        pair: Pair) -> None:
    foreign = DirectoryContent(id=directory_key(5), version=5, posts=directory_posts(
        pair.kz.link, pair.kz.config.posts, ()))  # Kazakh posts, over a link serving UZ
    assert await pair.kz.receive(LinkEventType.DIRECTORY, foreign.model_dump(mode="json"),
                                 event_id="$foreign")
    old = DirectoryContent(id=directory_key(1), version=1, posts=())
    assert await pair.kz.receive(LinkEventType.DIRECTORY, old.model_dump(mode="json"),
                                 event_id="$old")
    assert [d["reason"] for d in await pair.kz.audited("link.refused")] == [
        "country", "stale"]
    view = await pair.kz.view()
    assert view.directories["uz"].version == 1
    assert sorted(view.partner_posts()) == ["UZ-NUKUS", "UZ-TERMEZ"]


async def test_a_read_receipt_at_termez_is_told_to_kz_as_seen(pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    rooms = await pair.settle()
    relay = rooms[UZ_ROOM][0]
    room = MatrixRoom(UZ_ROOM, UZ_BOT)
    room.add_member(BEKZOD, "Bekzod", None)
    receipt = ReceiptEvent([Receipt(str(relay.event_id), "m.read", BEKZOD, 0)])
    await note_receipts(pair.uz.db, pair.uz.clock, room, [receipt], UZ_BOT,
                        pair.uz.config.links)

    rooms = await pair.settle()
    assert [m.content.get("event") for m in rooms[LINK_ROOM]] == ["seen"]
    [delivery] = await pair.kz.deliveries("KZ-0001")
    assert delivery.seen_by == BEKZOD


# --- attachments ------------------------------------------------------------------------

FILE = {"url": "mxc://kz.example/photo", "key": {"k": "c2VjcmV0", "alg": "A256CTR"},
        "iv": "aXY", "hashes": {"sha256": "aGFzaA"}, "v": "v2"}


async def test_a_photo_attached_at_kz_is_shown_at_termez_as_the_encrypted_upload(
        pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    await pair.settle()
    photo = attachment_of({"msgtype": "m.image", "body": "truck.jpg", "file": FILE,
                           "info": {"mimetype": "image/jpeg", "size": 5}})
    assert photo is not None
    fetched = Fetched.of(b"bytes")
    media = media_fields(photo, file=FILE, size=5, thumbnail=None)
    case = await pair.kz.case("KZ-0001")
    await pair.kz.run(KZ_ROOM, None, lambda services: carry_attachment(
        services, link=CaseLink(case, pair.kz.config.posts[0], None), sender=AIGERIM,
        event_id="$photo", attachment=photo, fetched=fetched, media=media))

    rooms = await pair.settle()
    [event] = [m.content for m in rooms[LINK_ROOM] if m.event_type == LinkEventType.CASE]
    assert event["event"] == "attachment" and event["attachment"]["file"] == FILE
    [shown] = rooms[UZ_ROOM]
    assert (shown.kind, shown.content["msgtype"], shown.content["file"]) == (
        "case-attachment", "m.image", FILE)
    assert fetched.sha256 in shown.content["body"]
    uz_kinds = [entry.kind for entry in await pair.uz.timeline("KZ-0001")]
    assert "attached" in uz_kinds


async def test_passing_a_case_on_to_a_partner_post_offers_it(pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, "!alert urgent to:KZ-FIU tlp:green\nwhite Kamaz")
    await pair.settle()

    answer = await pair.kz.say(KZ_ROOM, AIGERIM, "!update KZ-0001 to:UZ-TERMEZ heading south")
    rooms = await pair.settle()

    assert "UZ-TERMEZ" in answer.text
    offers = [m.content for m in rooms[LINK_ROOM] if m.event_type == LinkEventType.OFFER]
    assert [o["target"] for o in offers] == ["UZ-TERMEZ"]
    assert [m.kind for m in rooms[UZ_ROOM]] == ["case-relay", "case-update"]
    assert "heading south" in rooms[UZ_ROOM][1].content["body"]


def test_a_case_beyond_what_an_offer_carries_is_refused_at_the_origin() -> None:
    # A command is at most 8,000 characters, so this guards what edits and later limits
    # could make of a case rather than anything an officer can type today.
    new = NewCase(kind="alert", origin_post="KZ-ZHIBEK", origin_country="KZ",
                  priority=Priority.URGENT, tlp=Tlp.GREEN, category=None, grading=None,
                  related_ref=None, fields=(("plate", "01A123BC"),), text="x" * 19_000,
                  due_ms=None, forwardable=True, origin_room=KZ_ROOM, origin_event_id="$e",
                  origin_sender=AIGERIM, created_ms=0)
    assert link_handlers.offer_refusal(new, "UZ-TERMEZ", ["UZ-TERMEZ"]) is None
    too_long = replace(new, text="x" * 20_001)
    too_large = replace(new, fields=tuple((f"k{i}", "ы" * 19_000) for i in range(3)))
    for case in (too_long, too_large):
        refusal = link_handlers.offer_refusal(case, "UZ-TERMEZ", ["UZ-TERMEZ"])
        assert refusal is not None and refusal.reason == "too_large"


async def test_an_offer_to_a_post_whose_room_is_not_reachable_is_refused_with_the_reason(
        pair: Pair) -> None:
    pair.uz.joined = pair.uz.joined - {UZ_ROOM}  # the UZ bot was removed from Termez's room
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    rooms = await pair.settle()

    [told] = rooms[KZ_ROOM]
    assert text("link.reason.not_reachable", "en") in told.content["body"]
    assert "Termez (UZ-TERMEZ)" in told.content["body"]
    status = await pair.kz.say(KZ_ROOM, AIGERIM, "!status KZ-0001")
    assert text("request.reason.link", "en") in status.text


async def test_deleting_the_alert_at_kz_cancels_the_inbound_case(pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    await pair.settle()

    await pair.kz.run(KZ_ROOM, None, lambda services: withdraw(
        services, room_id=KZ_ROOM, sender=AIGERIM, event_id="$redaction",
        redacts="$kz-cmd1"))
    rooms = await pair.settle()

    assert [m.content.get("event") for m in rooms[LINK_ROOM]] == ["cancel"]
    assert (await pair.uz.case("KZ-0001")).state == "cancelled"
    assert [m.kind for m in rooms[UZ_ROOM]] == ["case-cancelled"]


async def test_an_edit_of_the_alert_at_kz_reaches_termez_as_an_update_in_russian(
        pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    await pair.settle()

    await pair.kz.run(KZ_ROOM, None, lambda services: carry_edit(
        services, room_id=KZ_ROOM, sender=AIGERIM, event_id="$edit", original="$kz-cmd1",
        new_body=ALERT.replace("01A123BC", "01A999ZZ")))
    rooms = await pair.settle()

    [event] = [m.content for m in rooms[LINK_ROOM] if m.event_type == LinkEventType.CASE]
    assert event["event"] == "update" and "01A999ZZ" in event["text"]
    [update] = rooms[UZ_ROOM]
    assert update.kind == "case-update" and "01A999ZZ" in update.content["body"]


async def test_the_partner_bots_read_receipt_in_the_link_room_is_no_one_seeing_it(
        pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    rooms = await pair.settle()
    offer = rooms[LINK_ROOM][0]
    room = MatrixRoom(LINK_ROOM, KZ_BOT)
    room.add_member(UZ_BOT, "UZ", None)
    receipt = ReceiptEvent([Receipt(str(offer.event_id), "m.read", UZ_BOT, 0)])
    await note_receipts(pair.kz.db, pair.kz.clock, room, [receipt], KZ_BOT,
                        pair.kz.config.links)
    [delivery] = await pair.kz.deliveries("KZ-0001")
    assert delivery.seen_ms is None


async def test_a_request_of_a_deadline_class_is_due_by_it_on_both_sides(pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, "!request urgent to:UZ-TERMEZ tlp:amber "
                                        "class:urgent-direct\nWho owns plate 01A123BC?")
    await pair.settle()
    eight_hours = NOW_MS + 8 * 3600 * 1000
    [kz_delivery] = await pair.kz.deliveries("KZ-0001")
    [uz_delivery] = await pair.uz.deliveries("KZ-0001")
    assert kz_delivery.due_ms == uz_delivery.due_ms == eight_hours


async def test_a_reference_in_this_bots_own_numbering_is_never_taken_over(pair: Pair) -> None:
    # A partner offering "UZ-0001" must not make the Uzbek bot's next own case clash.
    offer = {"v": 1, "id": "offer:UZ-0001:UZ-TERMEZ", "ref": "UZ-0001", "kind": "alert",
             "origin_post": "KZ-ZHIBEK", "origin_sender": AIGERIM, "target": "UZ-TERMEZ",
             "targets": ["UZ-TERMEZ"], "priority": "urgent", "tlp": "GREEN",
             "created_ms": NOW_MS, "text": "odd reference"}
    assert await pair.uz.receive(LinkEventType.OFFER, offer, event_id="$odd")
    async with pair.uz.db.read() as conn:
        case_id = await link_store.case_id_by_foreign_ref(conn, "kz", "inbound", "UZ-0001")
        assert case_id is not None
        inbound = await cases.case_by_id(conn, case_id)
    assert inbound is not None and inbound.ref == "UZ-0001"  # numbered here, as its own
    answer = await pair.uz.say(UZ_ROOM, BEKZOD, "!alert routine to:UZ-NUKUS tlp:green\nours")
    assert answer.text.startswith("UZ-0002"), answer.text


async def test_a_post_the_partner_stopped_publishing_still_hears_the_end_of_its_cases(
        pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    await pair.settle()
    nukus_only = DirectoryContent(id=directory_key(2), version=2, posts=tuple(
        post for post in directory_posts(pair.uz.link, pair.uz.config.posts, ())
        if post.id == "UZ-NUKUS"))
    assert await pair.kz.receive(LinkEventType.DIRECTORY, nukus_only.model_dump(mode="json"),
                                 event_id="$uz-directory2")

    await pair.kz.say(KZ_ROOM, AIGERIM, "!close KZ-0001 found nothing")
    rooms = await pair.settle()
    assert [m.content.get("event") for m in rooms[LINK_ROOM]] == ["close"]
    assert (await pair.uz.case("KZ-0001")).state == "closed"


# --- who reads a link room --------------------------------------------------------------


@pytest.mark.parametrize(("tlp", "origin", "targets", "ceiling", "expected"), [
    (Tlp.AMBER, "KZ-ZHIBEK", {"UZ-TERMEZ"}, Tlp.AMBER, Detail.PARTICIPANT),
    (Tlp.GREEN, "UZ-TERMEZ", {"KZ-ZHIBEK"}, Tlp.AMBER, Detail.PARTICIPANT),
    (Tlp.GREEN, "KZ-ZHIBEK", {"KZ-FIU"}, Tlp.AMBER, Detail.NONE),
    (Tlp.AMBER, "KZ-ZHIBEK", {"UZ-TERMEZ"}, Tlp.GREEN, Detail.NONE),
    (Tlp.AMBER_STRICT, "KZ-ZHIBEK", {"UZ-TERMEZ"}, Tlp.AMBER, Detail.NONE),
    (Tlp.RED, "KZ-ZHIBEK", {"UZ-TERMEZ"}, Tlp.AMBER, Detail.NONE),
])
def test_a_link_room_reads_the_cases_of_its_partners_posts_within_the_links_tlp(
        tlp: Tlp, origin: str, targets: set[str], ceiling: Tlp, expected: Detail) -> None:
    audience = link_audience(LINK_ROOM, ("UZ-TERMEZ", "UZ-NUKUS"), ceiling)
    parties = CaseParties(ref="KZ-0001", tlp=tlp, origin=origin, targets=frozenset(targets))
    assert case_detail(audience, parties, {}) is expected
    assert escalation_detail(audience, parties, {}) is expected  # never a mere reference


async def test_a_reply_too_long_for_one_event_crosses_shortened(pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    await pair.settle()
    long_reply = "ж" * 2_000 + "\N{GRINNING FACE}" * 11_000  # 48,000 bytes of UTF-8
    await pair.kz.reply(KZ_ROOM, AIGERIM, long_reply, in_thread_of="$kz-cmd1")
    rooms = await pair.settle()
    [event] = [m.content for m in rooms[LINK_ROOM] if m.event_type == LinkEventType.CASE]
    assert event["event"] == "reply" and event["text"].endswith("…")
    assert len(rooms[UZ_ROOM]) == 1
    assert await pair.uz.audited("link.refused") == []


async def test_an_escalation_at_the_partner_counts_in_the_origins_reports(pair: Pair) -> None:
    await pair.kz.say(KZ_ROOM, AIGERIM, ALERT)
    await pair.settle()
    escalated = {"v": 1, "id": case_event_key("KZ-0001", CaseEventKind.ESCALATED, "UZ-TERMEZ",
                                               "1"),
                 "ref": "KZ-0001", "event": "escalated", "post": "UZ-TERMEZ", "ms": 5}
    assert await pair.kz.receive(LinkEventType.CASE, escalated, event_id="$escalated")
    async with pair.kz.db.read() as conn:
        [delivery] = await chasing.report_deliveries(conn, since_ms=0, posts=["UZ-TERMEZ"])
    assert delivery.post == "UZ-TERMEZ" and len(delivery.escalations) == 1
