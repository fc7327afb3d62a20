"""The Matrix side of links between bots (`docs/links.md`): who may speak for a partner,
the protocol events in a link room, and the directory this bot publishes there.

matrix-nio 0.26 hands a decrypted event of a type it does not know (every
`org.liaison.link.*` type) to the router as `nio.UnknownEvent`: `type` is the inner type,
`source` the decrypted event (`content`, `event_id`, `sender`, `origin_server_ts`),
`decrypted` is True and `sender_key` is the Curve25519 key of the Olm session that
brought the Megolm session (its `session_id` too). The same type sent in the clear is an
`UnknownEvent` with `decrypted` False: refused. An event nio could not decrypt stays a
`MegolmEvent` and waits for its key like any other (`bot.undecryptable`).

A protocol event is handed to `handlers.links.receive` only when its sender is the
link's partner and the device behind its sender key is signed, through the partner's
self-signing key, by the pinned master key; anything else is refused here: audited
(`link.refused`), logged in `link_log` as refused, and nothing else happens.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import ClientError
from nio import AsyncClient, MatrixRoom, RoomMemberEvent

from liaison.bot.crosssigning import (
    cross_signing_public_key,
    device_signed_by_pinned,
    device_with_curve25519,
)
from liaison.bot.directory import Directory
from liaison.bot.event_transaction import EventTransactions, valid_unicode
from liaison.bot.trust import TrustPolicy, UserKeys
from liaison.commands.links import (
    EVENT_PREFIX,
    Link,
    LinkEventType,
    LinkRefusal,
    RefusalReason,
    directory_to_publish,
    oversized,
)
from liaison.commands.notify import OutboxKind
from liaison.config import Config
from liaison.handlers.context import Services
from liaison.handlers.links import receive
from liaison.storage import audit, outbox
from liaison.storage import links as link_store
from liaison.storage.db import Database

log = logging.getLogger(__name__)

REFUSED = "link.refused"
SENT = "link.sent"
KEYS_ATTEMPTS = 3
"""Tries at fetching the partner's keys before an event is refused as unverifiable."""
KEYS_RETRY_S = 1.0

Receive = Callable[..., Awaitable[None]]
"""`handlers.links.receive(services, link, event_type, content, *, sender, event_id)`."""


# --- identity ---------------------------------------------------------------------------


def identity_refusal(link: Link, *, sender: str, encrypted: bool, forwarded: bool,
                     sender_key: str | None, keys: UserKeys | None) -> LinkRefusal | None:
    """Why an event in the link room may not speak for the partner (None: it may). It
    must be Megolm-encrypted under a session that came straight from the sending device
    (not forwarded by another), sent by `link.partner`, from a device of the partner
    whose Curve25519 key is `sender_key` and whose chain device ← self-signing key ←
    master key verifies with the master key pinned in `link.partner_master_key`."""
    if sender != link.partner:
        return LinkRefusal(RefusalReason.NOT_PARTNER,
                           f"sent by {sender}, not by the partner {link.partner}")
    if not encrypted:
        return LinkRefusal(RefusalReason.UNSIGNED_DEVICE,
                           "sent unencrypted: no device of the partner vouches for it")
    if forwarded or not sender_key:
        return LinkRefusal(RefusalReason.UNSIGNED_DEVICE,
                           "its room key was forwarded, not shared by the sending device")
    if keys is None:
        return LinkRefusal(RefusalReason.UNSIGNED_DEVICE,
                           "the partner's keys could not be fetched to verify the device")
    published = cross_signing_public_key(keys.master_key)
    if published != link.partner_master_key:
        return LinkRefusal(RefusalReason.UNSIGNED_DEVICE,
                           f"the partner's published master key {published or 'none'} is "
                           "not the pinned one")
    device = device_with_curve25519(keys.devices, sender_key)
    if device is None:
        return LinkRefusal(RefusalReason.UNSIGNED_DEVICE,
                           "no device of the partner has the key that encrypted it")
    if not device_signed_by_pinned(sender, device, keys.master_key, keys.self_signing_key,
                                   link.partner_master_key):
        return LinkRefusal(RefusalReason.UNSIGNED_DEVICE,
                           f"device {device.get('device_id')} is not signed by the pinned "
                           "identity")
    return None


def protocol_event(event: Any) -> tuple[str, dict[str, Any]] | None:
    """(type, content) of a protocol event (`org.liaison.link.*`), None for anything else."""
    source = getattr(event, "source", None)
    if not isinstance(source, dict):
        return None
    event_type = source.get("type")
    content = source.get("content")
    if not isinstance(event_type, str) or not event_type.startswith(EVENT_PREFIX):
        return None
    return event_type, content if isinstance(content, dict) else {}


# --- events in a link room ----------------------------------------------------------------


