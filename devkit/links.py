"""Two countries, two bots, one link (issue 18), on the federating pair, for tests and the demo.

Kazakhstan runs its bot on the pair's `home` server with its posts; Uzbekistan runs its
own on `partner` with its posts, duty officers, supervisors, language and chasing. Neither
configuration names a post of the other side: each names the other bot as a partner in
`links:`, with the partner's cross-signing master key as `liaison identity` printed it on
the partner's data directory before its first start (the operators' out-of-band
exchange). A Kazakh operator creates the encrypted link room and invites both bots (the
Uzbek operator too); each bot accepts the invite because the room is its configured link
room, publishes its directory there, and accepts the other's.

`LinkedCountries.create(pair, workdir)` builds all of it and waits until each side has
accepted the other's directory; `close()` stops every officer and both bots.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devkit.botprocess import PASSWORD_ENV, PICKLE_KEY_ENV, BotProcess
from devkit.federation import SynapsePair
from devkit.officer import Officer
from devkit.synapse import LocalSynapse
from liaison.storage.db import read_only
from liaison.storage.links import accepted_directories

LINK_WAIT_S = 90.0
MASTER_KEY_RE = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}(?![A-Za-z0-9+/=])")
"""An unpadded base64 Ed25519 public key, as `liaison identity` prints it."""
CROSS_SIGNING_FILE = "cross-signing.json"


@dataclass(frozen=True)
class LinkedPost:
    """A post of one side: its duty officer (and supervisor) are accounts on its server."""

    post_id: str
    names: dict[str, str]
    agency: str
    language: str
    timezone: str
    officer: str
    """The duty officer's localpart (before the namer makes it unique)."""
    supervisor: str | None = None
    groups: tuple[str, ...] = ()

    @property
    def country(self) -> str:
        return self.post_id[:2]


KZ_POSTS = (
    LinkedPost("KZ-ZHIBEK", {"en": "Zhibek Zholy", "ru": "Жибек Жолы", "ar": "جيبيك جولي"},
               "border", "en", "Asia/Almaty", "aigerim"),
)
UZ_POSTS = (
    LinkedPost("UZ-TERMEZ", {"en": "Termez", "ru": "Термез", "ar": "ترمذ"},
               "customs", "ru", "Asia/Tashkent", "bekzod", supervisor="rustam"),
)
UZ_NUKUS = LinkedPost("UZ-NUKUS", {"en": "Nukus", "ru": "Нукус", "ar": "نوكوس"},
                      "customs", "ru", "Asia/Tashkent", "dilnoza")
"""The post Uzbekistan adds later: Kazakhstan reaches it without a restart or a config edit."""


@dataclass
class Country:
    """One side of the link: its server, its bot, its posts' rooms and people."""

    code: str
    link_name: str
    """This bot's name for its link to the other side (`uz` on the Kazakh bot)."""
    server: LocalSynapse
    bot: BotProcess
    posts: dict[str, LinkedPost] = field(default_factory=dict)
    rooms: dict[str, str] = field(default_factory=dict)
    officers: dict[str, Officer] = field(default_factory=dict)
    """Post id → its duty officer."""
    supervisors: dict[str, Officer] = field(default_factory=dict)
    master_key: str = ""
    """This bot's cross-signing master key (`liaison identity`), given to the other side."""
    extra_config: dict[str, Any] = field(default_factory=dict)

    def room(self, post_id: str) -> str:
        return self.rooms[post_id]

    def officer(self, post_id: str) -> Officer:
        return self.officers[post_id]

    @property
    def database(self) -> Path:
        return self.bot.data_dir / "liaison.db"

    def post_config(self, spec: LinkedPost) -> dict[str, Any]:
        post: dict[str, Any] = {
            "id": spec.post_id, "names": spec.names, "country": spec.country,
            "agency": spec.agency, "room": self.rooms[spec.post_id],
            "language": spec.language, "timezone": spec.timezone, "clearance": "AMBER",
            "duty_officers": [self.officers[spec.post_id].user_id],
        }
        if spec.post_id in self.supervisors:
            post["supervisors"] = [self.supervisors[spec.post_id].user_id]
        return post

    def config(self) -> dict[str, Any]:
        """The bot's configuration without `links:` (what `liaison identity` reads)."""
        groups: dict[str, list[str]] = {}
        for spec in self.posts.values():
            for group in spec.groups:
                groups.setdefault(group, []).append(spec.post_id)
        config: dict[str, Any] = {
            "access": {"allowed_inviters": {"users": [],
                                            "servers": [self.server.server_name]}},
            "posts": [self.post_config(spec) for spec in self.posts.values()],
            **({"groups": [{"name": name, "posts": members}
                           for name, members in groups.items()]} if groups else {}),
        }
        return {**config, **self.extra_config}


