"""The floor Liaison is measured against: a minimal relay written with matrix-nio.

It decrypts each text message posted in a source room and copies its body into
the target rooms, and does nothing else: no parsing, no database, no outbox, no
chasing. Each target room gets its own send queue, so messages to one room keep
their order (as Liaison's outbox does) while rooms are served concurrently.

Run as its own process, like the bot: `python -m bench.minirelay CONFIG.json`,
where the JSON names the homeserver, the account, a store directory, the routes
(source room id -> target room ids) and a file to create once it is serving.
`MiniRelay` starts and stops that process for the scenarios.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from nio import AsyncClient, AsyncClientConfig, LoginResponse, RoomMessageText, SyncResponse

log = logging.getLogger("minirelay")

RELAY_KEY = "org.liaison.bench.relay"
SYNC_FILTER = {
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
    "room": {"ephemeral": {"not_types": ["*"]}, "timeline": {"limit": 100},
             "account_data": {"not_types": ["*"]}},
}


class Relay:
    """Copies every decrypted text message from a source room into its target rooms."""

    def __init__(self, client: AsyncClient, routes: dict[str, list[str]], *,
                 answer: bool = False) -> None:
        self._client = client
        self._routes = routes
        self._answer = answer
        """Also answer every message in its source room, as Liaison does (an experiment:
        what the third message per alert costs, `--minirelay-answers`)."""
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self.relayed = 0

    def _queue(self, room_id: str) -> asyncio.Queue[dict[str, Any]]:
        queue = self._queues.get(room_id)
        if queue is None:
            queue = self._queues[room_id] = asyncio.Queue()
            self._workers.append(asyncio.create_task(self._drain(room_id, queue)))
        return queue

    def on_sync(self, response: SyncResponse) -> None:
        for room_id, info in response.rooms.join.items():
            targets = self._routes.get(room_id)
            if not targets:
                continue
            for event in info.timeline.events:
                if not isinstance(event, RoomMessageText) or event.sender == self._client.user_id:
                    continue
                content = {"msgtype": "m.notice", "body": event.body,
                           RELAY_KEY: {"room": room_id, "event_id": event.event_id}}
                for target in targets:
                    self._queue(target).put_nowait(content)
                if self._answer:
                    self._queue(room_id).put_nowait({
                        "msgtype": "m.notice", "body": f"relayed to {len(targets)} rooms",
                        "m.relates_to": {"m.in_reply_to": {"event_id": event.event_id}}})

    async def _drain(self, room_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            content = await queue.get()
            for attempt in range(10):
                response = await self._client.room_send(
                    room_id, "m.room.message", content, ignore_unverified_devices=True)
                if hasattr(response, "event_id"):
                    self.relayed += 1
                    break
                log.warning("send failed (%s), attempt %d", response, attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker


async def _maintain_keys(client: AsyncClient) -> None:
    if client.outgoing_to_device_messages:
        await client.send_to_device_messages()
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())


async def serve(config: dict[str, Any]) -> None:
    store = Path(config["store"])
    store.mkdir(parents=True, exist_ok=True)
    client = AsyncClient(config["homeserver"], config["user_id"], store_path=str(store),
                         config=AsyncClientConfig(store_sync_tokens=False,
                                                  encryption_enabled=True))
    relay = Relay(client, {room: list(targets) for room, targets in config["routes"].items()},
                  answer=bool(config.get("answer")))
    try:
        login = await client.login(config["password"], device_name="minirelay")
        if not isinstance(login, LoginResponse):
            raise RuntimeError(f"login failed: {login}")
        rooms = set(config["routes"]) | {t for ts in config["routes"].values() for t in ts}
        for room_id in sorted(rooms):
            await client.join(room_id)
        # The backlog of the first sync is history, not work: skip it, as a bot would.
        first = await client.sync(timeout=0, full_state=True, sync_filter=SYNC_FILTER)
        if not isinstance(first, SyncResponse):
            raise RuntimeError(f"first sync failed: {first}")
        await _maintain_keys(client)
        Path(config["ready_file"]).write_text(f"{client.user_id} {client.device_id}\n")
        while True:
            response = await client.sync(timeout=5000, sync_filter=SYNC_FILTER)
            if isinstance(response, SyncResponse):
                relay.on_sync(response)
            await _maintain_keys(client)
    finally:
        await relay.close()
        await client.close()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = json.loads(Path(sys.argv[1]).read_text())

    async def run() -> None:
        task = asyncio.create_task(serve(config))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())


class MiniRelay:
    """The minimal relay as a child process, started and stopped like `BotProcess`."""

    def __init__(self, workdir: Path, *, homeserver: str, user_id: str, password: str,
                 routes: dict[str, list[str]], answer: bool = False) -> None:
        self.workdir = workdir
        self.user_id = user_id
        self._config: dict[str, Any] = {
            "homeserver": homeserver, "user_id": user_id, "password": password,
            "store": str(workdir / "store"), "routes": routes,
            "ready_file": str(workdir / "ready"), "answer": answer}
        self._process: asyncio.subprocess.Process | None = None
        self._log: Any = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "config.json"
        config_path.write_text(json.dumps(self._config))
        ready = Path(self._config["ready_file"])
        ready.unlink(missing_ok=True)
        self._log = open(self.workdir / "minirelay.log", "ab")  # noqa: ASYNC230 - closed in stop
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.minirelay", str(config_path),
            stdout=self._log, stderr=self._log, env=dict(os.environ))
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self._process.returncode is not None:
                raise RuntimeError(f"minirelay exited with {self._process.returncode}; "
                                   f"see {self.workdir / 'minirelay.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError("minirelay not ready")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


if __name__ == "__main__":
    main()
