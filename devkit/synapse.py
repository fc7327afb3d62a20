"""A real Synapse homeserver on loopback, owned by one Python object.

The e2e tests, the demo and the benchmarks all need a homeserver that behaves
exactly like production (real federation-free Synapse, real E2EE plumbing) but
starts in about a second, never touches the network beyond 127.0.0.1 and
never rate-limits a burst of test traffic. `LocalSynapse` writes such a
configuration into a work directory, runs Synapse as a child process and
registers users through the shared-secret admin API.

The configuration files are written as JSON, which is valid YAML: Synapse
reads them unchanged and we can read them back (port, shared secret) without a
YAML dependency, so a second `LocalSynapse` on the same directory resumes the
same server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

import aiohttp

log = logging.getLogger(__name__)

CONFIG_FILE = "homeserver.yaml"
LOG_CONFIG_FILE = "log.config.yaml"
LOG_FILE = "homeserver.log"
PROCESS_OUTPUT_FILE = "synapse.out"
HEALTH_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
HEALTH_POLL_S = 0.05
LOG_TAIL_LINES = 40
PORT_ATTEMPTS = 3
PORT_TAKEN = "Address already in use"
"""What Synapse's log says when a listener's port was taken before it could bind it."""

# Generous enough that no test, demo or benchmark burst is ever throttled.
_UNLIMITED = {"per_second": 1000, "burst_count": 1000}


@dataclass(frozen=True)
class FederationTls:
    """Files for a federation listener: the private CA every server of a pair trusts, and
    the certificate (for the loopback addresses, signed by that CA) each one presents.
    Made by `devkit.federation.federation_tls`."""

    ca_path: Path
    cert_path: Path
    key_path: Path


class SynapseError(RuntimeError):
    """Synapse could not be found, started or stopped."""


class SynapseAdminError(RuntimeError):
    """An admin or client API call was refused; `errcode` is Matrix's, e.g. M_USER_IN_USE."""

    def __init__(self, method: str, path: str, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.errcode = str(body.get("errcode", ""))
        self.error = str(body.get("error", body))
        super().__init__(f"{method} {path} -> HTTP {status} {self.errcode}: {self.error}")


def repo_root() -> Path:
    """The checkout this module lives in: the default home of `.venv-synapse`."""
    return Path(__file__).resolve().parent.parent


def default_synapse_python() -> str:
    """The Synapse virtualenv's interpreter: $LIAISON_SYNAPSE_PYTHON or <repo>/.venv-synapse."""
    from_env = os.environ.get("LIAISON_SYNAPSE_PYTHON")
    if from_env:
        return from_env
    return str(repo_root() / ".venv-synapse" / "bin" / "python")


def free_port() -> int:
    """A TCP port that was free a moment ago (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def registration_mac(secret: str, nonce: str, user: str, password: str, admin: bool) -> str:
    """HMAC-SHA1 that proves to Synapse we hold `registration_shared_secret`."""
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    for part in (nonce, user, password):
        mac.update(part.encode())
        mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    return mac.hexdigest()


def homeserver_config(workdir: Path, port: int, server_name: str,
                      database: dict[str, Any] | None = None) -> dict[str, Any]:
    """A loopback-only, federation-free, never-throttling Synapse configuration; on SQLite
    in `workdir` unless `database` gives another (Synapse's `database` section)."""
    config: dict[str, Any] = {
        "server_name": server_name,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(workdir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": database or {"name": "sqlite3",
                                  "args": {"database": str(workdir / "homeserver.db")}},
        "log_config": str(workdir / LOG_CONFIG_FILE),
        "media_store_path": str(workdir / "media"),
        "signing_key_path": str(workdir / f"{server_name}.signing.key"),
        "registration_shared_secret": secrets.token_hex(32),
        "macaroon_secret_key": secrets.token_hex(32),
        "form_secret": secrets.token_hex(32),
        "enable_registration": False,
        "report_stats": False,
        "enable_metrics": False,
        "bcrypt_rounds": 4,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "presence": {"enabled": False},
        "max_upload_size": "50M",
        "url_preview_enabled": False,
        **relaxed_rate_limits(),
    }
    return config


def federating_config(workdir: Path, port: int, federation_port: int,
                      tls: FederationTls) -> dict[str, Any]:
    """As `homeserver_config`, plus a TLS federation listener on `federation_port` that
    names the server: `127.0.0.1:<federation_port>` (see `devkit.federation`)."""
    config = homeserver_config(workdir, port, f"127.0.0.1:{federation_port}")
    config["listeners"].append({
        "port": federation_port,
        "bind_addresses": ["127.0.0.1"],
        "type": "http",
        "tls": True,
        "x_forwarded": False,
        "resources": [{"names": ["federation"], "compress": False}],
    })
    del config["federation_domain_whitelist"]  # any server that can reach us: the pair
    config.update({
        "tls_certificate_path": str(tls.cert_path),
        "tls_private_key_path": str(tls.key_path),
        "federation_custom_ca_list": [str(tls.ca_path)],
        "federation_verify_certificates": True,
        # For IP-literal server names Synapse checks this list without the allowlist; its
        # default blocks 127.0.0.0/8, the only place the pair lives.
        "federation_ip_range_blacklist": [],
    })
    return config


def relaxed_rate_limits() -> dict[str, Any]:
    """Every client-facing rate limit Synapse 1.163 knows, lifted far out of reach."""
    limits: dict[str, Any] = {
        name: dict(_UNLIMITED)
        for name in (
            "rc_message",
            "rc_registration",
            "rc_registration_token_validity",
            "rc_joins_per_room",
            "rc_room_creation",
            "rc_key_requests",
            "rc_3pid_validation",
            "rc_admin_redaction",
            "rc_third_party_invite",
            "rc_media_create",
            "rc_delayed_event_mgmt",
            "rc_reports",
            "rc_user_directory",
            "rc_profile",
        )
    }
    limits["rc_login"] = {k: dict(_UNLIMITED) for k in ("address", "account", "failed_attempts")}
    limits["rc_joins"] = {k: dict(_UNLIMITED) for k in ("local", "remote")}
    limits["rc_invites"] = {k: dict(_UNLIMITED) for k in ("per_room", "per_user", "per_issuer")}
    limits["rc_presence"] = {"per_user": dict(_UNLIMITED)}
    # Federation limits have their own shape (used by a federating pair).
    limits["rc_federation"] = {
        "window_size": 1000,
        "sleep_limit": 1000,
        "sleep_delay": 1,
        "reject_limit": 1000,
        "concurrent": 100,
    }
    return limits


def log_config(log_file: Path) -> dict[str, Any]:
    """Python logging for Synapse: INFO to a file, access and SQL noise muted, no terminal."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "precise": {
                "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s"
                " - %(request)s - %(message)s"
            }
        },
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": str(log_file),
                "encoding": "utf8",
            }
        },
        "loggers": {
            "synapse.access": {"level": "WARNING"},
            "synapse.storage.SQL": {"level": "WARNING"},
            "twisted": {"level": "WARNING"},
        },
        "root": {"level": "INFO", "handlers": ["file"]},
    }


def write_signing_key(path: Path) -> None:
    """Write a fresh Ed25519 signing key in Synapse's format, unless one exists.

    Same format as `synapse.app.homeserver --generate-keys` writes
    (`ed25519 a_<id> <unpadded base64 seed>`), but without a second Python
    start-up that costs ~1.4 s of a ~2.8 s fresh start.
    """
    if path.exists():
        return
    seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    path.write_text(f"ed25519 a_{secrets.token_hex(2)} {seed}\n")
    path.chmod(0o600)


def _json_or_text(text: str) -> dict[str, Any]:
    """A response body as a JSON object; a proxy's HTML error page becomes {"error": text}."""
    try:
        payload = json.loads(text) if text else {}
    except ValueError:
        return {"error": text[:500]}
    return payload if isinstance(payload, dict) else {"value": payload}


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, or a note that it does not exist."""
    if not path.exists():
        return f"({path.name} does not exist)"
    text = path.read_text(encoding="utf8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


class LocalSynapse:
    """A Synapse on 127.0.0.1 whose files live in `workdir`.

    `start()` after `stop()` resumes the same server (same port, same SQLite
    database), so tests can prove the bot survives a homeserver restart. `database`
    (Synapse's `database` section) puts it on another database, e.g. the benchmarks'
    PostgreSQL cluster.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        python: str | None = None,
        port: int | None = None,
        server_name: str = "localhost",
        federation: FederationTls | None = None,
        database: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.python = python or default_synapse_python()
        if not Path(self.python).is_file():
            raise SynapseError(
                f"Synapse interpreter {self.python} not found; run `make setup` "
                "(or point LIAISON_SYNAPSE_PYTHON at a Python with matrix-synapse installed)"
            )
        self.server_name = server_name
        self._federation = federation
        self._database = database
        self._ports_chosen_here = port is None and not self.config_path.exists()
        """Until the first start, ports that turn out to be taken may be picked again."""
        self._config = self._load_or_create_config(port)
        self.port: int = int(self._config["listeners"][0]["port"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.last_start_seconds: float | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._output: IO[bytes] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._admin_token: str | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / CONFIG_FILE

    @property
    def log_path(self) -> Path:
        return self.workdir / LOG_FILE

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def _load_or_create_config(self, port: int | None) -> dict[str, Any]:
        """Reuse an existing configuration (so restarts keep port and secret) or write one."""
        if self.config_path.exists():
            config: dict[str, Any] = json.loads(self.config_path.read_text())
            existing = int(config["listeners"][0]["port"])
            if port is not None and port != existing:
                raise SynapseError(f"{self.config_path} already uses port {existing}, not {port}")
            self.server_name = str(config["server_name"])
            return config
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._federation is None:
            config = homeserver_config(self.workdir, port or free_port(), self.server_name,
                                       self._database)
        else:
            config = federating_config(self.workdir, port or free_port(), free_port(),
                                       self._federation)
            self.server_name = str(config["server_name"])
        (self.workdir / LOG_CONFIG_FILE).write_text(json.dumps(log_config(self.log_path), indent=2))
        self.config_path.write_text(json.dumps(config, indent=2))
        self.config_path.chmod(0o600)
        return config

    async def start(self) -> None:
        """Run Synapse and return once /health answers OK; the first start also writes its key.

        A port is picked free (`free_port`) a moment before Synapse binds it, so another
        process (a parallel test worker's server, an outgoing connection) may take it in
        between: before the server's first successful start, such a start is tried again
        on new ports. After that the ports stay, so that restarts resume the same server."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                await self._start()
                self._ports_chosen_here = False
                return
            except SynapseError as error:
                if not self._ports_chosen_here or attempt == PORT_ATTEMPTS \
                        or PORT_TAKEN not in str(error):
                    raise
                log.warning("Synapse's port was taken (attempt %d); picking new ports", attempt)
                self.config_path.unlink()
                self._config = self._load_or_create_config(None)
                self.port = int(self._config["listeners"][0]["port"])
                self.url = f"http://127.0.0.1:{self.port}"

    async def _start(self) -> None:
        if self.running:
            return
        await self.stop()  # reap a server that died on its own, close its output file
        started = time.monotonic()
        write_signing_key(Path(self._config["signing_key_path"]))
        self._output = (self.workdir / PROCESS_OUTPUT_FILE).open("ab")
        self._process = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "synapse.app.homeserver",
            "-c",
            str(self.config_path),
            cwd=self.workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._output,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await self._wait_healthy()
        except BaseException:
            await self.stop()
            raise
        self.last_start_seconds = time.monotonic() - started
        log.info("Synapse up at %s in %.2fs", self.url, self.last_start_seconds)

    async def _wait_healthy(self) -> None:
        """Poll GET /health until OK; fail fast if the process dies, with the log tail."""
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.running:
                raise SynapseError(self._failure_report("Synapse exited during start-up"))
            if await self._health_ok():
                return
            await asyncio.sleep(HEALTH_POLL_S)
        raise SynapseError(self._failure_report(f"Synapse not healthy after {HEALTH_TIMEOUT_S}s"))

    async def _health_ok(self) -> bool:
        try:
            async with self._session().get(
                f"{self.url}/health", timeout=aiohttp.ClientTimeout(total=2)
            ) as resp:
                return resp.status == 200 and (await resp.text()).strip() == "OK"
        except (aiohttp.ClientError, TimeoutError):
            return False

    def _failure_report(self, headline: str) -> str:
        return (
            f"{headline} ({self.url}, workdir {self.workdir}).\n"
            f"--- {LOG_FILE} ---\n{tail(self.log_path)}\n"
            f"--- {PROCESS_OUTPUT_FILE} ---\n{tail(self.workdir / PROCESS_OUTPUT_FILE)}"
        )

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; files stay so start() resumes."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_S)
            except TimeoutError:
                log.warning("Synapse ignored SIGTERM for %ss; killing it", STOP_GRACE_S)
                process.kill()
                await process.wait()
        if self._output is not None:
            self._output.close()
            self._output = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def __aenter__(self) -> LocalSynapse:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _session(self) -> aiohttp.ClientSession:
        """One HTTP session per running server; created lazily inside the event loop."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> dict[str, Any]:
        """A JSON call to the homeserver; raises SynapseAdminError on any HTTP error."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self._session().request(
            method, f"{self.url}{path}", json=body, headers=headers
        ) as resp:
            payload = _json_or_text(await resp.text())
            if resp.status >= 400:
                raise SynapseAdminError(method, path, resp.status, payload)
            return payload

    async def register(
        self,
        localpart: str,
        password: str,
        *,
        admin: bool = False,
        displayname: str | None = None,
    ) -> str:
        """Create a user through the shared secret and lift its rate limits; returns the user id."""
        registered = await self._shared_secret_register(localpart, password, admin, displayname)
        user_id = str(registered["user_id"])
        await self.request(
            "POST",
            f"/_synapse/admin/v1/users/{user_id}/override_ratelimit",
            {"messages_per_second": 0, "burst_count": 0},
            token=await self._admin(),
        )
        return user_id

    async def override_message_rate(self, user_id: str, *, per_second: int, burst: int) -> None:
        """Set `user_id`'s own message rate limit (0 and 0: none, as `register` leaves it);
        a test slows the bot down with it so its messages queue up."""
        await self.request(
            "POST",
            f"/_synapse/admin/v1/users/{user_id}/override_ratelimit",
            {"messages_per_second": per_second, "burst_count": burst},
            token=await self._admin(),
        )

    async def joined_rooms(self, user_id: str) -> set[str]:
        """The rooms a local user is joined to, as the server admin sees them (a test checks
        that the bot left nothing behind without logging in as the bot)."""
        answer = await self.request(
            "GET", f"/_synapse/admin/v1/users/{quote(user_id, safe='')}/joined_rooms",
            token=await self._admin())
        return {str(room_id) for room_id in answer.get("joined_rooms", [])}

    async def _shared_secret_register(
        self, localpart: str, password: str, admin: bool, displayname: str | None
    ) -> dict[str, Any]:
        path = "/_synapse/admin/v1/register"
        nonce = str((await self.request("GET", path))["nonce"])
        secret = str(self._config["registration_shared_secret"])
        body: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": registration_mac(secret, nonce, localpart, password, admin),
        }
        if displayname is not None:
            body["displayname"] = displayname
        return await self.request("POST", path, body)

    async def _admin(self) -> str:
        """An admin access token, from a server admin registered on first need.

        A fresh random admin per `LocalSynapse` object keeps no secrets on disk
        beyond Synapse's own config and never collides with an earlier run.
        """
        if self._admin_token is None:
            localpart = f"devkit-admin-{secrets.token_hex(4)}"
            registered = await self._shared_secret_register(
                localpart, secrets.token_urlsafe(16), True, None
            )
            self._admin_token = str(registered["access_token"])
        return self._admin_token
