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
from nio import AsyncClient

from bot import fallback_keys
from bot.backup import RESTORED_MARK, ScheduledBackups
from bot.chaser import Chaser
from bot.clock import Clock
from bot.config import Config
from bot.crosssigning import ensure_cross_signed
from bot.devicewatch import DeviceWatch
from bot.direct_rooms import DirectRooms
from bot.events import EventRouter
from bot.invites import InvitePolicy
from bot.key_claims import KeyClaims
from bot.key_health import KeyHealth
from bot.languages import RoomLanguages
from bot.metrics import MonitoringListener
from bot.rawapi import ApiError
from bot.reports import ReportCharts, WeeklyReports
from bot.retention import Retention
from bot.sender import OutboxSender, SenderSettings
from bot.session import SessionSettings, StartupError, open_session
from bot.stale_store import check_and_upload
from bot.sync import SyncLoop
from bot.trust import TrustPolicy
from bot.undecryptable import UndecryptableTracker
from commands.builtin import default_registry
from commands.model import Post
from storage import audit
from storage.audit import AuditAction
from storage.db import Database

log = logging.getLogger(__name__)
T = TypeVar("T")

DATABASE_FILE = "liaison.db"
CROSS_SIGNING_FILE = "cross-signing.json"
READY_FILE = "ready"
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


async def retrying(what: str, step: Callable[[], Awaitable[T]], *,
                   attempts: int | None = None) -> T:
    """Run a start-up step until the homeserver answers it, backing off to 30 s; a
    service that gave up here would leave posts without their bot until someone
    noticed (`attempts` bounds it for one-shot commands)."""
    tries = 0
    while True:
        tries += 1
        try:
            return await step()
        except Exception as exc:
            if not transient(exc):
                raise
            if attempts is not None and tries >= attempts:
                raise StartupError(f"cannot reach the homeserver: {exc}") from exc
            delay = min(30.0, 0.5 * 2 ** min(tries, 6))
            log.warning("homeserver not reachable; retrying",
                        extra={"step": what, "error": str(exc), "retry_in_s": delay})
            await asyncio.sleep(delay)


async def connect(config: Config, *, attempts: int | None = None) -> AsyncClient:
    """Open the bot's one device, waiting for the homeserver if it is not up yet."""
    settings = session_settings(config)
    return await retrying("open the session", lambda: open_session(settings),
                          attempts=attempts)


