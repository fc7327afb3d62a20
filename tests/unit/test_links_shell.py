"""The Matrix side of links (`bot.links`, `bot.trust`): who may speak for a partner, what
happens to a protocol event in a link room, who gets a link room's keys, the directory
this bot publishes, and what `/metrics` and `/healthz` say per link.

Identities are real: Ed25519 cross-signing keys made the way `bot.crosssigning` makes
the bot's own, devices with vodozemac accounts, and Megolm events encrypted by the
partner's group session and decrypted by a real nio client."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import canonicaljson
import pytest
import vodozemac
from nio import (
    AsyncClient,
    AsyncClientConfig,
    Event,
    InviteInfo,
    InviteMemberEvent,
    KeysClaimResponse,
    MatrixRoom,
    MegolmEvent,
    RoomMemberEvent,
    RoomMessageText,
    UnknownEvent,
)
from nio.crypto import OlmDevice

from liaison.bot.crosssigning import (
    CrossSigningSeeds,
    SigningKey,
    build_public_keys,
)
from liaison.bot.directory import Directory
from liaison.bot.event_transaction import EventTransactions
from liaison.bot.health import HealthLimits, LinkState, assess
from liaison.bot.invites import InvitePolicy, answer_invite
from liaison.bot.links import LinkEvents, identity_refusal, publish_directory
from liaison.bot.metrics import LinkFigures, link_metrics
from liaison.bot.rawapi import ApiResult
from liaison.bot.trust import TOFU, LinkNotReady, TrustPolicy, UserKeys
from liaison.commands.links import (
    DirectoryContent,
    DirectoryPost,
    Link,
    LinkEventType,
    RefusalReason,
)
from liaison.commands.model import Agency
from liaison.commands.notify import OutboxKind
from liaison.config import Config, parse_config
from liaison.handlers.context import Services
from liaison.storage import audit, outbox
from liaison.storage import links as link_store
from liaison.storage.db import Database

BOT = "@liaison:kz.example"
PARTNER = "@liaison:uz.example"
STRANGER = "@mallory:uz.example"
ROOM = "!link-uz:kz.example"
NOW = 1_796_000_000_000

PINNED = CrossSigningSeeds.generate()
"""The partner bot's cross-signing identity, whose master key the link pins."""
PINNED_KEY = SigningKey(PINNED.master).public


class PartnerDevice:
    """A device of a user: a vodozemac account; its keys/query object, signed by the
    self-signing key of `seeds` when given (unsigned otherwise)."""

    def __init__(self, device_id: str, seeds: CrossSigningSeeds | None,
                 user_id: str = PARTNER) -> None:
        self.user_id, self.device_id = user_id, device_id
        self.account = vodozemac.Account()
        self.curve25519 = self.account.curve25519_key.to_base64()
        self.ed25519 = self.account.ed25519_key.to_base64()
        device: dict[str, Any] = {
            "user_id": user_id, "device_id": device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{device_id}": self.curve25519,
                     f"ed25519:{device_id}": self.ed25519}}
        self.signed = device if seeds is None else SigningKey(seeds.self_signing).sign(
            device, user_id)

    @property
    def olm_device(self) -> OlmDevice:
        return OlmDevice(self.user_id, self.device_id,
                         {"ed25519": self.ed25519, "curve25519": self.curve25519})

    def claim(self) -> dict[str, Any]:
        self.account.generate_one_time_keys(1)
        ((key_id, key),) = self.account.one_time_keys.items()
        self.account.mark_keys_as_published()
        unsigned = {"key": key.to_base64()}
        signature = self.account.sign(canonicaljson.encode_canonical_json(unsigned))
        return {f"signed_curve25519:{key_id}": {**unsigned, "signatures": {
            self.user_id: {f"ed25519:{self.device_id}": signature.to_base64()}}}}


def published_keys(seeds: CrossSigningSeeds | None, *devices: PartnerDevice,
                   user_id: str = PARTNER) -> UserKeys:
    """What keys/query says of `user_id`: the identity of `seeds` (none when None) and
    the devices' signed objects."""
    public = build_public_keys(user_id, seeds) if seeds is not None else {}
    return UserKeys(fetched_at=time.monotonic(), master_key=public.get("master_key"),
                    self_signing_key=public.get("self_signing_key"),
                    devices={device.device_id: device.signed for device in devices})


def link(**changes: Any) -> Link:
    values: dict[str, Any] = {"name": "uz", "partner": PARTNER, "room": ROOM,
                              "partner_master_key": PINNED_KEY, "countries": ("UZ",)}
    values.update(changes)
    return Link.model_validate(values)


# --- identity: who may speak for the partner --------------------------------------------


def test_an_event_from_the_partners_device_signed_by_the_pinned_key_is_accepted() -> None:
    device = PartnerDevice("PARTNERDEV", PINNED)
    assert identity_refusal(link(), sender=PARTNER, encrypted=True, forwarded=False,
                            sender_key=device.curve25519,
                            keys=published_keys(PINNED, device)) is None


def test_a_device_signed_by_another_master_key_is_refused() -> None:
    """A homeserver admin resets the partner's cross-signing keys and signs a device of
    their own: the chain verifies, but not up to the pinned master key."""
    usurper = CrossSigningSeeds.generate()
    device = PartnerDevice("ADMINDEV", usurper)
    refusal = identity_refusal(link(), sender=PARTNER, encrypted=True, forwarded=False,
                               sender_key=device.curve25519,
                               keys=published_keys(usurper, device))
    assert refusal is not None and refusal.reason == RefusalReason.UNSIGNED_DEVICE
    assert SigningKey(usurper.master).public in refusal.detail
    assert "not the pinned one" in refusal.detail


