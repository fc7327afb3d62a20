"""The fallback key: signed as the spec says, on disk before it is published, rotated weekly,
and never lost to failed uploads.

A real matrix-nio client with its real (vodozemac) crypto store, no homeserver: the
upload is captured instead of sent. The end-to-end proof — a new device reaching the
bot with it after the one-time keys ran out, across a restart — is in
tests/e2e/test_resilience.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import canonicaljson
import pytest
import vodozemac
from nio import AsyncClient, AsyncClientConfig

from liaison.bot import fallback_keys
from liaison.bot.clock import Clock
from liaison.bot.rawapi import ApiError, ApiResult
from liaison.storage import state
from liaison.storage.db import Database

USER = "@liaison:example.org"
DEVICE = "LIAISONDEV"
PICKLE_KEY = "a pickle key for tests"
DAY_MS = 24 * 3600 * 1000
WEEK_MS = 7 * DAY_MS


class FixedClock(Clock):
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms


def open_client(store: Path) -> AsyncClient:
    client = AsyncClient("https://matrix.example.org", USER, device_id=DEVICE,
                         store_path=str(store),
                         config=AsyncClientConfig(store_sync_tokens=False,
                                                  pickle_key=PICKLE_KEY))
    client.restore_login(USER, DEVICE, "token")  # loads (or creates) the crypto store
    return client


def unpublished_fallback_ids(store: Path) -> list[str]:
    """What a fresh process would load from the crypto store."""
    client = open_client(store)
    assert client.olm is not None
    return sorted(client.olm.account._account.fallback_key)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(tmp_path / "liaison.db")
    yield db
    await db.close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
async def client(store: Path) -> AsyncIterator[AsyncClient]:
    """The bot's client with a new device's crypto store in `store`."""
    opened = open_client(store)
    yield opened
    await opened.close()


class Uploads:
    """Stands in for the homeserver's keys/upload."""

    def __init__(self, store: Path, status: int = 200) -> None:
        self.store = store
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        self.on_disk_while_uploading: list[list[str]] = []

    async def __call__(self, client: AsyncClient, method: str, path: str,
                      body: dict[str, Any] | None = None, **_: Any) -> ApiResult:
        assert (method, path) == ("POST", "/_matrix/client/v3/keys/upload")
        assert body is not None
        self.bodies.append(body)
        self.on_disk_while_uploading.append(unpublished_fallback_ids(self.store))
        return ApiResult(self.status, {"one_time_key_counts": {}} if self.status == 200
                         else {"errcode": "M_UNKNOWN", "error": "no"})


async def test_the_fallback_key_is_signed_by_the_device_and_saved_before_it_is_published(
    store: Path, client: AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch,
) -> None:
    uploads = Uploads(store)
    monkeypatch.setattr(fallback_keys, "request_json", uploads)

    await fallback_keys.publish(client, database, FixedClock(1_000))

    (body,) = uploads.bodies
    assert list(body) == ["fallback_keys"]
    ((key_id, key),) = body["fallback_keys"].items()
    assert key_id.startswith("signed_curve25519:") and key["fallback"] is True
    signature = key["signatures"][USER][f"ed25519:{DEVICE}"]
    assert client.olm is not None
    device_key = client.olm.account.identity_keys["ed25519"]
    vodozemac.Ed25519PublicKey.from_base64(device_key).verify_signature(
        bytes(canonicaljson.encode_canonical_json({"key": key["key"], "fallback": True})),
        vodozemac.Ed25519Signature.from_base64(signature))
    # On disk, unpublished, while the upload was in flight; published once it succeeded.
    assert uploads.on_disk_while_uploading == [[key_id.split(":", 1)[1]]]
    assert unpublished_fallback_ids(store) == []
    async with database.read() as conn:
        assert await state.get_value(conn, fallback_keys.published_key(DEVICE)) == "1000"
        assert not await state.get_value(conn, fallback_keys.pending_key(DEVICE))