class Liaison:
    def __init__(self, config: Config, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self._posts_by_room: dict[str, Post] = {p.room: p for p in config.posts}

    def post_for_room(self, room_id: str) -> Post | None:
        return self._posts_by_room.get(room_id)

    def language_for_room(self, room_id: str) -> str:
        """The configured language; a room's `!lang` choice wins (see `bot.languages`)."""
        post = self.post_for_room(room_id)
        return post.language if post else "en"

    async def run(self) -> None:
        config = self.config
        db = await Database.open(config.data_dir / DATABASE_FILE)
        client: AsyncClient | None = None
        try:
            if (config.data_dir / RESTORED_MARK).exists():
                raise StartupError(
                    f"{config.data_dir} was restored from a backup and its crypto store is "
                    "older than the device it belongs to. Run `liaison recover-device --yes` "
                    "first: the bot becomes a new device under the same identity and the old "
                    "device is deleted.")
            await self._record_start(db)
            client = await connect(config)
            connected = client
            keys = KeyHealth()
            await retrying("upload the device keys",
                           lambda: check_and_upload(connected, db, keys))
            signed_in = client
            await retrying("check cross-signing", lambda: ensure_cross_signed(
                signed_in, config.data_dir / CROSS_SIGNING_FILE,
                config.bot.password.resolve() if config.bot.password else None,
            ))
            await self._serve(client, db, keys)
        finally:
            if client is not None:
                await client.close()  # never logout: that would delete the device and its keys
            await db.close()

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

    async def _serve(self, client: AsyncClient, db: Database, keys: KeyHealth) -> None:
        config = self.config
        languages = RoomLanguages(config)  # `!lang` choices over the configured languages
        await languages.refresh(db)
        trust = TrustPolicy(client, config.trust.policy)
        synced = asyncio.Event()
        claims = KeyClaims(client, keys)

        async def before_send(room_id: str) -> None:
            await trust.prepare_room(room_id)  # first: no keys claimed for withheld devices
            await claims.prepare_room(room_id)

        sender = OutboxSender(
            db, client, self.clock,
            SenderSettings(
                concurrency=config.outbox.concurrency,
                backoff_max_ms=int(config.outbox.backoff_max.total_seconds() * 1000),
                max_attempts=config.outbox.max_attempts,
            ),
            before_send=before_send,
            ready=synced,
            renderer=ReportCharts(db, client, config),  # `!report`'s chart, drawn at sending
        )
        undecryptable = UndecryptableTracker(
            client, db, self.clock,
            grace_ms=int(config.decryption.grace_period.total_seconds() * 1000),
            wake_sender=sender.wake, language_for_room=languages.language_for_room,
        )
        chaser = Chaser(db, self.clock, config, destinations=DirectRooms(client, db, self.clock),
                        wake_sender=sender.wake, ready=synced, languages=languages)

        def wake_after_command() -> None:  # a new case, an ack or a snooze: chase at once
            sender.wake()
            # The sender first: a chase round holds the database for its planning
            # transaction, and nothing it plans falls due within the next second.
            asyncio.get_running_loop().call_later(CHASE_AFTER_COMMAND_S, chaser.wake)

        access = config.access.allowed_inviters
        router = EventRouter(
            client=client, db=db, clock=self.clock, registry=default_registry(),
            invite_policy=InvitePolicy(frozenset(access.users) | frozenset(config.access.admins),
                                       frozenset(access.servers)),
            trust=trust, undecryptable=undecryptable, wake_sender=wake_after_command,
            config=config,
            language_for_room=languages.language_for_room,
            post_for_room=languages.post_for_room, languages=languages,
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
            ).check,
            key_health=keys,
        )
        listener = (MonitoringListener(config.metrics, database=db.path, clock=self.clock,
                                       sync=sync, sender=sender, keys=keys)
                    if config.metrics.enabled else None)
        if listener is not None:
            await listener.start()  # before any task: a port in use stops start-up here
        tasks = [
            asyncio.create_task(sync.run(), name="sync"),
            asyncio.create_task(fallback_keys.keep_fresh(client, db, self.clock),
                                name="fallback key"),
            asyncio.create_task(sender.run(), name="outbox"),
            asyncio.create_task(undecryptable.run_timer(router.handle_event), name="decrypt"),
            asyncio.create_task(chaser.run(), name="chase"),
            asyncio.create_task(ScheduledBackups(config.data_dir, config.backups,
                                                 self.clock).run(), name="backups"),
            asyncio.create_task(
                Retention(db, self.clock, config.retention.closed_cases).run(), name="retention"),
            asyncio.create_task(WeeklyReports(db, self.clock, config, languages=languages,
                                              wake_sender=sender.wake, ready=synced).run(),
                                name="reports"),
        ]
        ready_task = asyncio.create_task(self._announce_ready(sync, client))
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
            if listener is not None:
                await listener.stop()

    async def _announce_ready(self, sync: SyncLoop, client: AsyncClient) -> None:
        await sync.synced_once.wait()
        marker = self.config.data_dir / READY_FILE
        marker.write_text(f"{client.user_id} {client.device_id}\n", encoding="utf-8")
        log.info("ready", extra={"user_id": client.user_id, "device_id": client.device_id})


def run_until_signalled(config: Config) -> int:
    """Run the bot until SIGINT/SIGTERM; a clean stop never logs the device out."""

    async def main() -> None:
        app = Liaison(config)
        runner = asyncio.create_task(app.run())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, runner.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await runner

    ready = config.data_dir / READY_FILE
    with contextlib.suppress(FileNotFoundError):
        ready.unlink()
    asyncio.run(main())
    return 0