def test_an_unsigned_device_of_the_partner_is_refused() -> None:
    signed, unsigned = PartnerDevice("PARTNERDEV", PINNED), PartnerDevice("NEWDEV", None)
    refusal = identity_refusal(link(), sender=PARTNER, encrypted=True, forwarded=False,
                               sender_key=unsigned.curve25519,
                               keys=published_keys(PINNED, signed, unsigned))
    assert refusal is not None and refusal.reason == RefusalReason.UNSIGNED_DEVICE
    assert "NEWDEV is not signed by the pinned identity" in refusal.detail


def test_a_device_signed_by_a_self_signing_key_the_master_never_signed_is_refused() -> None:
    forged = CrossSigningSeeds(PINNED.master, CrossSigningSeeds.generate().self_signing,
                               PINNED.user_signing)
    device = PartnerDevice("FORGEDDEV", forged)
    keys = published_keys(PINNED, device)
    keys.self_signing_key = build_public_keys(PARTNER, forged)["self_signing_key"]
    keys.self_signing_key["signatures"] = {PARTNER: {f"ed25519:{PINNED_KEY}": "AAAA"}}
    refusal = identity_refusal(link(), sender=PARTNER, encrypted=True, forwarded=False,
                               sender_key=device.curve25519, keys=keys)
    assert refusal is not None and refusal.reason == RefusalReason.UNSIGNED_DEVICE


def test_an_event_from_another_sender_is_refused_even_from_a_pinned_device() -> None:
    device = PartnerDevice("PARTNERDEV", PINNED)
    refusal = identity_refusal(link(), sender=STRANGER, encrypted=True, forwarded=False,
                               sender_key=device.curve25519,
                               keys=published_keys(PINNED, device))
    assert refusal is not None and refusal.reason == RefusalReason.NOT_PARTNER
    assert STRANGER in refusal.detail


def test_a_sender_key_of_no_signed_device_is_refused() -> None:
    """The Megolm session came from a device the signed list does not hold."""
    signed, elsewhere = PartnerDevice("PARTNERDEV", PINNED), PartnerDevice("GHOST", PINNED)
    refusal = identity_refusal(link(), sender=PARTNER, encrypted=True, forwarded=False,
                               sender_key=elsewhere.curve25519,
                               keys=published_keys(PINNED, signed))
    assert refusal is not None and refusal.reason == RefusalReason.UNSIGNED_DEVICE


@pytest.mark.parametrize(("encrypted", "forwarded"), [(False, False), (True, True)],
                         ids=["unencrypted", "forwarded room key"])
def test_an_unencrypted_event_or_one_under_a_forwarded_key_is_refused(
    encrypted: bool, forwarded: bool
) -> None:
    device = PartnerDevice("PARTNERDEV", PINNED)
    refusal = identity_refusal(link(), sender=PARTNER, encrypted=encrypted,
                               forwarded=forwarded, sender_key=device.curve25519,
                               keys=published_keys(PINNED, device))
    assert refusal is not None and refusal.reason == RefusalReason.UNSIGNED_DEVICE


def test_no_keys_no_trust() -> None:
    device = PartnerDevice("PARTNERDEV", PINNED)
    refusal = identity_refusal(link(), sender=PARTNER, encrypted=True, forwarded=False,
                               sender_key=device.curve25519, keys=None)
    assert refusal is not None and refusal.reason == RefusalReason.UNSIGNED_DEVICE


# --- nio and the partner's encrypted protocol events ---------------------------------------


def bot_client(store: Path) -> AsyncClient:
    """The bot's nio client with a real Olm account, logged in without a homeserver."""
    client = AsyncClient("https://kz.example", BOT, device_id="BOTDEVICE",
                         store_path=str(store),
                         config=AsyncClientConfig(encryption_enabled=True,
                                                  store_sync_tokens=False))
    client.restore_login(BOT, "BOTDEVICE", "token")
    return client


def megolm_event(client: AsyncClient, device: PartnerDevice, event_type: str,
                 content: dict[str, Any], *, sender: str = PARTNER,
                 event_id: str = "$offer") -> MegolmEvent:
    """An event the partner's device encrypted with a group session whose key the bot
    got from that device (as a room key over Olm: nio keeps it under the device's
    Curve25519 key), as it comes down the bot's sync."""
    group = vodozemac.GroupSession()
    assert client.olm is not None
    client.olm.create_group_session(device.curve25519, device.ed25519, ROOM,
                                    group.session_id, group.session_key.to_base64())
    plaintext = json.dumps({"type": event_type, "content": content, "room_id": ROOM})
    parsed = Event.parse_event({
        "type": "m.room.encrypted", "event_id": event_id, "sender": sender,
        "origin_server_ts": NOW, "room_id": ROOM,
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": device.curve25519,
                    "device_id": device.device_id, "session_id": group.session_id,
                    "ciphertext": group.encrypt(plaintext.encode()).to_base64()}})
    assert isinstance(parsed, MegolmEvent)
    return parsed


async def test_nio_hands_a_decrypted_protocol_event_over_as_an_unknown_event(
    tmp_path: Path,
) -> None:
    """What `bot.links` relies on: nio 0.26 decrypts a custom type into `UnknownEvent`
    with the inner type, the decrypted content, `decrypted` set and the sender key of
    the Olm session that brought the room key."""
    client = bot_client(tmp_path)
    device = PartnerDevice("PARTNERDEV", PINNED)
    try:
        encrypted = megolm_event(client, device, "org.liaison.link.directory",
                                 {"v": 1, "id": "directory:1"})
        assert client.olm is not None
        event = client.olm.decrypt_megolm_event(encrypted, ROOM)
        assert isinstance(event, UnknownEvent)
        assert event.type == "org.liaison.link.directory"
        assert event.source["content"] == {"v": 1, "id": "directory:1"}
        assert (event.decrypted, event.sender_key, event.sender, event.event_id) == (
            True, device.curve25519, PARTNER, "$offer")
    finally:
        await client.close()