async def test_a_key_is_published_at_first_and_replaced_only_after_a_week(
    store: Path, client: AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch,
) -> None:
    uploads = Uploads(store)
    monkeypatch.setattr(fallback_keys, "request_json", uploads)
    clock = FixedClock(5 * DAY_MS)

    assert await fallback_keys.ensure_fresh(client, database, clock) is True
    clock.ms += WEEK_MS - 1
    assert await fallback_keys.ensure_fresh(client, database, clock) is False
    clock.ms += 1
    assert await fallback_keys.ensure_fresh(client, database, clock) is True

    first, second = (next(iter(b["fallback_keys"].values()))["key"] for b in uploads.bodies)
    assert first != second


def bot_curve_key(client: AsyncClient) -> vodozemac.Curve25519PublicKey:
    assert client.olm is not None
    return vodozemac.Curve25519PublicKey.from_base64(client.olm.account.identity_keys["curve25519"])


def published_key_of(body: dict[str, Any]) -> str:
    ((_, key),) = body["fallback_keys"].items()
    return str(key["key"])


async def test_failed_uploads_resend_the_same_key_and_never_lose_the_one_in_force(
    store: Path, client: AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """K1 is published; a week later the homeserver is away for three rotation attempts.
    vodozemac keeps only the current and the previous key, so generating a key per
    attempt would drop K1 while the homeserver still hands it out."""
    clock = FixedClock(1_000)
    ok = Uploads(store)
    monkeypatch.setattr(fallback_keys, "request_json", ok)
    await fallback_keys.ensure_fresh(client, database, clock)
    k1 = published_key_of(ok.bodies[0])

    clock.ms += WEEK_MS
    away = Uploads(store, status=502)
    monkeypatch.setattr(fallback_keys, "request_json", away)
    for _ in range(3):
        with pytest.raises(ApiError):
            await fallback_keys.ensure_fresh(client, database, clock)
    k2 = published_key_of(away.bodies[0])
    assert [published_key_of(b) for b in away.bodies] == [k2] * 3 and k2 != k1

    # A device that claimed K1 while the rotation kept failing still reaches the bot,
    # also after a restart (a fresh process loading the crypto store).
    sender = vodozemac.Account()
    session = sender.create_outbound_session(bot_curve_key(client),
                                             vodozemac.Curve25519PublicKey.from_base64(k1))
    message = session.encrypt(b"room key")
    restarted = open_client(store)
    assert restarted.olm is not None
    _, plaintext = restarted.olm.account._account.create_inbound_session(
        sender.curve25519_key, message.to_pre_key())
    assert plaintext == b"room key"

    monkeypatch.setattr(fallback_keys, "request_json", ok)
    assert await fallback_keys.ensure_fresh(restarted, database, clock) is True
    assert published_key_of(ok.bodies[-1]) == k2  # the pending key, not a third one
    assert await fallback_keys.ensure_fresh(restarted, database, clock) is False
    await restarted.close()


class Stop(BaseException):
    """Ends keep_fresh's loop from the patched sleep."""


async def test_keep_fresh_retries_a_homeserver_that_is_away_and_never_stops_the_bot(
    store: Path, client: AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = iter([502, 429, 200])
    bodies: list[dict[str, Any]] = []

    async def homeserver(client: AsyncClient, method: str, path: str,
                         body: dict[str, Any] | None = None, **_: Any) -> ApiResult:
        assert body is not None
        bodies.append(body)
        return ApiResult(next(answers), {})

    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 4:
            raise Stop

    monkeypatch.setattr(fallback_keys, "request_json", homeserver)
    monkeypatch.setattr(fallback_keys.asyncio, "sleep", sleep)
    with pytest.raises(Stop):
        await fallback_keys.keep_fresh(client, database, FixedClock(1_000))

    assert sleeps == [30.0, 60.0, 3600.0, 3600.0]  # retried sooner, then the hourly check
    assert len({published_key_of(b) for b in bodies}) == 1 and len(bodies) == 3


async def test_a_homeserver_that_refuses_fallback_keys_is_asked_again_a_day_later(
    store: Path, client: AsyncClient, database: Database, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fallback_keys, "request_json", Uploads(store, status=400))
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        raise Stop

    monkeypatch.setattr(fallback_keys.asyncio, "sleep", sleep)
    with pytest.raises(Stop):
        await fallback_keys.keep_fresh(client, database, FixedClock(1_000))
    assert sleeps == [24 * 3600.0]
    async with database.read() as conn:
        assert await state.get_value(conn, fallback_keys.published_key(DEVICE)) is None
