"""One device, forever: log in once, then restore that login on every start.

The first start logs in with the password (or adopts a configured access
token) and stores user id, device id and token in the data directory. Later
starts restore that device, check it with `whoami`, and refuse to start when
the crypto store and the device on the homeserver disagree, rather than
quietly becoming a new device that nobody's client trusts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import vodozemac
from nio import (
    AsyncClient,
    AsyncClientConfig,
    LoginResponse,
    WhoamiResponse,
)

from liaison.bot.crosssigning import query_identity
from liaison.bot.files import ensure_private_dir, write_private_file
from liaison.bot.megolm_compat import LiaisonClient

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "credentials.json"
CRYPTO_DIR = "crypto"


class StartupError(Exception):
    """Start-up cannot continue; the message tells the operator what to do."""


@dataclass(frozen=True)
class Credentials:
    homeserver: str
    user_id: str
    device_id: str
    access_token: str

    @classmethod
    def load(cls, path: Path) -> Credentials | None:
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: str(data[k]) for k in ("homeserver", "user_id", "device_id",
                                                      "access_token")})
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise StartupError(f"{path} is damaged ({exc}); restore it from a backup") from None

    def save(self, path: Path) -> None:
        write_private_file(path, json.dumps(asdict(self), indent=2))


@dataclass(frozen=True)
class SessionSettings:
    homeserver: str
    user_id: str
    device_name: str
    data_dir: Path
    pickle_key: str
    password: str | None
    access_token: str | None


def client_config(pickle_key: str) -> AsyncClientConfig:
    """nio settings: errors come back to Liaison, which owns retries and backoff."""
    return AsyncClientConfig(
        pickle_key=pickle_key,
        encryption_enabled=True,
        # The sync token lives in Liaison's database, saved after processing.
        store_sync_tokens=False,
        max_limit_exceeded=0,
        max_timeouts=0,
        request_timeout=60,
    )


def _new_client(
    settings: SessionSettings, user_id: str, device_id: str | None
) -> LiaisonClient:
    crypto_dir = settings.data_dir / CRYPTO_DIR
    ensure_private_dir(crypto_dir)
    config = client_config(settings.pickle_key)
    return LiaisonClient(
        settings.homeserver,
        user_id,
        device_id=device_id,
        store_path=str(crypto_dir),
        config=config,
    )


def _stores_on_disk(settings: SessionSettings, user_id: str) -> list[str]:
    """Device ids that already have a crypto store in the data directory."""
    crypto_dir = settings.data_dir / CRYPTO_DIR
    prefix = f"{user_id}_"
    if not crypto_dir.exists():
        return []
    return sorted(
        p.name[len(prefix):-len(".db")]
        for p in crypto_dir.glob("*.db")
        if p.name.startswith(prefix)
    )


async def _first_login(settings: SessionSettings) -> Credentials:
    existing = _stores_on_disk(settings, settings.user_id)
    if existing:
        raise StartupError(
            f"{settings.data_dir / CRYPTO_DIR} holds the crypto store of device "
            f"{', '.join(existing)} but {CREDENTIALS_FILE} is missing. Restore "
            f"{CREDENTIALS_FILE} from a backup; logging in again would create a new device "
            "that nobody's client trusts."
        )
    client = _new_client(settings, settings.user_id, None)
    try:
        if settings.access_token:
            client.access_token = settings.access_token
            who = await client.whoami()
            if not isinstance(who, WhoamiResponse):
                raise refused_or_unreachable(who, "the configured access token was not "
                                                   "accepted")
            if not who.device_id:
                raise StartupError(f"the configured access token names no device: {who}")
            return Credentials(settings.homeserver, who.user_id, who.device_id,
                               settings.access_token)
        if not settings.password:
            raise StartupError(
                "first start needs bot.password (or bot.access_token) to log in once; "
                "later starts reuse the stored device"
            )
        response = await client.login(settings.password, device_name=settings.device_name)
        if not isinstance(response, LoginResponse):
            raise refused_or_unreachable(response, f"login as {settings.user_id} failed")
        log.info("logged in; new device", extra={"device_id": response.device_id})
        return Credentials(settings.homeserver, response.user_id, response.device_id,
                           response.access_token)
    finally:
        await client.close()


def refused_or_unreachable(response: object, what: str) -> Exception:
    """Judge a failed request by its HTTP status. A 5xx (a proxy's 502 page while Synapse
    restarts), a 429 or no response at all is the homeserver not being there yet:
    ConnectionError, which `bot.app.retrying` waits out. Any other status is an answer —
    a wrong password, a deactivated account, a URL that is not a homeserver — and
    retrying would not change it: start-up stops."""
    transport = getattr(response, "transport_response", None)
    status = getattr(transport, "status", None)
    if isinstance(status, int) and 400 <= status < 500 and status != 429:
        return StartupError(f"{what}: HTTP {status} {response}")
    return ConnectionError(f"{what}: HTTP {status or 'no response'} {response}")


async def open_session(settings: SessionSettings) -> AsyncClient:
    """Return a logged-in client with its crypto store loaded, always the same device."""
    ensure_private_dir(settings.data_dir)
    path = settings.data_dir / CREDENTIALS_FILE
    credentials = Credentials.load(path)
    if credentials is None:
        credentials = await _first_login(settings)
        credentials.save(path)
    elif credentials.device_id not in _stores_on_disk(settings, credentials.user_id):
        raise StartupError(
            f"the crypto store of device {credentials.device_id} is missing from "
            f"{settings.data_dir / CRYPTO_DIR}. Without it the bot cannot read or send "
            "encrypted messages as that device. Restore the data directory from a backup; "
            "Liaison will not continue as a different device."
        )
    if credentials.user_id != settings.user_id:
        raise StartupError(
            f"{path} belongs to {credentials.user_id}, but the config says bot.user_id is "
            f"{settings.user_id}; use a separate data_dir for each bot account"
        )
    others = [d for d in _stores_on_disk(settings, credentials.user_id)
              if d != credentials.device_id]
    if others:
        log.warning("crypto stores of other devices in the data directory are ignored",
                    extra={"devices": others})
    client = _new_client(settings, credentials.user_id, credentials.device_id)
    try:
        client.restore_login(credentials.user_id, credentials.device_id,
                             credentials.access_token)
    except (vodozemac.PickleException, vodozemac.LibolmPickleException) as exc:
        await client.close()
        raise StartupError(
            f"the crypto store of device {credentials.device_id} cannot be opened with the "
            "configured bot.pickle_key (was it changed?). Put back the pickle key the store "
            "was written with; the store cannot be read without it."
        ) from exc
    try:
        await _check_device(client, credentials)
    except BaseException:
        await client.close()
        raise
    return client


async def _check_device(client: AsyncClient, credentials: Credentials) -> None:
    who = await client.whoami()
    if not isinstance(who, WhoamiResponse):
        if getattr(who, "status_code", "") == "M_UNKNOWN_TOKEN":
            raise StartupError(
                f"the homeserver no longer accepts the bot's access token (device "
                f"{credentials.device_id} was logged out or deleted). Its keys are gone with "
                f"it. Move {CREDENTIALS_FILE} and {CRYPTO_DIR}/ aside (keep "
                "cross-signing.json and the database) and start again: the bot logs "
                "in as a new device and signs it with its existing identity."
            )
        raise refused_or_unreachable(who, "whoami failed")
    if who.user_id != credentials.user_id or (
        who.device_id and who.device_id != credentials.device_id
    ):
        raise StartupError(
            f"the stored token belongs to {who.user_id} device {who.device_id}, not "
            f"{credentials.user_id} device {credentials.device_id}"
        )
    assert client.olm is not None
    local_ed25519 = client.olm.account.identity_keys["ed25519"]
    published = await query_identity(client, credentials.user_id, credentials.device_id)
    if published.device is None:
        return
    server_ed25519 = published.device.get("keys", {}).get(f"ed25519:{credentials.device_id}")
    if server_ed25519 != local_ed25519:
        raise StartupError(
            f"the crypto store in the data directory does not match device "
            f"{credentials.device_id} on the homeserver (device key {server_ed25519}, store "
            f"key {local_ed25519}). The store was replaced or lost. Restore the data "
            "directory from a backup; Liaison will not continue as a different device."
        )