async def test_nio_encrypts_a_custom_event_type_in_an_encrypted_room(tmp_path: Path) -> None:
    """The outbox sends protocol events with `room_send(room, "org.liaison.link.…", …)`:
    nio encrypts every type but `m.reaction` in an encrypted room, so the homeserver sees
    only `m.room.encrypted`."""
    client = bot_client(tmp_path)
    room = MatrixRoom(ROOM, BOT, encrypted=True)
    room.members_synced = True
    client.rooms[ROOM] = room
    sent: list[tuple[str, str]] = []

    async def capture(response_class: Any, method: str, path: str, data: Any = None,
                      *args: Any, **kwargs: Any) -> Any:
        sent.append((path, str(data)))
        return SimpleNamespace()

    client._send = capture  # type: ignore[method-assign]
    try:
        await client.room_send(ROOM, "org.liaison.link.offer", {"v": 1, "id": "offer:KZ-1:X",
                                                                "text": "secret plate"},
                               tx_id="txn1", ignore_unverified_devices=True)
        (path, body), = [item for item in sent if "/send/" in item[0]]
        assert "/send/m.room.encrypted/txn1" in path
        assert "ciphertext" in body and "secret plate" not in body and "offer:" not in body
    finally:
        await client.close()


# --- protocol events in the link room -------------------------------------------------------


def config_text(pinned: str = PINNED_KEY) -> str:
    return textwrap.dedent(f"""\
        homeserver:
          url: https://matrix.kz.example/
        bot:
          user_id: "{BOT}"
          password: {{env: TEST_LIAISON_PASSWORD}}
          pickle_key: {{env: TEST_LIAISON_PICKLE_KEY}}
        data_dir: data
        trust:
          policy: tofu
        posts:
          - id: KZ-ZHIBEK
            names: {{en: Zhibek Zholy, ru: Жибек Жолы}}
            country: KZ
            agency: border
            room: "!kz-zhibek:kz.example"
          - id: KZ-ALMATY
            names: {{en: Almaty}}
            country: KZ
            agency: police
            room: "!kz-almaty:kz.example"
        links:
          - name: uz
            partner: "{PARTNER}"
            room: "{ROOM}"
            partner_master_key: "{pinned}"
            countries: [UZ]
            expose: [KZ-ZHIBEK]
        """)


class FixedClock:
    def __init__(self, now_ms: int = NOW) -> None:
        self.ms = now_ms

    def now_ms(self) -> int:
        return self.ms


class LinkRooms:
    """`bot.event_transaction.Rooms` of a bot in the link room with its partner."""

    user_id = BOT

    def joined(self) -> frozenset[str]:
        return frozenset({ROOM})

    def encrypted(self) -> frozenset[str]:
        return frozenset({ROOM})

    def members(self, room_id: str) -> frozenset[str] | None:
        return frozenset({BOT, PARTNER})


class PublishedKeys:
    """`TrustPolicy.user_keys` answering from what the partner's homeserver publishes."""

    def __init__(self, keys: UserKeys) -> None:
        self.keys = keys
        self.asked: list[tuple[str, bool]] = []

    async def user_keys(self, user_id: str, *, fresh: bool = False) -> UserKeys:
        self.asked.append((user_id, fresh))
        return self.keys


class Harness:
    def __init__(self, db: Database, config: Config, client: Any, keys: PublishedKeys,
                 receive: Any = None) -> None:
        self.db, self.config, self.client, self.keys = db, config, client, keys
        self.directory = Directory(config)
        self.received: list[dict[str, Any]] = []
        self.transactions = EventTransactions(db=db, clock=FixedClock(),  # type: ignore[arg-type]
                                              rooms=LinkRooms(), directory=self.directory,
                                              wake_sender=lambda: None, charts=False)

        async def record(services: Services, link: Link, event_type: str,
                         content: dict[str, Any], *, sender: str, event_id: str) -> None:
            self.received.append({"link": link.name, "type": event_type, "content": content,
                                  "sender": sender, "event_id": event_id,
                                  "links": services.links})

        self.events = LinkEvents(client=client, transactions=self.transactions,
                                 directory=self.directory, trust=keys,  # type: ignore[arg-type]
                                 db=db, receive=receive or record, sleep=no_sleep)
        self.room = MatrixRoom(ROOM, BOT, encrypted=True)

    @property
    def link(self) -> Link:
        return self.config.links[0]

    async def deliver(self, event: Any) -> None:
        await self.directory.refresh(self.db)
        await self.events.on_event(self.link, self.room, event)

    async def refused(self) -> list[link_store.LinkLogEntry]:
        async with self.db.read() as conn:
            return [entry for entry in await link_store.exchange(conn, "uz")
                    if entry.direction == "refused"]

    async def audited(self, action: str) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return [entry.detail for entry in await audit.entries(conn)
                    if entry.action == action]


async def no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "liaison.db")
    try:
        yield database
    finally:
        await database.close()


def decrypted(event_type: str, content: dict[str, Any], *, sender: str = PARTNER,
              sender_key: str | None = None, event_id: str = "$event",
              encrypted: bool = True) -> UnknownEvent:
    """A protocol event as nio hands it over after decrypting it (see the test above)."""
    event = UnknownEvent.from_dict({"type": event_type, "content": content,
                                    "event_id": event_id, "sender": sender,
                                    "origin_server_ts": NOW, "room_id": ROOM})
    event.decrypted = encrypted
    event.sender_key = sender_key if encrypted else None
    event.session_id = "session" if encrypted else None
    return event


DIRECTORY = DirectoryContent(id="directory:1", version=1, posts=(DirectoryPost(
    id="UZ-TERMEZ", names={"en": "Termez", "ru": "Термез"}, country="UZ",
    agency=Agency.BORDER, language="ru", timezone="Asia/Tashkent"),))