class LinkEvents:
    """Routes the protocol events of the link rooms: verified ones to
    `handlers.links.receive` inside their claimed transaction, the rest refused."""

    def __init__(self, *, client: AsyncClient, transactions: EventTransactions,
                 directory: Directory, trust: TrustPolicy, db: Database,
                 wake_sender: Callable[[], None] = lambda: None,
                 receive: Receive = receive, sleep: Callable[[float], Awaitable[None]]
                 = asyncio.sleep) -> None:
        self._client = client
        self._wake_sender = wake_sender
        self._transactions = transactions
        self._directory = directory
        self._trust = trust
        self._db = db
        self._receive = receive
        self._sleep = sleep
        self.identity_problems: dict[str, str] = {}
        """Link name → why the partner's published identity is refused (`/healthz`): set
        when the partner's master key is found not to be the pinned one, cleared when an
        event of the partner verifies."""

    def link_for_room(self, room_id: str) -> Link | None:
        return self._directory.links.link_for_room(room_id)

    async def on_member(self, link: Link, event: RoomMemberEvent) -> None:
        """The bot joined the link room (its directory goes out if it changed), or the
        partner did (it goes out again, version + 1: the partner may have missed it)."""
        if event.membership != "join" or event.prev_membership == "join":
            return
        if event.state_key == self._client.user_id:
            force = False
        elif event.state_key == link.partner:
            force = True
        else:
            return
        if await publish_directory(self._db, self._directory.config, link, force=force,
                                   now_ms=self._transactions.clock.now_ms()):
            self._wake_sender()

    async def on_event(self, link: Link, room: MatrixRoom, event: Any) -> None:
        """One event of the link room (not the bot's own, not undecryptable): a protocol
        event is verified and applied once or refused; anything else is ignored."""
        found = protocol_event(event)
        event_id = getattr(event, "event_id", None)
        if found is None or not isinstance(event_id, str):
            log.debug("not a protocol event in a link room; ignored",
                      extra={"link": link.name, "type": type(event).__name__})
            return
        event_type, content = found
        sender = str(getattr(event, "sender", ""))
        refusal = await self._verify(link, room, event, sender)
        if not valid_unicode([event_type, content]):
            # A lone surrogate is no text: SQLite would refuse it in the log and the audit.
            event_type = event_type.encode("utf-8", "replace").decode("utf-8")
            content = {}
            refusal = refusal or LinkRefusal(RefusalReason.SCHEMA,
                                             "the event is not valid Unicode")
        if refusal is not None:
            await self._refuse(link, event_type, content, sender=sender, event_id=event_id,
                               refusal=refusal)
            return

        async def work(services: Services) -> None:
            await self._receive(services, link, event_type, content, sender=sender,
                                event_id=event_id)

        self.identity_problems.pop(link.name, None)
        try:
            applied = await self._transactions.run(room.room_id, event_id, work)
        except Exception:  # as for case events: logged, the sync goes on (no poison event)
            log.exception("protocol event failed", extra={
                "incident": secrets.token_hex(4), "link": link.name, "event_id": event_id,
                "type": event_type})
            return
        if applied and event_type == LinkEventType.DIRECTORY:
            await self._directory.refresh(self._db)  # routing sees it from the next event

    async def _verify(self, link: Link, room: MatrixRoom, event: Any,
                      sender: str) -> LinkRefusal | None:
        encrypted = bool(getattr(event, "decrypted", False))
        sender_key = getattr(event, "sender_key", None)
        forwarded = self._forwarded(room.room_id, sender_key, getattr(event, "session_id", None))

        def judge(keys: UserKeys | None) -> LinkRefusal | None:
            return identity_refusal(link, sender=sender, encrypted=encrypted,
                                    forwarded=forwarded, sender_key=sender_key, keys=keys)

        if sender != link.partner or not encrypted or forwarded or not sender_key:
            return judge(None)  # decided without the partner's keys
        refusal = judge(await self._partner_keys(link, fresh=False))
        if refusal is not None:  # a device or a signature newer than the cache: ask again
            keys = await self._partner_keys(link, fresh=True)
            refusal = judge(keys)
            self._note_identity(link, keys)
        if refusal is not None:
            log.warning("protocol event from a device not signed by the pinned identity",
                        extra={"link": link.name, "sender": sender, "detail": refusal.detail})
        return refusal

    def _note_identity(self, link: Link, keys: UserKeys | None) -> str | None:
        """Record (and log, once) whether the partner's published master key is the
        pinned one; the problem, or None."""
        if keys is None:
            return self.identity_problems.get(link.name)
        published = cross_signing_public_key(keys.master_key)
        if published == link.partner_master_key:
            self.identity_problems.pop(link.name, None)
            return None
        problem = (f"{link.partner} publishes master key {published or '(none)'}, not the "
                   f"pinned {link.partner_master_key}: nothing is sent to or accepted from it")
        if self.identity_problems.get(link.name) != problem:
            log.error("link refused: the partner's identity is not the pinned one",
                      extra={"link": link.name, "partner": link.partner,
                             "published": published, "pinned": link.partner_master_key})
        self.identity_problems[link.name] = problem
        return problem

    async def check_identities(self) -> None:
        """At start: each partner's published master key against the pinned one."""
        for link in self._directory.links.links:
            self._note_identity(link, await self._partner_keys(link, fresh=True))

    def _forwarded(self, room_id: str, sender_key: Any, session_id: Any) -> bool:
        """Whether the Megolm session was forwarded (a key from a third device)."""
        olm = self._client.olm
        if olm is None or not isinstance(sender_key, str) or not isinstance(session_id, str):
            return False
        session = olm.inbound_group_store.get(room_id, sender_key, session_id)
        return session is not None and bool(session.forwarding_chain)

    async def _partner_keys(self, link: Link, *, fresh: bool) -> UserKeys | None:
        for attempt in range(1, KEYS_ATTEMPTS + 1):
            try:
                return await self._trust.user_keys(link.partner, fresh=fresh or attempt > 1)
            except (ClientError, TimeoutError, OSError, ConnectionError) as exc:
                log.warning("could not fetch the partner's keys",
                            extra={"link": link.name, "attempt": attempt, "error": str(exc)})
                if attempt < KEYS_ATTEMPTS:
                    await self._sleep(KEYS_RETRY_S * attempt)
        return None

    async def _refuse(self, link: Link, event_type: str, content: Mapping[str, Any], *,
                      sender: str, event_id: str, refusal: LinkRefusal) -> None:
        claimed = content.get("id")
        # Logged under the key it claims, as every refusal is (the event id if none):
        # `liaison link export` and the partner's operator find it by its reference.
        key = claimed if isinstance(claimed, str) and claimed else event_id

        async def work(services: Services) -> None:
            await link_store.log_event(
                services.conn, link=link.name, direction="refused", event_type=event_type,
                key=key, event_id=event_id, case_ref=None, ms=services.clock.now_ms(),
                detail={"reason": refusal.reason.value, "detail": refusal.detail,
                        "sender": sender})
            await services.record(REFUSED, actor=sender, room_id=link.room, detail={
                "link": link.name, "type": event_type, "key": key, "event_id": event_id,
                "reason": refusal.reason.value, "detail": refusal.detail})

        if await self._transactions.run(link.room, event_id, work):
            log.warning("protocol event refused", extra={
                "link": link.name, "sender": sender, "event_id": event_id,
                "reason": refusal.reason.value, "detail": refusal.detail})


