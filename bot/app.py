"""Wiring: one object owns each resource, and `Liaison.run()` runs them together."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import ClientError
from nio import AsyncClient, ProfileGetDisplayNameResponse, ProfileSetDisplayNameError

from liaison.bot import fallback_keys
from liaison.bot.backup import RESTORED_MARK, ScheduledBackups
from liaison.bot.chaser import Chaser
from liaison.bot.clock import Clock
from liaison.bot.command_state import CommandDescriptions
from liaison.bot.crosssigning import ensure_cross_signed
from liaison.bot.devicewatch import DeviceWatch
from liaison.bot.direct_rooms import DirectRooms
from liaison.bot.directory import Directory
from liaison.bot.event_transaction import ClientRooms, EventTransactions
from liaison.bot.events import EventRouter
from liaison.bot.health import HomeserverReach
from liaison.bot.invites import InvitePolicy
from liaison.bot.key_claims import KeyClaims
from liaison.bot.key_health import KeyHealth
from liaison.bot.links import LinkEvents, publish_directories
from liaison.bot.metrics import MonitoringListener
from liaison.bot.rawapi import ApiError
from liaison.bot.receipts import ReadReceipts
from liaison.bot.reports import ReportCharts, WeeklyReports
from liaison.bot.retention import Retention
from liaison.bot.room_upgrades import RoomUpgrades
from liaison.bot.sender import OutboxSender, SenderSettings
from liaison.bot.session import SessionSettings, StartupError, open_session, refused_or_unreachable
from liaison.bot.stale_store import check_and_upload
from liaison.bot.sync import SyncLoop
from liaison.bot.trust import TrustPolicy
from liaison.bot.undecryptable import UndecryptableTracker
from liaison.commands.model import Post
from liaison.commands.notify import MsgType, OutboxKind, msgtype_for
from liaison.config import Config
from liaison.handlers import default_registry
from liaison.storage import audit, chasing, outbox
from liaison.storage.audit import AuditAction
from liaison.storage.db import Database

log = logging.getLogger(__name__)
T = TypeVar("T")

DATABASE_FILE = "liaison.db"
CROSS_SIGNING_FILE = "cross-signing.json"
READY_FILE = "ready"
IDENTITY_CHECK_S = 300.0
"""How often each link partner's published master key is compared with the pinned one."""
CHASE_AFTER_COMMAND_S = 0.5
"""A chase round starts this long after a command, so the relay it caused goes first."""


def session_settings(config: Config) -> SessionSettings:
    return SessionSettings(
        homeserver=config.homeserver.url,
        user_id=config.bot.user_id,
        device_name=config.bot.device_name,
        data_dir=config.data_dir,
        pickle_key=config.bot.pickle_key.resolve(),
        password=config.bot.password.resolve() if config.bot.password else None,
        access_token=config.bot.access_token.resolve() if config.bot.access_token else None,
    )


NETWORK_ERRNOS = frozenset({
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT,
    errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTUNREACH, errno.EHOSTDOWN,
})


def undecryptable_msgtype(config: Config, room_id: str) -> MsgType:
    """How the "could not read your message" notice goes into `room_id` (commands.notify)."""
    post = config.post_by_room(room_id)
    return msgtype_for(OutboxKind.UNDECRYPTABLE, post=post.id if post is not None else None,
                       settings=config.notifications)


def transient(exc: BaseException) -> bool:
    """Whether a start-up step failed because the homeserver is not there (yet): no
    connection or name resolution, a timeout, a proxy's 5xx while Synapse restarts, a
    rate limit. Anything else is an answer, or a local fault (a data directory that
    cannot be written, a full disk), and retrying would not change it."""
    if isinstance(exc, ApiError):
        return exc.result.homeserver_away
    if isinstance(exc, (ClientError, TimeoutError, ConnectionError, socket.gaierror)):
        return True
    return isinstance(exc, OSError) and exc.filename is None and exc.errno in NETWORK_ERRNOS


ERROR_AFTER_TRIES = 3
"""Start-up failures in a row after which the homeserver being away is logged as an error
(once; then it keeps trying, the reason shown by `/healthz`)."""