async def test_a_verified_protocol_event_reaches_the_handler_once(tmp_path: Path,
                                                                  db: Database) -> None:
    device = PartnerDevice("PARTNERDEV", PINNED)
    client = bot_client(tmp_path)
    harness = Harness(db, parse_config(config_text()), client,
                      PublishedKeys(published_keys(PINNED, device)))
    try:
        event = client.olm.decrypt_megolm_event(  # type: ignore[union-attr]
            megolm_event(client, device, LinkEventType.RECEIPT, {"v": 1, "id": "r"}), ROOM)
        await harness.deliver(event)
        await harness.deliver(event)  # the same event again (a replayed sync)

        assert [(item["type"], item["content"], item["sender"], item["event_id"])
                for item in harness.received] == [
            ("org.liaison.link.receipt", {"v": 1, "id": "r"}, PARTNER, "$offer")]
        assert harness.received[0]["links"].link_for_room(ROOM) is not None
        assert await harness.refused() == []
    finally:
        await client.close()


async def forged(harness: Harness, event: Any, key: str | None = None) -> dict[str, Any]:
    """Deliver `event`; assert it was refused and nothing else happened; its audit entry."""
    await harness.deliver(event)
    assert harness.received == []
    (logged,) = await harness.refused()
    (audited,) = await harness.audited("link.refused")
    assert logged.event_id == event.event_id and audited["event_id"] == event.event_id
    assert logged.key == audited["key"] == (key or event.source["content"].get("id")
                                            or event.event_id)
    assert logged.detail["reason"] == audited["reason"]
    return audited


async def test_a_protocol_event_from_another_member_of_the_link_room_is_refused(
    db: Database,
) -> None:
    device = PartnerDevice("PARTNERDEV", PINNED)
    harness = Harness(db, parse_config(config_text()), SimpleNamespace(olm=None, user_id=BOT),
                      PublishedKeys(published_keys(PINNED, device)))
    audited = await forged(harness, decrypted(LinkEventType.OFFER, {"v": 1, "id": "x"},
                                              sender=STRANGER,
                                              sender_key=device.curve25519))
    assert audited["reason"] == "not_partner" and audited["link"] == "uz"


async def test_a_protocol_event_from_a_device_of_a_reset_identity_is_refused(
    db: Database,
) -> None:
    usurper = CrossSigningSeeds.generate()
    device = PartnerDevice("ADMINDEV", usurper)
    keys = PublishedKeys(published_keys(usurper, device))
    harness = Harness(db, parse_config(config_text()), SimpleNamespace(olm=None, user_id=BOT),
                      keys)
    audited = await forged(harness, decrypted(LinkEventType.DIRECTORY,
                                              DIRECTORY.model_dump(mode="json"),
                                              sender_key=device.curve25519))
    assert audited["reason"] == "unsigned_device"
    assert (PARTNER, True) in keys.asked  # asked the homeserver again before refusing
    assert "uz" in harness.events.identity_problems  # /healthz: the link is refused


async def test_an_unsigned_partner_device_is_refused(db: Database) -> None:
    signed, unsigned = PartnerDevice("PARTNERDEV", PINNED), PartnerDevice("NEWDEV", None)
    harness = Harness(db, parse_config(config_text()), SimpleNamespace(olm=None, user_id=BOT),
                      PublishedKeys(published_keys(PINNED, signed, unsigned)))
    audited = await forged(harness, decrypted(LinkEventType.OFFER, {"v": 1, "id": "x"},
                                              sender_key=unsigned.curve25519))
    assert audited["reason"] == "unsigned_device"
    assert harness.events.identity_problems == {}  # the identity itself is the pinned one


async def test_an_unencrypted_protocol_event_in_the_link_room_is_refused(db: Database) -> None:
    device = PartnerDevice("PARTNERDEV", PINNED)
    harness = Harness(db, parse_config(config_text()), SimpleNamespace(olm=None, user_id=BOT),
                      PublishedKeys(published_keys(PINNED, device)))
    audited = await forged(harness, decrypted(LinkEventType.OFFER, {"v": 1, "id": "x"},
                                              encrypted=False))
    assert audited["reason"] == "unsigned_device" and "unencrypted" in audited["detail"]


async def test_other_events_in_the_link_room_are_ignored(db: Database) -> None:
    harness = Harness(db, parse_config(config_text()), SimpleNamespace(olm=None, user_id=BOT),
                      PublishedKeys(published_keys(PINNED)))
    text = RoomMessageText.from_dict({
        "type": "m.room.message", "event_id": "$hello", "sender": STRANGER,
        "origin_server_ts": NOW, "content": {"msgtype": "m.text", "body": "hello bots"}})
    await harness.deliver(text)
    await harness.deliver(decrypted("com.example.other", {}, sender=STRANGER))
    assert harness.received == [] and await harness.refused() == []


async def test_a_partners_directory_takes_effect_at_once(tmp_path: Path, db: Database) -> None:
    """Through the real handler (`handlers.links.receive`): the partner's posts are in
    the link view from the next event on, without a restart."""
    from liaison.handlers.links import receive

    device = PartnerDevice("PARTNERDEV", PINNED)
    client = bot_client(tmp_path)
    harness = Harness(db, parse_config(config_text()), client,
                      PublishedKeys(published_keys(PINNED, device)), receive=receive)
    try:
        assert harness.directory.links.partner_posts() == {}
        event = client.olm.decrypt_megolm_event(  # type: ignore[union-attr]
            megolm_event(client, device, LinkEventType.DIRECTORY,
                         DIRECTORY.model_dump(mode="json")), ROOM)
        await harness.deliver(event)

        termez = harness.directory.links.partner_posts()["UZ-TERMEZ"]
        assert (termez.room, termez.names["ru"]) == (ROOM, "Термез")
        assert await harness.refused() == []
    finally:
        await client.close()


# --- who gets the link room's keys ---------------------------------------------------------


