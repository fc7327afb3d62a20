"""The bot as a real process (`python -m liaison.bot run`), for the demo, e2e tests and benchmarks.

Running it as a separate process is what lets a test stop it, SIGKILL it in
the middle of work and start it again on the same data directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from devkit.synapse import LocalSynapse

PASSWORD_ENV = "LIAISON_BOT_PASSWORD"
PICKLE_KEY_ENV = "LIAISON_PICKLE_KEY"


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class BotProcess:
    def __init__(
        self,
        workdir: Path,
        synapse: LocalSynapse,
        *,
        localpart: str,
        password: str,
        config: dict[str, Any] | None = None,
        pickle_key: str = "demo-pickle-key-not-for-production",
    ) -> None:
        self.workdir = workdir.resolve()
        self.synapse = synapse
        self.user_id = f"@{localpart}:{synapse.server_name}"
        self.password = password
        self.pickle_key = pickle_key
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "config.yaml"
        self.log_path = self.workdir / "bot.log"
        self._extra = config or {}
        self._process: asyncio.subprocess.Process | None = None
        self._log_file: Any = None

    def config_dict(self) -> dict[str, Any]:
        base: dict[str, Any] = {
            "homeserver": {"url": self.synapse.url},
            "bot": {
                "user_id": self.user_id,
                "device_name": "Liaison",
                "password": {"env": PASSWORD_ENV},
                "pickle_key": {"env": PICKLE_KEY_ENV},
            },
            "data_dir": str(self.data_dir),
            "access": {"allowed_inviters": {"users": [], "servers": [self.synapse.server_name]}},
            "trust": {"policy": "tofu"},
            "logging": {"level": "INFO", "format": "json"},
            "sync": {"timeout": "5s", "backoff_max": "2s"},
            "decryption": {"grace_period": "3s"},
            "outbox": {"backoff_max": "2s"},
        }
        return deep_merge(base, self._extra)

    def reconfigure(self, extra: dict[str, Any]) -> None:
        """Merge `extra` into the configuration; the next `start()` runs with it."""
        self._extra = deep_merge(self._extra, extra)

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # JSON is YAML; the bot reads it with its YAML loader like any operator's file.
        self.config_path.write_text(json.dumps(self.config_dict(), indent=2), encoding="utf-8")

    @property
    def ready_file(self) -> Path:
        return self.data_dir / "ready"

    @property
    def device_id(self) -> str | None:
        credentials = self.data_dir / "credentials.json"
        if not credentials.exists():
            return None
        return str(json.loads(credentials.read_text())["device_id"])

    @property
    def pid(self) -> int | None:
        """The running process's id (a test checks that the bot was not restarted)."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self, *, wait_ready: bool = True, timeout: float = 60.0) -> None:
        self.write_config()
        self.ready_file.unlink(missing_ok=True)
        env = dict(os.environ, **{PASSWORD_ENV: self.password, PICKLE_KEY_ENV: self.pickle_key})
        self._log_file = open(self.log_path, "ab")  # noqa: ASYNC230 - closed in _reap
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "liaison.bot", "run", "-c", str(self.config_path),
            stdout=self._log_file, stderr=self._log_file, env=env,
        )
        if wait_ready:
            await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self._process is not None and self._process.returncode is not None:
                code = self._process.returncode
                raise RuntimeError(f"bot exited with {code}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"bot not ready after {timeout}s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, as an operator's service manager would; SIGKILL if it hangs."""
        if not self.running:
            return self._reap()
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._process.wait(), timeout)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
        return self._reap()

    async def kill(self) -> None:
        """SIGKILL: the bot dies wherever it is, as in a power cut."""
        if self.running:
            assert self._process is not None
            self._process.kill()
            await self._process.wait()
        self._reap()

    async def wait_exit(self, timeout: float = 30.0) -> int:
        assert self._process is not None
        code = await asyncio.wait_for(self._process.wait(), timeout)
        self._reap()
        return code

    def _reap(self) -> int | None:
        code = self._process.returncode if self._process else None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_records(self) -> list[dict[str, Any]]:
        """The bot's JSON log lines, parsed (lines that are not JSON are skipped)."""
        records = []
        if self.log_path.exists():
            for line in self.log_path.read_text(errors="replace").splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records