# --- the directory this bot publishes -------------------------------------------------------


async def publish_directory(db: Database, config: Config, link: Link, *, now_ms: int,
                            force: bool = False) -> int | None:
    """Queue this bot's directory for `link` when what it exposes differs from what it
    last published (or `force`: the partner just joined and may have missed it), as
    version + 1 through the outbox; the version queued, or None when nothing was."""
    async with db.transaction() as conn:
        last = await link_store.published(conn, link.name)
        if force and last is not None:
            last = (last[0], "")  # whatever it exposes, the partner gets it again
        found = directory_to_publish(link, config.posts, config.groups, last)
        if found is None:
            return None
        content, digest = found
        too_large = oversized(content)
        if too_large is not None:
            log.error("directory too large to publish; expose fewer posts to this link",
                      extra={"link": link.name, "detail": too_large.detail})
            return None
        version, posts = content.version, content.posts
        event_type = str(LinkEventType.DIRECTORY)
        await outbox.enqueue(conn, room_id=link.room, event_type=event_type,
                             content=content.model_dump(mode="json"), now_ms=now_ms,
                             kind=OutboxKind.LINK_PROTOCOL)
        await link_store.set_published(conn, link.name, version, digest, now_ms)
        await link_store.log_event(conn, link=link.name, direction="sent",
                                   event_type=event_type, key=content.id, event_id=None,
                                   case_ref=None, ms=now_ms,
                                   detail={"version": version, "posts": len(posts)})
        await audit.append(conn, ts_ms=now_ms, actor=audit.LIAISON, action=SENT,
                           room_id=link.room, detail={"link": link.name, "type": event_type,
                                                      "key": content.id, "version": version,
                                                      "posts": len(posts)})
    log.info("directory queued for the partner",
             extra={"link": link.name, "version": version, "posts": len(posts)})
    return version


async def publish_directories(db: Database, config: Config, joined: frozenset[str], *,
                              now_ms: int) -> list[str]:
    """At start, once synced: each link whose room the bot is in gets the directory
    again if it changed; the names of the links it was queued for."""
    queued = []
    for link in config.links:
        if link.room in joined and await publish_directory(db, config, link, now_ms=now_ms):
            queued.append(link.name)
    return queued