def link_entry(name: str, partner: Country, room: str) -> dict[str, Any]:
    """One `links:` entry naming `partner`'s bot (what an operator writes after the call)."""
    return {"name": name, "partner": partner.bot.user_id, "room": room,
            "partner_master_key": partner.master_key, "countries": [partner.code],
            "max_tlp": "AMBER"}


async def liaison(bot: BotProcess, *args: str, stderr: bool = True,
                  timeout: float = 60.0) -> tuple[int, str]:
    """`liaison ARGS -c CONFIG` on the bot's configuration, as its operator runs it: the
    exit code and the output (with standard error unless `stderr` is False)."""
    env = dict(os.environ, **{PASSWORD_ENV: bot.password, PICKLE_KEY_ENV: bot.pickle_key})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "liaison.bot", *args, "-c", str(bot.config_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if stderr else asyncio.subprocess.DEVNULL, env=env)
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode or 0, output.decode()


async def master_key(bot: BotProcess) -> str:
    """`liaison identity` on the bot's configuration: its cross-signing master key, made
    offline in its data directory when it has none yet (before the first start)."""
    bot.write_config()
    bot.data_dir.mkdir(parents=True, exist_ok=True)
    code, output = await liaison(bot, "identity", stderr=False)
    found = MASTER_KEY_RE.findall(output)
    if code != 0 or len(found) != 1:
        raise RuntimeError(f"liaison identity exited {code} printing no single master "
                           f"key:\n{output}")
    return str(found[0])


Namer = Callable[[str], str]