class KeyServer(AsyncClient):
    """The bot's nio client; keys/claim answered by the devices themselves."""

    def __init__(self, store: Path, devices: list[PartnerDevice]) -> None:
        super().__init__("https://kz.example", BOT, device_id="BOTDEVICE",
                         store_path=str(store),
                         config=AsyncClientConfig(encryption_enabled=True,
                                                  store_sync_tokens=False))
        self.restore_login(BOT, "BOTDEVICE", "token")
        self.devices = {(d.user_id, d.device_id): d for d in devices}
        room = MatrixRoom(ROOM, BOT, encrypted=True)
        room.add_member(BOT, None, None)
        for device in devices:
            if device.user_id not in room.users:
                room.add_member(device.user_id, None, None)
            self.device_store.add(device.olm_device)
        self.rooms[ROOM] = room

    async def keys_claim(self, user_set: Any) -> Any:
        response = KeysClaimResponse({user: {device: self.devices[(user, device)].claim()
                                             for device in devices}
                                      for user, devices in user_set.items()}, {})
        assert self.olm is not None
        self.olm.handle_response(response)
        return response


def recipients(client: KeyServer) -> set[str]:
    """The devices nio would send the link room's key to now."""
    assert client.olm is not None
    found: set[str] = set()
    room = client.rooms[ROOM]
    for _, to_device in client.olm.share_group_session_parallel(
            ROOM, list(room.users), ignore_unverified_devices=True):
        for devices in to_device["messages"].values():
            found.update(devices)
    return found


async def test_the_link_rooms_key_goes_only_to_the_partners_pinned_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    pinned = PartnerDevice("PARTNERDEV", PINNED)
    unsigned = PartnerDevice("NEWDEV", None)
    usurper = CrossSigningSeeds.generate()
    officer = PartnerDevice("OFFICERDEV", None, user_id="@aigerim:kz.example")
    client = KeyServer(tmp_path, [pinned, unsigned, officer])
    trust = TrustPolicy(client, TOFU, [link()])
    trust._cache[PARTNER] = published_keys(PINNED, pinned, unsigned)
    trust._cache["@aigerim:kz.example"] = published_keys(usurper, officer,
                                                         user_id="@aigerim:kz.example")
    try:
        trust.guard_link_rooms()
        await client.keys_claim({PARTNER: ["PARTNERDEV", "NEWDEV"],
                                 "@aigerim:kz.example": ["OFFICERDEV"]})
        assert trust.link_recipient(ROOM, PARTNER, "PARTNERDEV")
        assert not trust.link_recipient(ROOM, PARTNER, "NEWDEV")
        assert not trust.link_recipient(ROOM, "@aigerim:kz.example", "OFFICERDEV")

        assert recipients(client) == {"PARTNERDEV"}
        # the officer keeps getting keys in the post rooms: left out here, not blacklisted
        assert not client.device_store["@aigerim:kz.example"]["OFFICERDEV"].blacklisted
        assert client.device_store[PARTNER]["NEWDEV"].blacklisted

        told: list[dict[str, Any]] = []

        async def to_device(client_: Any, method: str, path: str,
                            body: dict[str, Any] | None = None) -> ApiResult:
            told.append(body or {})
            return ApiResult(200, {})

        monkeypatch.setattr("liaison.bot.trust.request_json", to_device)
        await trust.tell_withheld(ROOM)
        await trust.tell_withheld(ROOM)  # once per room key
        (withheld,) = told
        messages = withheld["messages"]
        assert {user: set(devices) for user, devices in messages.items()} == {
            PARTNER: {"NEWDEV"}, "@aigerim:kz.example": {"OFFICERDEV"}}
        assert messages[PARTNER]["NEWDEV"]["code"] == "m.unverified"
    finally:
        await client.close()


async def test_after_an_identity_reset_the_partner_gets_no_key_and_sending_waits(
    tmp_path: Path,
) -> None:
    device = PartnerDevice("ADMINDEV", CrossSigningSeeds.generate())
    client = KeyServer(tmp_path, [device])
    trust = TrustPolicy(client, TOFU, [link()])
    usurped = published_keys(CrossSigningSeeds.generate(), device)

    async def keys(users: list[str], need: dict[str, set[str]]) -> None:
        for user in users:
            trust._cache[user] = usurped

    trust._keys = keys  # type: ignore[method-assign]
    queried: list[set[str]] = []

    async def keys_query() -> None:
        assert client.olm is not None
        queried.append(set(client.olm.users_for_key_query))

    client.keys_query = keys_query  # type: ignore[method-assign]
    try:
        with pytest.raises(LinkNotReady):
            await trust.prepare_room(ROOM)
        assert queried == [{PARTNER}]  # nio was asked for the partner's devices first
        assert client.device_store[PARTNER]["ADMINDEV"].blacklisted
        await client.keys_claim({PARTNER: ["ADMINDEV"]})
        assert recipients(client) == set()
    finally:
        await client.close()


# --- the directory this bot publishes -------------------------------------------------------


async def test_the_directory_is_published_once_per_change_through_the_outbox(
    db: Database,
) -> None:
    config = parse_config(config_text())
    (uz,) = config.links

    assert await publish_directory(db, config, uz, now_ms=NOW) == 1
    assert await publish_directory(db, config, uz, now_ms=NOW) is None  # unchanged
    assert await publish_directory(db, config, uz, now_ms=NOW, force=True) == 2

    wider = parse_config(config_text().replace("expose: [KZ-ZHIBEK]",
                                               "expose: [KZ-ZHIBEK, KZ-ALMATY]"))
    assert await publish_directory(db, wider, wider.links[0], now_ms=NOW) == 3

    async with db.read() as conn:
        queued = await outbox.pending(conn)
        sent = [entry for entry in await link_store.exchange(conn, "uz")
                if entry.direction == "sent"]
    assert [(m.room_id, m.event_type, m.kind) for m in queued] == [
        (ROOM, "org.liaison.link.directory", OutboxKind.LINK_PROTOCOL)] * 3
    contents = [DirectoryContent.model_validate(m.content) for m in queued]
    assert [(c.id, [p.id for p in c.posts]) for c in contents] == [
        ("directory:1", ["KZ-ZHIBEK"]), ("directory:2", ["KZ-ZHIBEK"]),
        ("directory:3", ["KZ-ZHIBEK", "KZ-ALMATY"])]
    assert "room" not in json.dumps(queued[0].content)  # never a room id
    assert [entry.key for entry in sent] == ["directory:1", "directory:2", "directory:3"]