async def retrying(what: str, step: Callable[[], Awaitable[T]], *,
                   attempts: int | None = None, reach: HomeserverReach | None = None) -> T:
    """Run a start-up step until the homeserver answers it, backing off to 30 s; a
    service that gave up here would leave posts without their bot until someone
    noticed (`attempts` bounds it for one-shot commands). After `ERROR_AFTER_TRIES`
    failures in a row it says so at error level, once, naming the URL and the reason;
    `reach` keeps the count and the reason for `/healthz`."""
    tries = 0
    while True:
        tries += 1
        try:
            result = await step()
        except Exception as exc:
            if not transient(exc):
                raise
            if reach is not None:
                reach.failed(what, f"{type(exc).__name__}: {exc}".rstrip(": "))
            if attempts is not None and tries >= attempts:
                raise StartupError(f"cannot reach the homeserver: {exc}") from exc
            delay = min(30.0, 0.5 * 2 ** min(tries, 6))
            extra = {"step": what, "error": str(exc), "retry_in_s": delay}
            if tries == ERROR_AFTER_TRIES:
                url = reach.url if reach is not None else "the homeserver"
                log.error(f"cannot reach {url} after {tries} tries (to {what}); still "
                          "trying: check homeserver.url and the network", extra=extra)
            else:
                log.warning("homeserver not reachable; retrying", extra=extra)
            await asyncio.sleep(delay)
            continue
        if reach is not None:
            reach.succeeded()
        return result


async def connect(config: Config, *, attempts: int | None = None,
                  reach: HomeserverReach | None = None) -> AsyncClient:
    """Open the bot's one device, waiting for the homeserver if it is not up yet."""
    settings = session_settings(config)
    return await retrying("open the session", lambda: open_session(settings),
                          attempts=attempts, reach=reach)