async def eventually(check: Callable[[], Any], what: str,
                     timeout: float = LINK_WAIT_S) -> Any:
    """Poll `check` (a function or a coroutine function) until it returns something
    truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.25)


@dataclass
class LinkedCountries:
    """Kazakhstan (`kz`, on `pair.home`) and Uzbekistan (`uz`, on `pair.partner`), linked."""

    pair: SynapsePair
    workdir: Path
    kz: Country
    uz: Country
    link_room: str
    kz_operator: Officer
    """Created the link room; in it, but the bots never share the room's keys with it."""
    uz_operator: Officer
    """The Uzbek operator, in the link room too, on the partner bot's own server."""
    namer: Namer
    people: list[Officer] = field(default_factory=list)
    """Every officer made here (stopped by `close`)."""

    @classmethod
    async def create(
        cls, pair: SynapsePair, workdir: Path, *, namer: Namer = lambda name: name,
        kz_posts: Sequence[LinkedPost] = KZ_POSTS, uz_posts: Sequence[LinkedPost] = UZ_POSTS,
        kz_config: dict[str, Any] | None = None, uz_config: dict[str, Any] | None = None,
        wait: bool = True,
    ) -> LinkedCountries:
        """Accounts, rooms and both bots, started; with `wait`, until each has accepted the
        other's directory. On failure everything made so far is stopped."""
        workdir = Path(workdir).resolve()
        made: list[Officer] = []
        bots: list[BotProcess] = []

        async def officer(server: LocalSynapse, localpart: str, display: str) -> Officer:
            person = await Officer.create(server, namer(localpart), workdir / "officers",
                                          displayname=display)
            made.append(person)
            await person.start()
            return person

        async def country(code: str, link_name: str, server: LocalSynapse,
                          specs: Sequence[LinkedPost], extra: dict[str, Any] | None
                          ) -> Country:
            localpart = namer(f"liaison-{code.lower()}")
            password = secrets.token_urlsafe(12)
            await server.register(localpart, password, displayname=f"Liaison {code}")
            bot = BotProcess(workdir / localpart, server, localpart=localpart,
                             password=password)
            bots.append(bot)
            side = Country(code, link_name, server, bot, extra_config=dict(extra or {}))
            for spec in specs:
                await add_people(side, spec)
            return side

        async def add_people(side: Country, spec: LinkedPost) -> None:
            side.posts[spec.post_id] = spec
            side.officers[spec.post_id] = duty = await officer(
                side.server, spec.officer, spec.officer.capitalize())
            if spec.supervisor is not None:
                side.supervisors[spec.post_id] = await officer(
                    side.server, spec.supervisor, spec.supervisor.capitalize())
            side.rooms[spec.post_id] = await duty.create_room(
                spec.names["en"], invite=[side.bot.user_id])

        try:
            kz = await country("KZ", "uz", pair.home, kz_posts, kz_config)
            uz = await country("UZ", "kz", pair.partner, uz_posts, uz_config)
            kz_operator = await officer(pair.home, "kz-operator", "KZ operator")
            uz_operator = await officer(pair.partner, "uz-operator", "UZ operator")
            link_room = await kz_operator.create_room(
                "Liaison link KZ–UZ", invite=[kz.bot.user_id, uz.bot.user_id,
                                              uz_operator.user_id])
            await uz_operator.join(link_room)
            world = cls(pair, workdir, kz, uz, link_room, kz_operator, uz_operator, namer,
                        made)
            for side in (kz, uz):
                side.bot.reconfigure(side.config())
                side.master_key = await master_key(side.bot)
            kz.bot.reconfigure({"links": [link_entry(kz.link_name, uz, link_room)]})
            uz.bot.reconfigure({"links": [link_entry(uz.link_name, kz, link_room)]})
            await asyncio.gather(kz.bot.start(), uz.bot.start())
        except BaseException:
            for person in made:
                await person.stop()
            for bot in bots:
                await bot.stop()
            raise
        try:
            await world.wait_joined()
            if wait:
                await world.wait_linked()
        except BaseException:
            await world.close()
            raise
        return world

    @property
    def countries(self) -> tuple[Country, Country]:
        return self.kz, self.uz

    async def wait_joined(self, timeout: float = LINK_WAIT_S) -> None:
        """Until both bots are in the link room and each in its posts' rooms, and each
        bot's own sync has the rooms (it answers `!ping` in every post room)."""
        for side in self.countries:
            await self.kz_operator.wait_until_joined(self.link_room, side.bot.user_id,
                                                     timeout=timeout)
            for post_id, room_id in side.rooms.items():
                await side.officers[post_id].wait_until_joined(room_id, side.bot.user_id,
                                                               timeout=timeout)
                await ping(side.officers[post_id], room_id, side.bot, timeout)

    async def accepted_version(self, side: Country) -> int | None:
        """The version of the other side's directory that `side`'s bot has accepted."""
        try:
            async with read_only(side.database) as conn:
                directories = await accepted_directories(conn)
        except (FileNotFoundError, sqlite3.OperationalError):  # not started, not migrated
            return None
        directory = directories.get(side.link_name)
        return None if directory is None else directory.version

    async def wait_linked(self, *, kz_version: int = 1, uz_version: int = 1,
                          timeout: float = LINK_WAIT_S) -> None:
        """Until the Kazakh bot has accepted Uzbekistan's directory of `uz_version` (or
        newer), and the Uzbek bot Kazakhstan's of `kz_version`."""
        for side, version in ((self.kz, uz_version), (self.uz, kz_version)):
            async def accepted(side: Country = side, version: int = version) -> bool:
                return (await self.accepted_version(side) or 0) >= version
            await eventually(accepted, f"{side.code}'s bot to accept directory version "
                                       f"{version}:\n{side.bot.log_tail()}", timeout)

    def other(self, side: Country) -> Country:
        return self.uz if side is self.kz else self.kz

    async def add_post(self, side: Country, spec: LinkedPost) -> None:
        """The operators of `side` add a post (its officer, its room) and restart their
        bot with it; the other side's bot is not touched."""
        duty = await Officer.create(side.server, self.namer(spec.officer),
                                    self.workdir / "officers",
                                    displayname=spec.officer.capitalize())
        self.people.append(duty)
        await duty.start()
        side.officers[spec.post_id] = duty
        side.posts[spec.post_id] = spec
        side.rooms[spec.post_id] = await duty.create_room(spec.names["en"],
                                                          invite=[side.bot.user_id])
        await side.bot.stop()
        side.bot.reconfigure({"posts": side.config()["posts"]})
        await side.bot.start()
        await duty.wait_until_joined(side.rooms[spec.post_id], side.bot.user_id,
                                     timeout=LINK_WAIT_S)
        await ping(duty, side.rooms[spec.post_id], side.bot, LINK_WAIT_S)

    async def close(self) -> None:
        for person in self.people:
            await person.stop()
        for side in self.countries:
            await side.bot.stop()


async def ping(officer: Officer, room_id: str, bot: BotProcess, timeout: float) -> None:
    """`!ping` and wait for the bot's answer: its own sync has the room."""
    event_id = await officer.send_text(room_id, "!ping")
    await officer.wait_for(
        lambda m: (m.content.get("m.relates_to") or {}).get("m.in_reply_to", {})
        .get("event_id") == event_id,
        room_id=room_id, sender=bot.user_id, timeout=timeout)
