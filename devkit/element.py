"""An officer on Element's own crypto stack, for interoperability tests.

Element Web and Desktop encrypt with matrix-js-sdk and its Rust crypto
(matrix-sdk-crypto compiled to WebAssembly), not with anything Python has. This
runs that stack in Node (`devkit/element/officer.mjs`; `make test` installs it
with `npm ci`) and drives it over JSON lines, so a test can log an officer in the
way Element does (cross-signing bootstrapped at first login), pick either of
Element's device-isolation modes, and read what that client decrypted and which
shield it would draw.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from devkit.synapse import LocalSynapse, SynapseAdminError

ELEMENT_DIR = Path(__file__).resolve().parent / "element"
DRIVER = ELEMENT_DIR / "officer.mjs"
REQUEST_TIMEOUT_S = 60.0
POLL_S = 0.1

Isolation = Literal["all", "signed"]


class ElementError(RuntimeError):
    """The Element officer refused or failed an operation (its message says which)."""


MIN_NODE = 20
"""matrix-js-sdk 43 asks for Node 22; on 20 it runs with one shim (see officer.mjs)."""


def node_available() -> str | None:
    """Why the Element officer cannot run here, or None when it can."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed (make test installs Debian's nodejs when npm is missing)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    major = version.lstrip("v").split(".", 1)[0]
    if not major.isdigit() or int(major) < MIN_NODE:
        return f"node {version or '(unknown version)'} is too old: matrix-js-sdk needs {MIN_NODE}+"
    if not (ELEMENT_DIR / "node_modules" / "matrix-js-sdk").is_dir():
        return f"matrix-js-sdk is not installed: run `npm ci` in {ELEMENT_DIR} (make test does)"
    return None


@dataclass(frozen=True)
class ElementMessage:
    """A timeline event as the Element officer's client has it."""

    room_id: str
    event_id: str
    sender: str
    type: str
    content: dict[str, Any]
    encrypted: bool
    decryption_failure: bool
    shield_colour: str | None
    shield_reason: str | None
    decryption_failure_reason: str | None = None
    """matrix-js-sdk's DecryptionFailureCode when undecrypted, e.g.
    `MEGOLM_KEY_WITHHELD_FOR_UNVERIFIED_DEVICE` (what Element words for its user)."""
    push: dict[str, Any] | None = None
    """matrix-js-sdk's PushProcessor verdict on the decrypted event: `{notify, highlight,
    sound}` (Element's notification, as its push rules decide it)."""

    @property
    def body(self) -> str | None:
        body = self.content.get("body")
        return body if isinstance(body, str) else None

    def describe(self) -> str:
        state = "UNDECRYPTED" if self.decryption_failure else (self.body or "")[:120]
        return f"{self.sender} {self.type} {self.event_id}: {state!r} shield={self.shield_colour}"

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> ElementMessage:
        return cls(
            room_id=str(entry["room_id"]),
            event_id=str(entry.get("event_id") or ""),
            sender=str(entry.get("sender") or ""),
            type=str(entry.get("type") or ""),
            content=dict(entry.get("content") or {}),
            encrypted=bool(entry.get("encrypted")),
            decryption_failure=bool(entry.get("decryption_failure")),
            shield_colour=entry.get("shield_colour"),
            shield_reason=entry.get("shield_reason"),
            decryption_failure_reason=entry.get("decryption_failure_reason"),
            push=entry.get("push"),
        )