async def test_the_bots_join_and_the_partners_join_publish_the_directory(
    db: Database,
) -> None:
    config = parse_config(config_text())
    harness = Harness(db, config, SimpleNamespace(olm=None, user_id=BOT),
                      PublishedKeys(published_keys(PINNED)))

    def member(user: str, membership: str, prev: str | None) -> RoomMemberEvent:
        event = RoomMemberEvent.from_dict({
            "type": "m.room.member", "event_id": f"${user}{membership}", "sender": user,
            "state_key": user, "origin_server_ts": NOW,
            "content": {"membership": membership},
            "unsigned": {"prev_content": {"membership": prev}} if prev else {}})
        assert isinstance(event, RoomMemberEvent)
        return event

    await harness.events.on_member(harness.link, member(BOT, "join", "invite"))
    await harness.events.on_member(harness.link, member(STRANGER, "join", None))
    await harness.events.on_member(harness.link, member(PARTNER, "join", "invite"))
    await harness.events.on_member(harness.link, member(BOT, "join", "join"))  # a rename
    async with db.read() as conn:
        published = await link_store.published(conn, "uz")
        queued = await outbox.pending(conn)
    assert published is not None and published[0] == 2
    assert [m.content["id"] for m in queued] == ["directory:1", "directory:2"]


# --- invites, metrics, health ----------------------------------------------------------------


async def test_an_invite_to_a_link_room_is_accepted_from_anyone() -> None:
    joined: list[str] = []

    class Client:
        user_id = BOT

        async def join(self, room_id: str) -> Any:
            joined.append(room_id)
            return SimpleNamespace()

        async def room_leave(self, room_id: str) -> Any:
            return SimpleNamespace()

    invite = InviteInfo(invite_state=[InviteMemberEvent.from_dict({
        "type": "m.room.member", "sender": PARTNER, "state_key": BOT,
        "content": {"membership": "invite"}})])
    policy = InvitePolicy(frozenset(), frozenset(), rooms=frozenset({ROOM}))
    assert await answer_invite(Client(), policy, ROOM, invite)  # type: ignore[arg-type]
    assert not await answer_invite(Client(), policy, "!other:uz.example",  # type: ignore[arg-type]
                                   invite)
    assert joined == [ROOM]


def test_metrics_per_link() -> None:
    figures = LinkFigures(events={("uz", "sent", "org.liaison.link.offer"): 3},
                          refused={("uz", "not_partner"): 1},
                          queues={"uz": (2, 90_000)})
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in link_metrics(figures) for s in family.samples}
    assert samples[("liaison_link_events_total", (("direction", "sent"), ("link", "uz"),
                                                  ("type", "org.liaison.link.offer")))] == 3
    assert samples[("liaison_link_refused_total", (("link", "uz"),
                                                   ("reason", "not_partner")))] == 1
    assert samples[("liaison_link_queue", (("link", "uz"),))] == 2
    assert samples[("liaison_link_lag_seconds", (("link", "uz"),))] == 90


@pytest.mark.parametrize(("state", "healthy"), [
    (LinkState("uz", 0, None), True),
    (LinkState("uz", 2, 30_000), True),
    (LinkState("uz", 2, 600_000), False),
    (LinkState("uz", 0, None, identity_problem="publishes another master key"), False),
], ids=["empty", "draining", "stuck", "identity"])
def test_healthz_fails_while_a_links_queue_is_stuck_or_its_identity_is_refused(
    state: LinkState, healthy: bool
) -> None:
    health = assess(now_s=10_000, started_s=0, last_sync_s=9_999, outbox=None,
                    limits=HealthLimits(sync_stalled_after_s=60, outbox_stuck_after_s=300),
                    links=(state,))
    check = health.checks["link:uz"]
    assert check["ok"] is healthy
    if not healthy:
        assert "reason" in check and not health.ok


# --- the router -------------------------------------------------------------------------------


async def test_the_router_hands_every_event_of_a_link_room_to_the_links(db: Database) -> None:
    """Protocol events go to `bot.links` even from before the bot's join (a directory sent
    while it was only invited must not be lost); undecryptable ones wait for their key."""
    from liaison.bot.events import EventRouter
    from liaison.handlers import default_registry

    config = parse_config(config_text())
    harness = Harness(db, config, SimpleNamespace(olm=None, user_id=BOT, device_id="BOTDEV"),
                      PublishedKeys(published_keys(PINNED)))
    seen: list[tuple[str, Any]] = []

    class Links:
        def link_for_room(self, room_id: str) -> Link | None:
            return harness.events.link_for_room(room_id)

        async def on_event(self, link: Link, room: MatrixRoom, event: Any) -> None:
            seen.append(("links", event.event_id))

        async def on_member(self, link: Link, event: RoomMemberEvent) -> None:
            seen.append(("member", event.state_key))

    class Undecryptable:
        async def track(self, room: MatrixRoom, event: MegolmEvent) -> None:
            seen.append(("undecryptable", event.event_id))

    router = EventRouter(client=harness.client, transactions=harness.transactions,
                         registry=default_registry(), directory=harness.directory,
                         invite_policy=InvitePolicy(frozenset(), frozenset()),
                         trust=SimpleNamespace(),  # type: ignore[arg-type]
                         undecryptable=Undecryptable(),  # type: ignore[arg-type]
                         links=Links())  # type: ignore[arg-type]
    await harness.transactions.record_joined(ROOM, NOW + 60_000)  # joined after the event
    encrypted = Event.parse_event({
        "type": "m.room.encrypted", "event_id": "$locked", "sender": PARTNER,
        "origin_server_ts": NOW, "room_id": ROOM,
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "k", "device_id": "D",
                    "session_id": "s", "ciphertext": "c"}})

    await router.handle_event(harness.room, decrypted(LinkEventType.DIRECTORY, {},
                                                      event_id="$early"))
    await router.handle_event(harness.room, encrypted)
    await router.handle_event(harness.room, decrypted(LinkEventType.OFFER, {}, sender=BOT,
                                                      event_id="$mine"))
    other = MatrixRoom("!kz-zhibek:kz.example", BOT, encrypted=True)
    await router.handle_event(other, decrypted(LinkEventType.OFFER, {}, event_id="$elsewhere"))
    assert seen == [("links", "$early"), ("undecryptable", "$locked")]


