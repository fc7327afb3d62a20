"""The set every scenario plays on: a local Synapse, officers, Liaison and the minimal
relay, each with fresh accounts, all owned by one `Stage` that tears them down."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.minirelay import MiniRelay
from bench.postgres import PostgresCluster
from bench.procs import BenchBot
from devkit.botprocess import deep_merge
from devkit.officer import Officer, SeenMessage
from devkit.synapse import LocalSynapse

TAG_RE = re.compile(r"\btag: (\S+)")
"""Every benchmark message carries `tag: <id>` as a field line; relays keep it."""

# What a production deployment would change for a load test: nothing but flood control
# (a burst of 100 alerts a minute from one officer is the test, not an attack).
BOT_DEFAULTS: dict[str, Any] = {
    "limits": {"commands_per_user": None, "commands_per_room": None},
}


def tag_of(message: SeenMessage) -> str | None:
    match = TAG_RE.search(message.body or "")
    return match.group(1) if match else None


def post_config(post_id: str, room: str, **extra: Any) -> dict[str, Any]:
    return {"id": post_id, "names": {"en": post_id.split("-", 1)[1].title()},
            "country": post_id[:2], "agency": "border", "room": room, **extra}


HOMESERVERS = ("sqlite", "postgres")
"""Profiles: Synapse on SQLite (its own file), or on a throw-away PostgreSQL cluster."""


class Stage:
    """One homeserver for a profile's scenarios; accounts get a random suffix so scenarios
    never see each other's rooms or messages."""

    def __init__(self, workdir: Path, synapse_python: str | None = None, *,
                 bot_config: dict[str, Any] | None = None,
                 homeserver: str = "sqlite", minirelay_answers: bool = False) -> None:
        if homeserver not in HOMESERVERS:
            raise ValueError(f"unknown homeserver profile {homeserver!r}")
        self.workdir = workdir
        self.bot_config = bot_config or {}
        self.homeserver = homeserver
        self.minirelay_answers = minirelay_answers
        self.postgres = PostgresCluster() if homeserver == "postgres" else None
        self.synapse = LocalSynapse(
            workdir / "synapse", python=synapse_python,
            database=self.postgres.database() if self.postgres is not None else None)
        self._officers: list[Officer] = []
        self._bots: list[BenchBot] = []
        self._relays: list[MiniRelay] = []

    async def __aenter__(self) -> Stage:
        if self.postgres is not None:
            await self.postgres.start()
        try:
            await self.synapse.start()
        except BaseException:
            if self.postgres is not None:
                await self.postgres.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.clear()
        await self.synapse.stop()
        if self.postgres is not None:
            await self.postgres.stop()

    def homeserver_pids(self) -> dict[str, int | None]:
        """The processes doing the homeserver's work, for `CpuMeter`: Synapse, and on the
        postgres profile the postmaster (counted with its backends, see `tree_cpu_seconds`)."""
        pids: dict[str, int | None] = {"synapse": self.synapse_pid}
        if self.postgres is not None:
            pids["postgres"] = self.postgres.postmaster_pid
        return pids

    async def clear(self) -> None:
        """Stop every officer, bot and relay started so far (between scenarios)."""
        for bot in self._bots:
            await bot.stop()
        for relay in self._relays:
            await relay.stop()
        for officer in self._officers:
            await officer.stop()
        self._bots, self._relays, self._officers = [], [], []

    @property
    def synapse_pid(self) -> int | None:
        process = getattr(self.synapse, "_process", None)
        return process.pid if process is not None else None

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{secrets.token_hex(3)}"

    async def officer(self, prefix: str) -> Officer:
        officer = await Officer.create(self.synapse, self.unique(prefix),
                                       self.workdir / "officers")
        self._officers.append(officer)
        await officer.start()
        return officer

    async def stop_officer(self, officer: Officer) -> None:
        if officer in self._officers:
            self._officers.remove(officer)
            await officer.stop()

    async def room(self, owner: Officer, name: str, members: Sequence[Officer] = ()) -> str:
        """An encrypted room created by `owner` with `members` joined."""
        room_id = await owner.create_room(name, invite=[m.user_id for m in members])
        for member in members:
            await member.join(room_id)
        return room_id

    async def bot(self, config: dict[str, Any], *, name: str = "liaison",
                  start: bool = True) -> BenchBot:
        localpart = self.unique(name)
        password = secrets.token_urlsafe(12)
        await self.synapse.register(localpart, password, displayname="Liaison")
        bot = BenchBot(self.workdir / localpart, self.synapse, localpart=localpart,
                       password=password,
                       config=deep_merge(deep_merge(BOT_DEFAULTS, self.bot_config), config))
        self._bots.append(bot)
        if start:
            await bot.start()
        return bot

    async def bring_in(self, user_id: str, rooms: Iterable[tuple[Officer, str]]) -> None:
        """Invite `user_id` into each (owner, room) and wait until every owner sees it joined."""
        pairs = list(rooms)
        for owner, room_id in pairs:
            await owner.invite(room_id, user_id)
        await asyncio.gather(*(owner.wait_until_joined(room_id, user_id, timeout=60)
                               for owner, room_id in pairs))
        await open_sessions(pairs)

    async def bring_in_relay(self, relay: MiniRelay, rooms: Iterable[tuple[Officer, str]]) -> None:
        """Invite the minimal relay, start it (it joins the rooms it was invited to) and wait
        until every owner sees it joined."""
        pairs = list(rooms)
        for owner, room_id in pairs:
            await owner.invite(room_id, relay.user_id)
        await relay.start()
        await asyncio.gather(*(owner.wait_until_joined(room_id, relay.user_id, timeout=60)
                               for owner, room_id in pairs))
        await open_sessions(pairs)

    async def minirelay(self, routes: dict[str, list[str]]) -> MiniRelay:
        """The minimal relay, registered but not started: see `bring_in_relay`."""
        localpart = self.unique("minirelay")
        password = secrets.token_urlsafe(12)
        user_id = await self.synapse.register(localpart, password)
        relay = MiniRelay(self.workdir / localpart, homeserver=self.synapse.url,
                          user_id=user_id, password=password, routes=routes,
                          answer=self.minirelay_answers)
        self._relays.append(relay)
        return relay