class ElementOfficer:
    """One Element session (matrix-js-sdk + Rust crypto) in a Node process."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self._process = process
        self.log_path = log_path
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read(), name="element officer")
        self.user_id = ""
        self.device_id = ""
        self.cross_signed = False

    @classmethod
    async def create(
        cls,
        synapse: LocalSynapse,
        localpart: str,
        workdir: Path,
        *,
        isolation: Isolation,
        cross_sign: bool = True,
    ) -> ElementOfficer:
        """Register the account, start Node, log in as Element does and sync once;
        `cross_sign=False`: a further session of the account that was never verified
        (Element's "unverified session"), its device not signed."""
        reason = node_available()
        if reason is not None:
            raise ElementError(reason)
        password = f"element-{localpart}"
        with contextlib.suppress(SynapseAdminError):
            await synapse.register(localpart, password)
        workdir.mkdir(parents=True, exist_ok=True)
        log_path = workdir / f"element-{localpart}{'' if cross_sign else '-unverified'}.log"
        log_file = log_path.open("wb")
        try:
            process = await asyncio.create_subprocess_exec(
                shutil.which("node") or "node", str(DRIVER),
                cwd=ELEMENT_DIR,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                env={**os.environ, "NODE_NO_WARNINGS": "1"},
                limit=16 * 1024 * 1024,
            )
        finally:
            log_file.close()
        officer = cls(process, log_path)
        try:
            session = await officer.call(
                "login", base_url=synapse.url, user=localpart, password=password,
                isolation=isolation, device_name=f"Element {localpart}",
                cross_sign=cross_sign,
            )
        except BaseException:
            await officer.stop()
            raise
        officer.user_id = str(session["user_id"])
        officer.device_id = str(session["device_id"])
        officer.cross_signed = bool(session["cross_signed"])
        return officer

    async def _read(self) -> None:
        assert self._process.stdout is not None
        while line := await self._process.stdout.readline():
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            future = self._pending.pop(answer.get("id"), None)
            if future is not None and not future.done():
                future.set_result(answer)
        exited = ElementError(f"the Element officer exited; see {self.log_path}")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exited)
        self._pending.clear()

    async def call(self, op: str, *, timeout: float | None = None,
                   **arguments: Any) -> dict[str, Any]:
        """One operation of officer.mjs (answered within `timeout`, default 60 s);
        ElementError with its message when it fails."""
        if self._reader.done():
            raise ElementError(f"the Element officer is not running; see {self.log_path}")
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"id": request_id, "op": op, **arguments}).encode()
                                  + b"\n")
        await self._process.stdin.drain()
        try:
            answer = await asyncio.wait_for(future, timeout or REQUEST_TIMEOUT_S)
        finally:
            self._pending.pop(request_id, None)
        if not answer.get("ok"):
            raise ElementError(f"{op}: {answer.get('error')}")
        return answer

    async def create_room(self, name: str) -> str:
        """A private, encrypted room with shared history, as Element creates one."""
        return str((await self.call("create_room", name=name))["room_id"])

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.call("invite", room_id=room_id, user_id=user_id)

    async def accept_invite(self, *, timeout: float = 30.0) -> str:
        """Wait for an invite (such as the direct message the bot opens for escalations),
        join it and return the room id."""
        answer = await self.call("accept_invite", timeout_ms=int(timeout * 1000),
                                 timeout=timeout + REQUEST_TIMEOUT_S)
        return str(answer["room_id"])

    async def send_text(self, room_id: str, body: str, *, reply_to: str | None = None,
                        thread_root: str | None = None) -> str:
        """m.text as Element sends it: a reply carries m.in_reply_to, a thread message
        m.thread with the reply fallback to the thread root."""
        content: dict[str, Any] = {"msgtype": "m.text", "body": body}
        if thread_root is not None:
            content["m.relates_to"] = {
                "rel_type": "m.thread", "event_id": thread_root, "is_falling_back": True,
                "m.in_reply_to": {"event_id": reply_to or thread_root},
            }
        elif reply_to is not None:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return str((await self.call("send", room_id=room_id, content=content))["event_id"])

    async def send_file(self, room_id: str, data: bytes, *, name: str, mimetype: str,
                        msgtype: str = "m.file", thread_root: str | None = None,
                        size: tuple[int, int] | None = None) -> str:
        """A photo or file as Element sends it: encrypted with matrix-encrypt-attachment,
        uploaded, and announced with the name as body and no `filename`; `size` is the
        picture's width and height, which Element sends with every m.image."""
        width, height = size or (None, None)
        answer = await self.call("send_file", room_id=room_id,
                                 data_b64=base64.b64encode(data).decode(), mimetype=mimetype,
                                 name=name, msgtype=msgtype, thread_root=thread_root,
                                 width=width, height=height)
        return str(answer["event_id"])

    async def download_file(self, message: ElementMessage) -> bytes:
        """The decrypted bytes of an encrypted attachment, fetched and checked as Element
        does (ElementError when the hash does not match or the download fails)."""
        answer = await self.call("download_file", file=message.content["file"])
        return base64.b64decode(answer["data_b64"])

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        return str((await self.call("react", room_id=room_id, event_id=event_id,
                                    key=key))["event_id"])

    async def messages(self, room_id: str | None = None) -> list[ElementMessage]:
        answer = await self.call("messages", room_id=room_id)
        return [ElementMessage.from_json(entry) for entry in answer["messages"]]

    async def read_receipt(self, room_id: str, user_id: str) -> dict[str, str | None]:
        """The m.read receipt Element holds for `user_id` in the room's main timeline:
        `{event_id, thread_id}` (None when it has none)."""
        answer = await self.call("read_receipt", room_id=room_id, user_id=user_id)
        return {"event_id": answer.get("event_id"), "thread_id": answer.get("thread_id")}

    async def device_status(self, user_id: str, device_id: str) -> dict[str, bool]:
        answer = await self.call("device_status", user_id=user_id, device_id=device_id)
        return {key: bool(answer[key]) for key in ("known", "signed_by_owner",
                                                   "cross_signing_verified")}

    async def wait_until_joined(self, room_id: str, user_id: str, timeout: float = 30) -> None:
        async def joined() -> bool:
            members = (await self.call("members", room_id=room_id))["members"]
            return bool(members.get(user_id) == "join")

        async def explain() -> str:
            return f"{user_id} never joined {room_id}"

        await self._poll(joined, timeout, explain)

    async def wait_for(self, predicate: Callable[[ElementMessage], bool], *, room_id: str,
                       sender: str | None = None, timeout: float = 30) -> ElementMessage:
        """The first message in `room_id` (from `sender`) that decrypted and matches."""
        found: list[ElementMessage] = []

        async def find() -> bool:
            for message in await self.messages(room_id):
                if sender is not None and message.sender != sender:
                    continue
                if not message.decryption_failure and predicate(message):
                    found.append(message)
                    return True
            return False

        async def explain() -> str:
            seen = "\n  ".join(m.describe() for m in await self.messages(room_id)) or "(nothing)"
            return f"no matching message from {sender or 'anyone'} in {room_id}; seen:\n  {seen}"

        await self._poll(find, timeout, explain)
        return found[0]

    async def _poll(self, check: Callable[[], Awaitable[bool]], timeout: float,
                    explain: Callable[[], Awaitable[str]]) -> None:
        """Re-run `check` until it holds; AssertionError with `explain()` on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await check():
            if loop.time() > deadline:
                why = await explain()
                raise AssertionError(f"{self.user_id}: timed out after {timeout}s: {why}")
            await asyncio.sleep(POLL_S)

    async def stop(self) -> None:
        """Stop syncing and end the Node process (never logs out)."""
        if self._process.returncode is None:
            with contextlib.suppress(ElementError, TimeoutError, ConnectionError):
                await asyncio.wait_for(self.call("stop"), 5)
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
