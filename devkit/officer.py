"""A simulated officer: a real matrix-nio E2EE client driven by tests and the demo.

An `Officer` is what a person in Element would be to the bot: its own account,
its own device with its own Olm/Megolm keys, sending and reading through the
same encrypted rooms. It records every room timeline event it sees (after
decryption) so tests can assert on what a person would have read, and it can
wait for a message without sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nio import (
    AsyncClient,
    AsyncClientConfig,
    EncryptionError,
    ErrorResponse,
    LocalProtocolError,
    LoginResponse,
    MegolmEvent,
    MemoryDownloadResponse,
    RoomPreset,
    SyncResponse,
    ToDeviceMessage,
    UploadResponse,
)
from nio.crypto.attachments import decrypt_attachment, encrypt_attachment
from nio.events import Event

from devkit.push_rules import Reader, Verdict, evaluate, fetch_ruleset
from devkit.synapse import LocalSynapse, SynapseAdminError

log = logging.getLogger(__name__)

T = TypeVar("T")

MEGOLM = "m.megolm.v1.aes-sha2"
SESSION_FILE = "session.json"
DEFAULT_SYNC_TIMEOUT_MS = 2000
MAX_BACKOFF_S = 2.0
ROOM_KNOWN_TIMEOUT_S = 30.0
BODY_PREVIEW = 80
SYNC_FILTER = {"room": {"timeline": {"limit": 200}}}
"""Synapse sends only the last 10 events of a busy room by default; a person's client
would page back for the rest, so the officer asks for enough to see every one."""


class OfficerError(RuntimeError):
    """The homeserver refused something the officer tried to do."""


@dataclass(frozen=True)
class SeenMessage:
    """One room timeline event as this officer saw it, after decryption where possible.

    An event that could not be decrypted keeps type "m.room.encrypted" and body
    None until its room key arrives; it is then replaced by the decrypted one.
    """

    room_id: str
    event_id: str
    sender: str
    type: str
    content: dict[str, Any]
    body: str | None
    msgtype: str | None
    encrypted: bool
    ts: int
    received_at: float

    @property
    def undecrypted(self) -> bool:
        return self.encrypted and self.type == "m.room.encrypted"

    @property
    def relates_to(self) -> dict[str, Any]:
        relation = self.content.get("m.relates_to")
        return relation if isinstance(relation, dict) else {}

    def describe(self) -> str:
        """One line for failure messages: who, what type, a truncated body."""
        body = self.body if self.body is None else _truncate(self.body)
        lock = " (encrypted)" if self.encrypted else ""
        return f"{self.sender} {self.type}{lock} {self.event_id}: {body!r}"


def _truncate(text: str) -> str:
    return text if len(text) <= BODY_PREVIEW else text[: BODY_PREVIEW - 1] + "…"


def seen_message(room_id: str, event: Event, received_at: float) -> SeenMessage:
    """Turn a nio timeline event (decrypted in place by nio, or not) into a SeenMessage."""
    source: dict[str, Any] = event.source or {}
    undecrypted = isinstance(event, MegolmEvent)
    content = source.get("content")
    content = content if isinstance(content, dict) else {}
    body = content.get("body")
    msgtype = content.get("msgtype")
    return SeenMessage(
        room_id=room_id,
        event_id=str(source.get("event_id", getattr(event, "event_id", ""))),
        sender=str(source.get("sender", getattr(event, "sender", ""))),
        type="m.room.encrypted" if undecrypted else str(source.get("type", "")),
        content={} if undecrypted else content,
        body=None if undecrypted or not isinstance(body, str) else body,
        msgtype=None if undecrypted or not isinstance(msgtype, str) else msgtype,
        encrypted=undecrypted or bool(getattr(event, "decrypted", False)),
        ts=int(source.get("origin_server_ts", getattr(event, "server_timestamp", 0)) or 0),
        received_at=received_at,
    )


def text_content(
    body: str,
    *,
    reply_to: str | None,
    thread_root: str | None,
    notice: bool,
    extra_content: dict[str, Any] | None,
) -> dict[str, Any]:
    """An m.room.message the way Element builds it, including reply and thread relations."""
    content: dict[str, Any] = {"msgtype": "m.notice" if notice else "m.text", "body": body}
    if thread_root is not None:
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": thread_root,
            # Element's fallback for thread-unaware clients: a reply to the
            # latest event, flagged as a fallback unless it is a real reply.
            "is_falling_back": reply_to is None,
            "m.in_reply_to": {"event_id": reply_to or thread_root},
        }
    elif reply_to is not None:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    content.update(extra_content or {})
    return content


@dataclass(frozen=True)
class WithheldMessage:
    """A message sent in its own Megolm session whose key one user's devices did not get.

    `release()` hands them the key late, as a slow or offline sender would;
    never calling it gives "a message whose key never arrives".
    """

    officer: Officer
    room_id: str
    event_id: str
    session_id: str
    session_key: str  # exported at index 0, before the message was encrypted
    withheld_from: str

    async def release(self) -> None:
        """Send the room key, Olm-encrypted, to every device of the withheld user."""
        await self.officer._send_room_key(self)


def _checked(response: Any, action: str) -> Any:
    """Raise OfficerError for a nio error response, so failures name what was attempted."""
    if isinstance(response, ErrorResponse):
        raise OfficerError(f"{action} failed: {response}")
    return response


class Officer:
    """One officer's account and device, syncing in the background once started."""

    def __init__(self, client: AsyncClient, *, sync_timeout_ms: int) -> None:
        """Use `Officer.create`; this only wires an already logged-in client."""
        self.client = client
        self.user_id: str = client.user_id
        self.device_id: str = client.device_id
        self.seen: list[SeenMessage] = []
        self.withheld: list[dict[str, Any]] = []
        """Every `m.room_key.withheld` to-device event this device received (its content,
        with `sender`): nio ignores them, a client would tell its user why it cannot read."""
        self._sync_timeout_ms = sync_timeout_ms
        self._undecrypted: dict[str, tuple[int, MegolmEvent]] = {}
        self.arrived_undecryptable: set[str] = set()
        """Event ids that could not be decrypted when they arrived (even if their key came
        later): a person would have seen "unable to decrypt" first."""
        self._changed = asyncio.Event()
        self._sync_task: asyncio.Task[None] | None = None

    @classmethod
    async def create(
        cls,
        synapse: LocalSynapse,
        localpart: str,
        workdir: Path,
        *,
        password: str | None = None,
        displayname: str | None = None,
        sync_timeout_ms: int = DEFAULT_SYNC_TIMEOUT_MS,
    ) -> Officer:
        """Register (unless the account exists), log in or resume the device, and sync once.

        The device is kept in workdir/<localpart> (nio store + session.json), so
        creating the same officer again resumes the same device and keys.
        """
        password = password or f"devkit-{localpart}"
        store = Path(workdir) / localpart
        store.mkdir(parents=True, exist_ok=True)
        await _register_unless_exists(synapse, localpart, password, displayname)
        client = AsyncClient(
            synapse.url,
            f"@{localpart}:{synapse.server_name}",
            store_path=str(store),
            config=AsyncClientConfig(
                store_sync_tokens=True,
                encryption_enabled=True,
                # nio itself retries requests while the homeserver is down;
                # keep its back-off short so a restarted Synapse is used at once.
                max_timeout_retry_wait_time=MAX_BACKOFF_S,
            ),
        )
        try:
            await _log_in(client, store / SESSION_FILE, password, localpart)
            officer = cls(client, sync_timeout_ms=sync_timeout_ms)
            await officer._sync_once(timeout_ms=0, full_state=True)
        except BaseException:
            await client.close()
            raise
        return officer

    async def start(self) -> None:
        """Sync in the background until stop(), riding out homeserver restarts."""
        if self._sync_task is not None:
            raise RuntimeError(f"{self.user_id} is already started")
        self._sync_task = asyncio.create_task(self._sync_forever(), name=f"sync {self.user_id}")

    async def pause(self) -> None:
        """Stop syncing, as a phone that is switched off: the device keeps its keys and
        session, and start() resumes it. Meanwhile it tops nothing up on the server."""
        task, self._sync_task = self._sync_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self) -> None:
        """Stop syncing and close the HTTP session; never logs out (that would delete keys)."""
        task, self._sync_task = self._sync_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.close()
        if self.client.store is not None:
            # nio never closes its SQLite store; benchmarks create many officers.
            self.client.store.database.close()

    async def _sync_forever(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._sync_once(timeout_ms=self._sync_timeout_ms)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: sync failed (%s); retrying in %.1fs", self.user_id, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _sync_once(self, *, timeout_ms: int, full_state: bool | None = None) -> None:
        """One sync round plus the key housekeeping nio's sync_forever would do."""
        response = _checked(
            await self.client.sync(timeout=timeout_ms, full_state=full_state,
                                   sync_filter=SYNC_FILTER), "sync"
        )
        self._record_sync(response)
        if response.to_device_events:  # room keys only ever arrive by to-device
            self._retry_decryption()
        self._notify()
        await self._maintain_keys()

    async def _maintain_keys(self) -> None:
        client = self.client
        if client.outgoing_to_device_messages:
            await client.send_to_device_messages()
        if client.should_upload_keys:
            _checked(await client.keys_upload(), "keys_upload")
        await self._query_keys_if_needed()
        if client.should_claim_keys:
            users = client.get_users_for_key_claiming()
            _checked(await client.keys_claim(users), "keys_claim")

    async def _query_keys_if_needed(self) -> None:
        """keys_query when nio tracks users with unknown devices (also used before sends)."""
        if not self.client.should_query_keys:
            return
        with contextlib.suppress(LocalProtocolError):  # another task just emptied the queue
            _checked(await self.client.keys_query(), "keys_query")

    def _record_sync(self, response: SyncResponse) -> None:
        now = time.monotonic()
        for to_device in response.to_device_events:
            source = getattr(to_device, "source", None) or {}
            if source.get("type") == "m.room_key.withheld":
                self.withheld.append({**(source.get("content") or {}),
                                      "sender": source.get("sender")})
        for room_id, info in response.rooms.join.items():
            for event in info.timeline.events:
                self._record(seen_message(room_id, event, now), event)

    def _record(self, message: SeenMessage, event: Event) -> None:
        if isinstance(event, MegolmEvent):
            event.room_id = message.room_id
            self.arrived_undecryptable.add(message.event_id)
            self._undecrypted[message.event_id] = (len(self.seen), event)
        self.seen.append(message)

    def _retry_decryption(self) -> None:
        """Replace undecrypted placeholders whose room key has arrived since."""
        now = time.monotonic()
        for event_id, (index, event) in list(self._undecrypted.items()):
            try:
                decrypted = self.client.decrypt_event(event)
            except EncryptionError:
                continue
            self.seen[index] = seen_message(event.room_id, decrypted, now)
            del self._undecrypted[event_id]

    def _notify(self) -> None:
        """Wake every waiter; each waiter re-checks its condition."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_until(
        self,
        check: Callable[[], T | None],
        timeout: float,
        explain: Callable[[], str],
    ) -> T:
        """Re-run `check` after every sync until it returns a value; AssertionError on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            result = check()
            if result is not None:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{self.user_id}: timed out after {timeout}s: {explain()}")
            if self._sync_task is None or self._sync_task.done():
                raise RuntimeError(f"{self.user_id} is not syncing; call start() first")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def wait_for_withheld(self, session_id: str, *,
                                timeout: float = 30.0) -> dict[str, Any]:
        """The `m.room_key.withheld` this device got for Megolm session `session_id`."""
        def found() -> dict[str, Any] | None:
            return next((w for w in self.withheld if w.get("session_id") == session_id), None)

        return await self._wait_until(found, timeout, lambda: f"no withheld notice for "
                                                              f"{session_id}: {self.withheld}")

    def read_receipt(self, room_id: str, user_id: str, thread_id: str = "main") -> str | None:
        """The event `user_id` last marked read (`m.read`) in `thread_id` ("main": outside
        threads), as this officer's client learnt it from sync."""
        room = self.client.rooms.get(room_id)
        receipt = (room.threaded_read_receipts.get(user_id, {}).get(thread_id)
                   if room is not None else None)
        return receipt.event_id if receipt is not None else None

    async def wait_for_receipt(self, room_id: str, user_id: str, event_id: str, *,
                               thread_id: str = "main", timeout: float = 30.0) -> None:
        """Until `user_id`'s read receipt in `thread_id` is on `event_id`."""
        def marked() -> bool | None:
            return True if self.read_receipt(room_id, user_id, thread_id) == event_id else None

        def explain() -> str:
            room = self.client.rooms.get(room_id)
            found = room.threaded_read_receipts.get(user_id) if room is not None else None
            return f"no m.read by {user_id} on {event_id} in {thread_id}; receipts: {found}"

        await self._wait_until(marked, timeout, explain)

    async def push_verdict(self, message: SeenMessage) -> Verdict:
        """Whether this officer's phone would ring for `message`: the push rules the
        homeserver serves this officer, evaluated over the event as decrypted
        (`devkit.push_rules`), as a client does for an encrypted room."""
        room = self.client.rooms.get(message.room_id)
        if room is None:
            raise OfficerError(f"{self.user_id} is not in {message.room_id}")
        ruleset = await fetch_ruleset(self.client.homeserver, self.client.access_token)
        event = {"type": message.type, "content": message.content, "sender": message.sender,
                 "room_id": message.room_id, "event_id": message.event_id}
        levels = room.power_levels
        reader = Reader(user_id=self.user_id, display_name=room.user_name(self.user_id),
                        member_count=room.joined_count,
                        sender_power=levels.get_user_level(message.sender),
                        notification_levels=levels.defaults.notifications)
        return evaluate(ruleset, event, reader)

    def messages(self, room_id: str, *, sender: str | None = None) -> list[SeenMessage]:
        """Everything seen in a room so far, oldest first, optionally from one sender."""
        return [
            m for m in self.seen if m.room_id == room_id and (sender is None or m.sender == sender)
        ]

    async def wait_for(
        self,
        predicate: Callable[[SeenMessage], bool],
        *,
        timeout: float = 30.0,
        room_id: str | None = None,
        sender: str | None = None,
    ) -> SeenMessage:
        """The first message (already seen or arriving within `timeout`) matching all filters."""

        def find() -> SeenMessage | None:
            for m in self.seen:
                if room_id is not None and m.room_id != room_id:
                    continue
                if sender is not None and m.sender != sender:
                    continue
                if predicate(m):
                    return m
            return None

        def explain() -> str:
            pool = self.seen if room_id is None else self.messages(room_id)
            lines = "\n  ".join(m.describe() for m in pool) or "(nothing)"
            where = room_id or "any room"
            return f"no matching message from {sender or 'anyone'} in {where}; seen:\n  {lines}"

        return await self._wait_until(find, timeout, explain)

    async def wait_until_joined(
        self,
        room_id: str,
        user_id: str,
        timeout: float = 30,
    ) -> None:
        """Until this officer's client knows `user_id` joined (e.g. the bot took an invite).

        Sending before that risks encrypting for a member list without the new
        device, which then never gets the room key.
        """

        def joined() -> bool | None:
            room = self.client.rooms.get(room_id)
            user = room.users.get(user_id) if room is not None else None
            return True if user is not None and not user.invited else None

        await self._wait_until(joined, timeout, lambda: f"{user_id} never joined {room_id}")

    async def _wait_for_room(self, room_id: str, *, encrypted: bool = False) -> None:
        """Until our own sync has put the room (and its encryption state) into nio's state."""

        def known() -> bool | None:
            room = self.client.rooms.get(room_id)
            ready = room is not None and (room.encrypted or not encrypted)
            return True if ready else None

        await self._wait_until(known, ROOM_KNOWN_TIMEOUT_S, lambda: f"{room_id} never synced")

    async def create_room(
        self, name: str, *, invite: Sequence[str] = (), encrypted: bool = True
    ) -> str:
        """A private room (shared history), Megolm-encrypted from its first event by default."""
        initial_state: list[dict[str, Any]] = [
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "shared"},
            }
        ]
        if encrypted:
            initial_state.append(
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}
            )
        response = _checked(
            await self.client.room_create(
                name=name,
                preset=RoomPreset.private_chat,
                invite=list(invite),
                initial_state=initial_state,
            ),
            f"create room {name!r}",
        )
        room_id = str(response.room_id)
        await self._wait_for_room(room_id, encrypted=encrypted)
        return room_id

    async def invite(self, room_id: str, user_id: str) -> None:
        _checked(await self.client.room_invite(room_id, user_id), f"invite {user_id}")

    async def join(self, room_id: str) -> None:
        """Join and wait until our sync knows the room, so sending right after works."""
        _checked(await self.client.join(room_id), f"join {room_id}")
        await self._wait_for_room(room_id)

    async def wait_for_invite(self, *, timeout: float = 30.0) -> str:
        """Wait for an invite (such as the direct message the bot opens for escalations)
        and return its room id, without joining."""

        def invited() -> str | None:
            return next(iter(self.client.invited_rooms), None)

        return await self._wait_until(invited, timeout, lambda: "no invite arrived")

    async def accept_invite(self, *, timeout: float = 30.0) -> str:
        """Wait for an invite, join it and return the room id."""
        room_id = await self.wait_for_invite(timeout=timeout)
        await self.join(room_id)
        return room_id

    async def send_text(
        self,
        room_id: str,
        body: str,
        *,
        reply_to: str | None = None,
        thread_root: str | None = None,
        notice: bool = False,
        extra_content: dict[str, Any] | None = None,
    ) -> str:
        """Send m.text (or m.notice); encrypted when the room is. Returns the event id."""
        content = text_content(
            body,
            reply_to=reply_to,
            thread_root=thread_root,
            notice=notice,
            extra_content=extra_content,
        )
        return await self.send_raw(room_id, "m.room.message", content)

    async def read(self, room_id: str, event_id: str) -> None:
        """A public read receipt (and the fully-read marker) on `event_id`, as Element sends
        when the officer has looked at the room."""
        _checked(await self.client.room_read_markers(room_id, fully_read_event=event_id,
                                                     read_event=event_id), "read receipt")

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        """An m.annotation reaction; nio sends reactions unencrypted even in encrypted rooms."""
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return await self.send_raw(room_id, "m.reaction", content)

    async def send_raw(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        """Send any room event, making sure every member device we know of gets the room key."""
        await self._wait_for_room(room_id)
        if self.client.rooms[room_id].encrypted:
            # room_send only queries keys when members aren't synced yet; a
            # member who joined later would otherwise be left without the key.
            await self._query_keys_if_needed()
        response = _checked(
            await self.client.room_send(
                room_id, event_type, content, ignore_unverified_devices=True
            ),
            f"send {event_type} to {room_id}",
        )
        return str(response.event_id)

    async def send_attachment(
        self,
        room_id: str,
        data: bytes,
        *,
        filename: str,
        mimetype: str,
        msgtype: str = "m.image",
        caption: str | None = None,
        reply_to: str | None = None,
        thread_root: str | None = None,
        declared_size: int | None = None,
        upload_data: bytes | None = None,
        thumbnail: bytes | None = None,
    ) -> str:
        """Send `data` the way Element sends a photo or file in an encrypted room: encrypted
        under a fresh key, uploaded, then an `m.image`/`m.file`/... event with `file` info.
        `declared_size` and `upload_data` (ciphertext replaced by other bytes) send one that
        lies about itself; `thumbnail` goes along as an encrypted JPEG thumbnail."""
        ciphertext, keys = encrypt_attachment(data)
        url = await self._upload(upload_data if upload_data is not None else ciphertext,
                                 filename)
        info: dict[str, Any] = {"mimetype": mimetype,
                                "size": len(data) if declared_size is None else declared_size}
        if thumbnail is not None:
            thumb_ciphertext, thumb_keys = encrypt_attachment(thumbnail)
            info["thumbnail_file"] = {"url": await self._upload(thumb_ciphertext, "thumbnail"),
                                      **thumb_keys}
            info["thumbnail_info"] = {"mimetype": "image/jpeg", "size": len(thumbnail)}
        content = text_content(caption or filename, reply_to=reply_to, thread_root=thread_root,
                               notice=False, extra_content=None)
        content.update({
            "msgtype": msgtype, "filename": filename,
            "file": {"url": url, **keys}, "info": info,
        })
        return await self.send_raw(room_id, "m.room.message", content)

    async def _upload(self, data: bytes, filename: str) -> str:
        response, _ = await self.client.upload(
            io.BytesIO(data), content_type="application/octet-stream", filename=filename,
            filesize=len(data))
        if not isinstance(response, UploadResponse):
            raise OfficerError(f"upload {filename}: {response}")
        return str(response.content_uri)

    async def download_attachment(self, message: SeenMessage, *,
                                  thumbnail: bool = False) -> bytes:
        """The decrypted bytes of an encrypted attachment this officer received (or of its
        thumbnail)."""
        file = message.content["info"]["thumbnail_file"] if thumbnail else message.content["file"]
        response = await self.client.download(mxc=file["url"])
        if not isinstance(response, MemoryDownloadResponse):
            raise OfficerError(f"download {file['url']}: {response}")
        return bytes(decrypt_attachment(response.body, file["key"]["k"], file["hashes"]["sha256"],
                                        file["iv"]))

    async def send_text_withholding_key(
        self, room_id: str, body: str, *, withhold_from: str
    ) -> WithheldMessage:
        """Send m.text in a fresh Megolm session that every device of `withhold_from` misses.

        Everyone else gets the key as usual. Afterwards the session is dropped,
        so this officer's next message starts a new session shared with all,
        and no device's trust state is changed.
        """
        return await self.send_raw_withholding_key(
            room_id, "m.room.message", text_content(body, reply_to=None, thread_root=None,
                                                    notice=False, extra_content=None),
            withhold_from=withhold_from)

    async def send_raw_withholding_key(
        self, room_id: str, event_type: str, content: dict[str, Any], *, withhold_from: str
    ) -> WithheldMessage:
        """As `send_text_withholding_key`, any event (a link's protocol event, say)."""
        client = self.client
        assert client.olm is not None, "the officer's client has encryption enabled"
        await self._wait_for_room(room_id, encrypted=True)
        # Know every device of the withheld user now: the ones we do not know
        # of could not be excluded, and release() needs them all.
        await self._query_keys_if_needed()
        in_flight = client.sharing_session.get(room_id)
        if in_flight is not None:  # let a concurrent share finish before replacing its session
            await in_flight.wait()
        client.olm.create_outbound_group_session(room_id)  # replaces any current session
        session = client.olm.outbound_group_sessions[room_id]
        assert session.message_index == 0
        session_id, session_key = session.id, session.session_key
        excluded = {
            (withhold_from, device.id)
            for device in client.device_store.active_user_devices(withhold_from)
        }
        # share_group_session skips (user, device) pairs in users_ignored: a
        # per-session exclusion, unlike blacklisting, which is persisted trust.
        session.users_ignored.update(excluded)
        try:
            event_id = await self.send_raw(room_id, event_type, content)
        finally:
            client.invalidate_outbound_session(room_id)
            current = client.olm.outbound_group_sessions.get(room_id)
            if current is not None and current.id == session_id:  # never shared (send failed)
                del client.olm.outbound_group_sessions[room_id]
        log.info("%s sent %s with its key withheld from %d device(s) of %s",
                 self.user_id, event_id, len(excluded), withhold_from)
        return WithheldMessage(
            officer=self,
            room_id=room_id,
            event_id=event_id,
            session_id=session_id,
            session_key=session_key,
            withheld_from=withhold_from,
        )

    async def _send_room_key(self, withheld: WithheldMessage) -> None:
        """An m.room_key to-device message per device, encrypted with nio's own Olm helpers."""
        client = self.client
        olm = client.olm
        assert olm is not None
        user_id = withheld.withheld_from
        await self._query_keys_if_needed()
        missing = olm.get_missing_sessions([user_id])
        if missing:
            _checked(await client.keys_claim(missing), f"keys_claim for {user_id}")
        devices = [
            d for d in client.device_store.active_user_devices(user_id) if d.id != self.device_id
        ]
        if not devices:
            raise OfficerError(f"{user_id} has no device known to {self.user_id}")
        key_content = {
            "algorithm": MEGOLM,
            "room_id": withheld.room_id,
            "session_id": withheld.session_id,
            "session_key": withheld.session_key,
        }
        for device in devices:
            session = olm.session_store.get(device.curve25519)
            if session is None:
                raise OfficerError(f"no Olm session with {user_id} {device.id} after keys_claim")
            encrypted = olm._olm_encrypt(session, device, "m.room_key", key_content)
            message = ToDeviceMessage("m.room.encrypted", user_id, device.id, encrypted)
            _checked(await client.to_device(message), f"send room key to {user_id} {device.id}")
        log.info("%s released the key of %s to %d device(s) of %s",
                 self.user_id, withheld.event_id, len(devices), user_id)


async def _register_unless_exists(
    synapse: LocalSynapse, localpart: str, password: str, displayname: str | None
) -> None:
    try:
        await synapse.register(localpart, password, displayname=displayname)
    except SynapseAdminError as exc:
        if exc.errcode != "M_USER_IN_USE":
            raise


async def _log_in(client: AsyncClient, session_file: Path, password: str, localpart: str) -> None:
    """Resume the saved device if there is one, else log in with a new device and save it."""
    saved = _load_session(session_file)
    if saved is not None:
        client.restore_login(saved["user_id"], saved["device_id"], saved["access_token"])
        return
    response = await client.login(password, device_name=f"devkit {localpart}")
    if not isinstance(response, LoginResponse):
        raise OfficerError(f"login as {localpart} failed: {response}")
    session = {
        "user_id": response.user_id,
        "device_id": response.device_id,
        "access_token": response.access_token,
    }
    _save_session(session_file, session)


def _load_session(path: Path) -> dict[str, str] | None:
    """The device a previous run logged in with (a few bytes; read synchronously)."""
    if not path.exists():
        return None
    saved: dict[str, str] = json.loads(path.read_text())
    return saved


def _save_session(path: Path, session: dict[str, str]) -> None:
    """Keep the access token private to this user, like any credential."""
    path.write_text(json.dumps(session))
    path.chmod(0o600)