class Liaison:
    def __init__(self, config: Config, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.stopping_on: str | None = None
        """The signal that stops this run (set by `run_until_signalled`), for its log line."""
        self._posts_by_room: dict[str, Post] = {p.room: p for p in config.posts}

    def post_for_room(self, room_id: str) -> Post | None:
        return self._posts_by_room.get(room_id)

    def language_for_room(self, room_id: str) -> str:
        """The configured language; a room's `!lang` choice wins (see `bot.directory`)."""
        post = self.post_for_room(room_id)
        return post.language if post else "en"

    async def run(self) -> None:
        config = self.config
        db = await Database.open(config.data_dir / DATABASE_FILE)
        client: AsyncClient | None = None
        reach = HomeserverReach(config.homeserver.url)
        keys = KeyHealth()
        # Listening from the start: while the homeserver cannot be reached, /healthz says why.
        listener = (MonitoringListener(config.metrics, database=db.path, clock=self.clock,
                                       reach=reach, keys=keys, links=config.links)
                    if config.metrics.enabled else None)
        try:
            if (config.data_dir / RESTORED_MARK).exists():
                raise StartupError(
                    f"{config.data_dir} was restored from a backup and its crypto store is "
                    "older than the device it belongs to. Run `liaison recover-device --yes` "
                    "first: the bot becomes a new device under the same identity and the old "
                    "device is deleted.")
            if listener is not None:
                await listener.start()  # a port in use stops start-up here
            await self._record_start(db)
            client = await connect(config, reach=reach)
            connected = client
            await retrying("upload the device keys",
                           lambda: check_and_upload(connected, db, keys), reach=reach)
            signed_in = client
            await retrying("check cross-signing", lambda: ensure_cross_signed(
                signed_in, config.data_dir / CROSS_SIGNING_FILE,
                config.bot.password.resolve() if config.bot.password else None,
            ), reach=reach)
            await retrying("set the display name", lambda: self._name(signed_in), reach=reach)
            await self._serve(client, db, listener, keys)
        finally:
            if self.stopping_on is not None:
                await self._log_stop(db, self.stopping_on)
            if listener is not None:
                await listener.stop()
            if client is not None:
                await client.close()  # never logout: that would delete the device and its keys
            await db.close()

    async def _log_stop(self, db: Database, signal_name: str) -> None:
        """One line on the way out: what is still queued, so an operator knows what the
        next start will send (nothing queued is lost: the outbox and the chase live in the
        database)."""
        try:
            async with db.read() as conn:
                queued = await outbox.stats(conn, now_ms=self.clock.now_ms())
                steps = await chasing.pending_count(conn)
        except Exception:  # the database itself may be why we stop
            log.exception("stopping; what is still queued could not be read",
                          extra={"signal": signal_name})
            return
        log.info(f"stopping on {signal_name}: {queued.pending} messages still queued, "
                 f"{steps} reminders and escalations pending; they go out after the next start",
                 extra={"signal": signal_name, "outbox_pending": queued.pending,
                        "outbox_failed": queued.failed, "chase_steps_pending": steps})

    async def _record_start(self, db: Database) -> None:
        """The audit log says which configuration this run serves: a digest of the file
        (which names secrets only by reference) and what it sets up."""
        config = self.config
        async with db.transaction() as conn:
            await audit.append(conn, ts_ms=self.clock.now_ms(), actor=audit.LIAISON,
                               action=AuditAction.CONFIG_LOADED, detail={
                                   "sha256": config.source_sha256,
                                   "path": str(config.config_path or ""),
                                   "posts": len(config.posts), "groups": len(config.groups),
                                   "trust": config.trust.policy,
                                   "schema": db.schema_version,
                               })

    async def _name(self, client: AsyncClient) -> None:
        """The profile's display name as configured; written only when it differs, since a
        change shows in every room as a membership event (noise in Element's timeline)."""
        wanted = self.config.bot.display_name
        current = await client.get_displayname()
        if isinstance(current, ProfileGetDisplayNameResponse) and current.displayname == wanted:
            return
        response = await client.set_displayname(wanted)
        if isinstance(response, ProfileSetDisplayNameError):
            problem = refused_or_unreachable(response, "setting the display name failed")
            if isinstance(problem, StartupError):  # refused (a server that fixes names)
                log.warning("display name not set", extra={"error": str(problem)})
                return
            raise problem  # the homeserver is away: retried
        log.info("display name set", extra={"display_name": wanted})

    async def _serve(self, client: AsyncClient, db: Database,
                     listener: MonitoringListener | None, keys: KeyHealth) -> None:
        config = self.config
        languages = Directory(config)  # `!lang` choices over the configured languages
        await languages.refresh(db)
        trust = TrustPolicy(client, config.trust.policy, config.links)
        trust.guard_link_rooms()  # before anything is sent: link rooms' keys to partners only
        synced = asyncio.Event()
        claims = KeyClaims(client, keys)

        async def before_send(room_id: str) -> None:
            await trust.prepare_room(room_id)  # first: no keys claimed for withheld devices
            await claims.prepare_room(room_id)

        upgrades = RoomUpgrades(client, db, self.clock, config, languages)
        sender = OutboxSender(
            db, client, self.clock,
            SenderSettings(
                concurrency=config.outbox.concurrency,
                backoff_max_ms=int(config.outbox.backoff_max.total_seconds() * 1000),
                max_attempts=config.outbox.max_attempts,
            ),
            before_send=before_send,
            after_send=trust.tell_withheld,
            route=upgrades.route,
            ready=synced,
            renderer=ReportCharts(db, client, config),  # `!report`'s chart, drawn at sending
        )
        undecryptable = UndecryptableTracker(
            client, db, self.clock,
            grace_ms=int(config.decryption.grace_period.total_seconds() * 1000),
            wake_sender=sender.wake, language_for_room=languages.language_for_room,
            msgtype_for_room=lambda room_id: undecryptable_msgtype(config, room_id),
            untold_rooms=frozenset(link.room for link in config.links),
        )
        chaser = Chaser(db, self.clock, config, destinations=DirectRooms(client, db, self.clock),
                        wake_sender=sender.wake, ready=synced, languages=languages)

        def wake_after_command() -> None:  # a new case, an ack or a snooze: chase at once
            sender.wake()
            # The sender first: a chase round holds the database for its planning
            # transaction, and nothing it plans falls due within the next second.
            asyncio.get_running_loop().call_later(CHASE_AFTER_COMMAND_S, chaser.wake)

        access = config.access.allowed_inviters
        registry = default_registry()
        descriptions = CommandDescriptions(client, db, languages, registry)
        transactions = EventTransactions(db=db, clock=self.clock, rooms=ClientRooms(client),
                                         directory=languages, wake_sender=wake_after_command)
        links = LinkEvents(client=client, transactions=transactions, directory=languages,
                           trust=trust, db=db, wake_sender=sender.wake) if config.links else None
        router = EventRouter(
            client=client, transactions=transactions, registry=registry, directory=languages,
            invite_policy=InvitePolicy(frozenset(access.users) | frozenset(config.access.admins),
                                       frozenset(access.servers),
                                       rooms=frozenset(link.room for link in config.links)),
            trust=trust, undecryptable=undecryptable,
            receipts=ReadReceipts(client), upgrades=upgrades, links=links,
        )
        sync = SyncLoop(
            client, db, router.handle_batch,
            timeout_ms=int(config.sync.timeout.total_seconds() * 1000),
            backoff_max_s=config.sync.backoff_max.total_seconds(),
            synced=synced,
            after_key_query=DeviceWatch(
                client, db, self.clock, sender.wake,
                language_for_room=languages.language_for_room,
                enabled=config.trust.policy == "tofu" and config.trust.notify_device_changes,
                quiet_rooms=frozenset(link.room for link in config.links),
            ).check,
            key_health=keys,
        )

        if listener is not None:
            listener.attach(sync=sync, sender=sender,
                            identity_problems=(lambda: links.identity_problems)
                            if links is not None else None)
        tasks = [
            asyncio.create_task(sync.run(), name="sync"),
            asyncio.create_task(fallback_keys.keep_fresh(client, db, self.clock),
                                name="fallback key"),
            asyncio.create_task(sender.run(), name="outbox"),
            asyncio.create_task(undecryptable.run_timer(router.handle_event), name="decrypt"),
            asyncio.create_task(chaser.run(), name="chase"),
            asyncio.create_task(descriptions.run(synced), name="command descriptions"),
            asyncio.create_task(ScheduledBackups(config.data_dir, config.backups,
                                                 self.clock).run(), name="backups"),
            asyncio.create_task(
                Retention(db, self.clock, config.retention.closed_cases).run(), name="retention"),
            asyncio.create_task(WeeklyReports(db, self.clock, config, languages=languages,
                                              wake_sender=sender.wake, ready=synced).run(),
                                name="reports"),
        ]
        ready_task = asyncio.create_task(self._announce_ready(sync, client))
        if config.links:
            tasks.append(asyncio.create_task(
                self._watch_links(sync, client, db, languages, sender.wake, links),
                name="link directories"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            ready_task.cancel()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _watch_links(self, sync: SyncLoop, client: AsyncClient, db: Database,
                           languages: Directory, wake: Callable[[], None],
                           links: LinkEvents | None) -> None:
        """Once synced: each link room the bot is in gets this bot's directory again if
        what it exposes changed since it was last published (`bot.links`); then, every
        few minutes, each partner's published master key is checked against the pinned
        one, so the log and `/healthz` say a link is refused even while it is quiet."""
        await sync.synced_once.wait()
        try:
            await languages.refresh(db)
            queued = await publish_directories(db, languages.config, frozenset(client.rooms),
                                               now_ms=self.clock.now_ms())
        except Exception:  # the next start tries again; a join of the link room as well
            log.exception("could not publish the directory to the links")
            queued = []
        if queued:
            wake()
        while links is not None:
            try:
                await links.check_identities()
            except Exception:
                log.exception("could not check the partners' identities")
            await asyncio.sleep(IDENTITY_CHECK_S)

    async def _announce_ready(self, sync: SyncLoop, client: AsyncClient) -> None:
        await sync.synced_once.wait()
        marker = self.config.data_dir / READY_FILE
        marker.write_text(f"{client.user_id} {client.device_id}\n", encoding="utf-8")
        rooms = {post.room for post in self.config.posts}
        joined = len(rooms & set(client.rooms))
        log.info(f"ready: serving {joined} of {len(rooms)} post rooms as {client.user_id} "
                 f"({client.device_id})",
                 extra={"user_id": client.user_id, "device_id": client.device_id,
                        "post_rooms": len(rooms), "post_rooms_joined": joined})


def run_until_signalled(config: Config) -> int:
    """Run the bot until SIGINT/SIGTERM; a clean stop never logs the device out."""

    async def main() -> None:
        app = Liaison(config)
        runner = asyncio.create_task(app.run())
        loop = asyncio.get_running_loop()
        def stop(signum: signal.Signals) -> None:
            app.stopping_on = signum.name
            runner.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop, signum)
        with contextlib.suppress(asyncio.CancelledError):
            await runner

    ready = config.data_dir / READY_FILE
    with contextlib.suppress(FileNotFoundError):
        ready.unlink()
    asyncio.run(main())
    return 0