async def test_a_protocol_event_that_is_not_valid_unicode_is_refused_not_stored(
    db: Database,
) -> None:
    device = PartnerDevice("PARTNERDEV", PINNED)
    harness = Harness(db, parse_config(config_text()), SimpleNamespace(olm=None, user_id=BOT),
                      PublishedKeys(published_keys(PINNED, device)))
    audited = await forged(harness, decrypted("org.liaison.link.offer\ud800",
                                              {"v": 1, "id": "offer:\ud800"},
                                              sender_key=device.curve25519,
                                              event_id="$surrogate"), key="$surrogate")
    assert audited["reason"] == "schema"


# --- the outbox and protocol events ------------------------------------------------------------


class SendingClient:
    """`room_send` recorded; the link room encrypted or not."""

    def __init__(self, encrypted: bool) -> None:
        self.rooms = {ROOM: SimpleNamespace(encrypted=encrypted)}
        self.sent: list[tuple[str, str]] = []

    async def room_send(self, room_id: str, event_type: str, content: dict[str, Any], *,
                        tx_id: str, ignore_unverified_devices: bool) -> Any:
        from nio import RoomSendResponse

        self.sent.append((room_id, event_type))
        return RoomSendResponse("$sent", room_id)


@pytest.mark.parametrize(("encrypted", "ready", "state"), [
    (True, True, "sent"), (False, True, "failed"), (True, False, "pending")],
    ids=["encrypted room", "unencrypted room: never in the clear", "partner not ready: held"])
async def test_a_protocol_event_leaves_only_encrypted_and_only_once_the_partner_is_ready(
    db: Database, encrypted: bool, ready: bool, state: str,
) -> None:
    from liaison.bot.sender import OutboxSender, SenderSettings

    config = parse_config(config_text())
    assert await publish_directory(db, config, config.links[0], now_ms=NOW) == 1
    client = SendingClient(encrypted)

    async def before_send(room_id: str) -> None:
        if not ready:
            raise LinkNotReady("no device of the partner is signed by the pinned key")

    sender = OutboxSender(db, client, FixedClock(NOW), SenderSettings(),  # type: ignore[arg-type]
                          before_send=before_send)
    async with db.read() as conn:
        (message,) = await outbox.pending(conn)
    await sender._send(message)

    async with db.read() as conn:
        after = await outbox.get(conn, message.id)
    assert after is not None and after.state == state
    assert client.sent == ([(ROOM, "org.liaison.link.directory")] if state == "sent" else [])


async def test_a_partner_device_that_loses_the_pinned_signature_gets_no_further_key(
    tmp_path: Path,
) -> None:
    """The partner's identity is replaced after its device had the room key: the next
    share starts a new room key that device never gets."""
    device = PartnerDevice("PARTNERDEV", PINNED)
    client = KeyServer(tmp_path, [device])
    trust = TrustPolicy(client, TOFU, [link()])
    trust._cache[PARTNER] = published_keys(PINNED, device)
    try:
        trust.guard_link_rooms()
        await client.keys_claim({PARTNER: ["PARTNERDEV"]})
        assert recipients(client) == {"PARTNERDEV"}
        assert client.olm is not None
        first = client.olm.outbound_group_sessions[ROOM]
        first.users_shared_with.add((PARTNER, "PARTNERDEV"))  # as nio notes a sent key
        first.shared = False  # a late device is to get it (`bot.key_claims`)

        trust._cache[PARTNER] = published_keys(CrossSigningSeeds.generate(), device)
        assert recipients(client) == set()
        assert client.olm.outbound_group_sessions[ROOM].id != first.id
    finally:
        await client.close()


async def test_the_periodic_identity_check_refuses_and_clears_a_link(db: Database) -> None:
    keys = PublishedKeys(published_keys(CrossSigningSeeds.generate()))
    harness = Harness(db, parse_config(config_text()), SimpleNamespace(olm=None, user_id=BOT),
                      keys)
    await harness.events.check_identities()
    assert "not the pinned" in harness.events.identity_problems["uz"]

    keys.keys = published_keys(PINNED)  # the partner's operator restored its identity
    await harness.events.check_identities()
    assert harness.events.identity_problems == {}


