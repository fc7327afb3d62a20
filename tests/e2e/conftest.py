"""Shared fixtures for end-to-end tests against a real Synapse.

One homeserver per test session (starting it costs about a second); every
test gets fresh officers with unique accounts, so tests never see each
other's users, rooms or messages.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import pytest_asyncio

from devkit.botprocess import BotProcess
from devkit.federation import SynapsePair
from devkit.officer import Officer
from devkit.synapse import LocalSynapse
from liaison.bot.oversight import describe
from liaison.storage import audit
from liaison.storage.db import read_only

E2E_DIR = Path(__file__).resolve().parent


def unique(prefix: str) -> str:
    """A name no other test uses: `prefix` plus a short random suffix (valid as a localpart)."""
    return f"{prefix.lower()}-{secrets.token_hex(4)}"


FEDERATION_GROUP = "federation"
"""The xdist group of every test on the federating pair: with `--dist loadgroup` (make
test) they share one worker, so one pair of servers starts, not one per worker."""


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything under tests/e2e as e2e, so `-m "not e2e"` skips the homeserver;
    put the tests on the federating pair in one xdist group."""
    for item in items:
        if E2E_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.e2e)
        if "synapse_pair" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(FEDERATION_GROUP))


# --- homeserver -------------------------------------------------------------


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def synapse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSynapse]:
    """The session's Synapse; a test may stop/restart it but must leave it running."""
    server = LocalSynapse(tmp_path_factory.mktemp("synapse"))
    async with server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def synapse_pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SynapsePair]:
    """Two federating Synapse servers (`home`, `partner`), started once, only by the
    sessions that run a test across federation; a test may stop one, must leave it running."""
    pair = SynapsePair(tmp_path_factory.mktemp("federation"))
    async with pair:
        yield pair


# --- officers ---------------------------------------------------------------


class OfficerFactory(Protocol):
    async def __call__(self, prefix: str, *, displayname: str | None = None) -> Officer: ...




class OfficerOnFactory(Protocol):
    async def __call__(
        self, server: LocalSynapse, prefix: str, *, displayname: str | None = None
    ) -> Officer: ...


@pytest_asyncio.fixture(loop_scope="session")
async def officer_on_factory(
    synapse_pair: SynapsePair, tmp_path: Path
) -> AsyncIterator[OfficerOnFactory]:
    """`await officer_on_factory(synapse_pair.partner, "uz")`: a started officer with a fresh
    account on one server of the federating pair."""
    async with _officers(tmp_path) as make:
        yield make


@pytest_asyncio.fixture(loop_scope="session")
async def officer_factory(synapse: LocalSynapse, tmp_path: Path) -> AsyncIterator[OfficerFactory]:
    """`await officer_factory("kz")` gives a started officer with a fresh account."""
    async with _officers(tmp_path) as make:
        async def on_synapse(prefix: str, *, displayname: str | None = None) -> Officer:
            return await make(synapse, prefix, displayname=displayname)

        yield on_synapse


@contextlib.asynccontextmanager
async def _officers(tmp_path: Path) -> AsyncIterator[OfficerOnFactory]:
    """Makes started officers with fresh accounts; stops them all at the end."""
    officers: list[Officer] = []

    async def make(server: LocalSynapse, prefix: str, *,
                   displayname: str | None = None) -> Officer:
        officer = await Officer.create(
            server, unique(prefix), tmp_path / "officers", displayname=displayname
        )
        officers.append(officer)
        await officer.start()
        return officer

    try:
        yield make
    finally:
        for officer in officers:
            await officer.stop()


# --- the bot ----------------------------------------------------------------


class BotFactory(Protocol):
    async def __call__(
        self, *, config: dict[str, Any] | None = None, start: bool = True
    ) -> BotProcess: ...


@pytest_asyncio.fixture(loop_scope="session")
async def bot_factory(synapse: LocalSynapse, tmp_path: Path) -> AsyncIterator[BotFactory]:
    """`await bot_factory()` gives a running bot process with a fresh account and data dir."""
    async for make in _bots(synapse, tmp_path):
        yield make


@pytest_asyncio.fixture(loop_scope="session")
async def home_bot_factory(
    synapse_pair: SynapsePair, tmp_path: Path
) -> AsyncIterator[BotFactory]:
    """As `bot_factory`, on the federating pair's `home` server."""
    async for make in _bots(synapse_pair.home, tmp_path):
        yield make


async def _bots(synapse: LocalSynapse, tmp_path: Path) -> AsyncIterator[BotFactory]:
    bots: list[BotProcess] = []

    async def make(*, config: dict[str, Any] | None = None, start: bool = True) -> BotProcess:
        localpart = unique("liaison")
        password = secrets.token_urlsafe(12)
        await synapse.register(localpart, password, displayname="Liaison")
        bot = BotProcess(
            tmp_path / localpart, synapse, localpart=localpart, password=password, config=config
        )
        bots.append(bot)
        if start:
            await bot.start()
        return bot

    yield make
    for bot in bots:
        await bot.stop()
        # Shown by pytest only when the test failed.
        print(f"--- log of {bot.user_id} ---\n{bot.log_tail(60)}")
    for bot in bots:  # whatever a test did to the bot, its record still holds together
        await assert_audit_chain_intact(bot)


async def assert_audit_chain_intact(bot: BotProcess) -> None:
    database = bot.data_dir / "liaison.db"
    if not database.exists():
        return
    async with read_only(database) as conn:
        check = await audit.verify(conn)
    assert check.ok, f"audit log of {bot.user_id}: {describe(check)}"


def known_to_the_bot(*officers: Officer) -> dict[str, Any]:
    """Bot configuration naming `officers` as people the bot serves (admins), so a room
    with one of them and the bot is that person's direct room: the bot answers there.
    (A room the configuration does not account for gets one explanation, then silence.)"""
    return {"access": {"admins": [officer.user_id for officer in officers]}}


def post_rooms(*rooms: str, **extra: Any) -> dict[str, Any]:
    """Bot configuration serving each room as a post (`XX-POST1`, `XX-POST2`, …)."""
    return {"posts": [{"id": f"XX-POST{number}", "names": {"en": f"Post {number}"},
                       "country": "XX", "agency": "border", "room": room_id, **extra}
                      for number, room_id in enumerate(rooms, start=1)]}