async def open_sessions(pairs: Iterable[tuple[Officer, str]]) -> None:
    """Each owner claims one-time keys for the room's devices it has no Olm session with,
    one owner after another, before anything is sent. On PostgreSQL, Synapse claims keys
    with one DELETE ... RETURNING of the oldest key: concurrent claims for the same device
    pick the same key and all but one come back empty, and a sender then skips a device
    that has no fallback key (the minimal relay) when it shares the room key, for good."""
    for owner, room_id in pairs:
        client = owner.client
        if client.should_query_keys:
            await client.keys_query()
        missing = client.get_missing_sessions(room_id)
        if missing:
            await client.keys_claim(missing)


async def poll_until(check: Callable[[], bool], *, interval: float = 0.05,
                     timeout: float = 600.0) -> None:
    """Until `check()` is true: for state another process or a sync task changes (a file,
    a database, an officer's list of seen messages) that no event announces."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met after {timeout}s")
        await asyncio.sleep(interval)


@dataclass
class Arrival:
    tag: str
    room_id: str
    event_id: str
    received_at: float


class Watcher:
    """Collects, per tag, the relayed messages an officer decrypted in some rooms from one
    sender, without rescanning everything on every sync."""

    def __init__(self, officer: Officer, sender: str, rooms: Iterable[str]) -> None:
        self.officer = officer
        self.sender = sender
        self.rooms = frozenset(rooms)
        self.arrivals: dict[str, list[Arrival]] = {}
        self.count = 0
        self._next = 0
        self._pending: list[int] = []

    def poll(self, accept: Callable[[SeenMessage], bool] | None = None) -> None:
        seen = self.officer.seen
        indices = self._pending + list(range(self._next, len(seen)))
        self._next = len(seen)
        self._pending = []
        for index in indices:
            message = seen[index]
            if message.room_id not in self.rooms or message.sender != self.sender:
                continue
            if message.undecrypted:
                self._pending.append(index)
                continue
            if accept is not None and not accept(message):
                continue
            tag = tag_of(message)
            if tag is None:
                continue
            self.arrivals.setdefault(tag, []).append(
                Arrival(tag, message.room_id, message.event_id, message.received_at))
            self.count += 1

    async def wait(self, done: Callable[[], bool], timeout: float,
                   accept: Callable[[SeenMessage], bool] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.poll(accept)
            if done():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.officer.user_id}: {self.count} arrivals after "
                                   f"{timeout}s; undecrypted {len(self._pending)}")
            await asyncio.sleep(0.01)

    def undecrypted(self) -> int:
        return len(self._pending)