async def test_nothing_is_sent_into_the_link_room_while_the_partner_is_only_invited(
    tmp_path: Path,
) -> None:
    """An event sent while the partner is invited never reaches its server's sync (only
    backfill): the queue waits for its join."""
    device = PartnerDevice("PARTNERDEV", PINNED)
    client = KeyServer(tmp_path, [device])
    room = client.rooms[ROOM]
    room.invited_users[PARTNER] = room.users[PARTNER]
    trust = TrustPolicy(client, TOFU, [link()])

    async def keys(users: list[str], need: dict[str, set[str]]) -> None:
        trust._cache[PARTNER] = published_keys(PINNED, device)

    async def keys_query() -> None:
        return None

    trust._keys = keys  # type: ignore[method-assign]
    client.keys_query = keys_query  # type: ignore[method-assign]
    try:
        with pytest.raises(LinkNotReady, match="has not joined"):
            await trust.prepare_room(ROOM)
        del room.invited_users[PARTNER]  # it joined
        await trust.prepare_room(ROOM)
    finally:
        await client.close()


# --- late keys and notices in a link room -------------------------------------------------------


async def test_a_protocol_event_whose_key_comes_late_waits_untold_and_is_handled_once(
    tmp_path: Path, db: Database,
) -> None:
    """Over federation the room key may come long after the event (an outage): in a link
    room nobody is told "could not decrypt"; the event waits for its key and is handled."""
    from liaison.bot.undecryptable import KEEP_UNTOLD_MS, UndecryptableTracker
    from liaison.storage import inbox

    client = bot_client(tmp_path)
    client.rooms[ROOM] = MatrixRoom(ROOM, BOT, encrypted=True)
    device = PartnerDevice("PARTNERDEV", PINNED)
    group = vodozemac.GroupSession()
    room_key = group.session_key.to_base64()  # as it was at the first message
    plaintext = json.dumps({"type": "org.liaison.link.case", "content": {"v": 1, "id": "c"},
                            "room_id": ROOM})
    source = {"type": "m.room.encrypted", "event_id": "$late", "sender": PARTNER,
              "origin_server_ts": NOW, "room_id": ROOM,
              "content": {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": device.curve25519,
                          "device_id": device.device_id, "session_id": group.session_id,
                          "ciphertext": group.encrypt(plaintext.encode()).to_base64()}}
    clock = FixedClock()
    handled: list[Any] = []

    async def handle(room: MatrixRoom, event: Any) -> None:
        handled.append(event)

    tracker = UndecryptableTracker(client, db, clock,  # type: ignore[arg-type]
                                   grace_ms=3_000, wake_sender=lambda: None,
                                   untold_rooms=frozenset({ROOM}))
    try:
        async with db.transaction() as conn:
            await inbox.save_undecryptable(conn, event_id="$late", room_id=ROOM,
                                           sender=PARTNER, session_id=group.session_id,
                                           source=source, received_ms=clock.ms)
        clock.ms += 60_000  # long past the grace period
        await tracker.retry(handle)
        async with db.read() as conn:
            assert await outbox.pending(conn) == []  # nobody told
            assert [i.event_id for i in await inbox.list_undecryptable(conn)] == ["$late"]

        assert client.olm is not None
        client.olm.create_group_session(device.curve25519, device.ed25519, ROOM,
                                        group.session_id, room_key)
        await tracker.retry(handle)
        await tracker.retry(handle)
        assert [(type(e).__name__, e.type) for e in handled] == [
            ("UnknownEvent", "org.liaison.link.case")]

        async with db.transaction() as conn:  # one whose key never comes is let go, late
            await inbox.save_undecryptable(conn, event_id="$never", room_id=ROOM,
                                           sender=PARTNER, session_id="nope",
                                           source={**source, "event_id": "$never"},
                                           received_ms=clock.ms)
        clock.ms += KEEP_UNTOLD_MS
        await tracker.retry(handle)
        async with db.read() as conn:
            assert await inbox.list_undecryptable(conn) == []
            assert await outbox.pending(conn) == []
    finally:
        await client.close()


async def test_no_device_notice_goes_to_the_link_room(db: Database) -> None:
    from liaison.bot.devicewatch import DeviceWatch

    post_room = "!kz-zhibek:kz.example"
    devices = {PARTNER: ["PARTNERDEV"]}
    rooms = {ROOM: SimpleNamespace(encrypted=True, users={BOT: None, PARTNER: None}),
             post_room: SimpleNamespace(encrypted=True, users={BOT: None, PARTNER: None})}
    store = SimpleNamespace(active_user_devices=lambda user: [
        SimpleNamespace(id=d, display_name="") for d in devices.get(user, [])])
    client = SimpleNamespace(rooms=rooms, user_id=BOT, device_store=store)
    watch = DeviceWatch(client, db, FixedClock(), lambda: None,  # type: ignore[arg-type]
                        enabled=True, quiet_rooms=frozenset({ROOM}))
    await watch.check()
    devices[PARTNER].append("NEWDEV")
    await watch.check()
    async with db.read() as conn:
        assert [m.room_id for m in await outbox.pending(conn)] == [post_room]


async def test_keys_fetched_again_never_leave_the_partner_out_of_a_key_shared_meanwhile(
    tmp_path: Path,
) -> None:
    # The identity check at start fetches the partner's keys afresh while the outbox
    # sends: the room key shared during that fetch must still reach the pinned device.
    pinned = PartnerDevice("PARTNERDEV", PINNED)
    client = KeyServer(tmp_path, [pinned])
    trust = TrustPolicy(client, TOFU, [link()])
    trust._cache[PARTNER] = published_keys(PINNED, pinned)
    try:
        trust.guard_link_rooms()
        await client.keys_claim({PARTNER: ["PARTNERDEV"]})
        trust.invalidate({PARTNER})  # a membership change; a fresh fetch is under way
        assert trust.link_recipient(ROOM, PARTNER, "PARTNERDEV")
        assert recipients(client) == {"PARTNERDEV"}
        assert not client.device_store[PARTNER]["PARTNERDEV"].blacklisted

        del trust._cache[PARTNER]  # never fetched (a fresh start): held, nobody left out
        with pytest.raises(LinkNotReady):
            recipients(client)
        assert not client.device_store[PARTNER]["PARTNERDEV"].blacklisted
    finally:
        await client.close()
