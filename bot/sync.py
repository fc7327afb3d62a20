"""The sync loop: long-poll the homeserver, keep keys flowing, survive outages.

The sync token is saved in Liaison's database only after a batch has been
processed, so a crash replays the batch instead of losing it; the
processed-events table makes the replay harmless.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from aiohttp import ClientError
from nio import (
    AsyncClient,
    KeysClaimResponse,
    MegolmEvent,
    RoomMessagesResponse,
    SyncError,
    SyncResponse,
)

from liaison.bot.key_health import KeyHealth, note_server_count, upload_keys
from liaison.bot.stale_store import remember_counter
from liaison.storage import state
from liaison.storage.db import Database

log = logging.getLogger(__name__)

SYNC_TOKEN_KEY = "sync_token"

# Keep timelines small and skip what a bot never reads.
SYNC_FILTER = {
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
    "room": {
        "ephemeral": {"types": ["m.receipt"]},  # read receipts: "seen" (bot.seen)
        "timeline": {"limit": 100},
        "account_data": {"not_types": ["*"]},
    },
}

BatchHandler = Callable[[SyncResponse], Awaitable[None]]


# Events fetched to fill one room's gap in one batch, at most.
MAX_GAP_EVENTS = 5000


class GapError(Exception):
    """Skipped events could not be fetched; the batch is retried instead of processed."""


class FatalSyncError(Exception):
    """The homeserver rejects the bot's session; retrying cannot help."""


class SyncLoop:
    def __init__(
        self,
        client: AsyncClient,
        db: Database,
        handle_batch: BatchHandler,
        *,
        timeout_ms: int = 30_000,
        backoff_max_s: float = 60.0,
        synced: asyncio.Event | None = None,
        after_key_query: Callable[[], Awaitable[None]] | None = None,
        key_health: KeyHealth | None = None,
    ) -> None:
        self._client = client
        self._db = db
        self._handle_batch = handle_batch
        self._timeout_ms = timeout_ms
        self._backoff_max_s = backoff_max_s
        self.last_success_monotonic: float | None = None
        self.consecutive_failures = 0
        self.synced_once = synced or asyncio.Event()
        self._after_key_query = after_key_query
        self.key_health = key_health or KeyHealth()

    async def run(self) -> None:
        async with self._db.read() as conn:
            token = await state.get_value(conn, SYNC_TOKEN_KEY)
        # Full state on the first sync of every run: nio keeps rooms only in memory, and a
        # restarted bot must know every room (members, encryption) before it sends anything.
        first = True
        while True:
            response = await self._sync_once(token, first)
            if response is None:
                await self._back_off()
                continue
            log.debug("sync batch", extra={
                "next_batch": response.next_batch,
                "joined": {r: len(i.timeline.events) for r, i in response.rooms.join.items()},
                "invites": len(response.rooms.invite), "to_device": len(response.to_device_events),
            })
            self._note_key_count(response)
            queried = await self._maintain_keys()
            if token is not None:
                try:
                    await self._fill_gaps(response, token)
                except GapError as exc:
                    self._note_failure(str(exc))  # retried from the same token: nothing lost
                    await self._back_off()
                    continue
            await self._handle_batch(response)
            self._note_decryption(response)
            if queried and self._after_key_query is not None:
                await self._after_key_query()
            async with self._db.transaction() as conn:
                await state.set_value(conn, SYNC_TOKEN_KEY, response.next_batch)
            token = response.next_batch
            first = False
            self.consecutive_failures = 0
            self.last_success_monotonic = asyncio.get_running_loop().time()
            self.synced_once.set()

    async def _sync_once(self, token: str | None, first: bool) -> SyncResponse | None:
        try:
            response = await self._client.sync(
                timeout=0 if first else self._timeout_ms,
                since=token,
                full_state=first,
                sync_filter=SYNC_FILTER,
            )
        except (ClientError, TimeoutError, OSError) as exc:
            self._note_failure(f"{type(exc).__name__}: {exc}")
            return None
        if isinstance(response, SyncError):
            if response.status_code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
                raise FatalSyncError(f"the homeserver rejected the bot's session: {response}")
            self._note_failure(str(response))
            if response.retry_after_ms:
                await asyncio.sleep(response.retry_after_ms / 1000)
            return None
        return response

    def _note_failure(self, error: str) -> None:
        self.consecutive_failures += 1
        log.warning("sync failed; retrying", extra={"error": error,
                                                    "failures": self.consecutive_failures})

    async def _back_off(self) -> None:
        exponent = min(self.consecutive_failures, 10)
        delay = min(self._backoff_max_s, 0.5 * 2 ** (exponent - 1))
        await asyncio.sleep(delay * (0.75 + random.random() / 2))

    async def _fill_gaps(self, response: SyncResponse, since: str) -> None:
        """Fetch what a `limited` timeline skipped, so a burst never loses an event.

        When more happened in a room than the timeline limit, sync returns only the
        newest events; the rest are paged back from `prev_batch` to the token this
        sync started from and put in front, oldest first.
        """
        for room_id, joined in response.rooms.join.items():
            timeline = joined.timeline
            if not timeline.limited or not timeline.prev_batch:
                continue
            missing: list[object] = []
            start: str | None = timeline.prev_batch
            while start is not None and len(missing) < MAX_GAP_EVENTS:
                try:
                    page = await self._client.room_messages(
                        room_id, start=start, end=since, limit=100)
                except (ClientError, TimeoutError, OSError) as exc:
                    raise GapError(f"could not fetch skipped events of {room_id}: {exc}") from exc
                if not isinstance(page, RoomMessagesResponse):
                    raise GapError(f"could not fetch skipped events of {room_id}: {page}")
                missing.extend(page.chunk)
                if not page.chunk or page.end in (None, start):
                    break
                start = page.end
            if len(missing) >= MAX_GAP_EVENTS:
                log.error("gap too long; older events skipped",
                          extra={"room_id": room_id, "fetched": len(missing)})
            log.info("filled a timeline gap", extra={"room_id": room_id,
                                                     "events": len(missing)})
            timeline.events[:0] = list(reversed(missing))

    def _note_key_count(self, response: SyncResponse) -> None:
        """Take the device's one-time key count from every sync, zero included: nio skips
        a count of zero, so a bot whose keys were all claimed while it ran would never
        publish more (new devices would have only its fallback key)."""
        olm = self._client.olm
        count = response.device_key_count.signed_curve25519
        if olm is not None and count is not None and olm.account.shared:
            olm.uploaded_key_count = count

    def _note_decryption(self, response: SyncResponse) -> None:
        """Count officers' encrypted events by whether they could be read on arrival
        (`/metrics`: the share that could not, the time since a command was read)."""
        now_s = asyncio.get_running_loop().time()
        for joined in response.rooms.join.values():
            for event in joined.timeline.events:
                if getattr(event, "sender", None) == self._client.user_id:
                    continue
                if isinstance(event, MegolmEvent):
                    self.key_health.note_event(now_s, decrypted=False, command=False)
                elif getattr(event, "decrypted", False):
                    body = getattr(event, "body", None)
                    command = isinstance(body, str) and body.lstrip().startswith("!")
                    self.key_health.note_event(now_s, decrypted=True, command=command)

    async def _maintain_keys(self) -> bool:
        """Upload, query and claim keys the way sync_forever would, tolerating failures.

        Returns True when device lists were queried (members' devices may have changed).
        """
        client = self._client
        queried = False
        note_server_count(client, self.key_health)
        try:
            if client.should_upload_keys:
                if await upload_keys(client, self.key_health):  # a failure is logged there
                    await remember_counter(self._db, client)
            if client.should_query_keys:
                await client.keys_query()
                queried = True
            if client.should_claim_keys:  # devices whose Olm session broke (wedged)
                claimed = await client.keys_claim(client.get_users_for_key_claiming())
                if not isinstance(claimed, KeysClaimResponse):
                    self.key_health.claim_failed(str(claimed))
                    log.warning("claiming one-time keys to repair broken Olm sessions "
                                "failed; will retry", extra={"error": str(claimed)})
            await client.send_to_device_messages()
        except (ClientError, TimeoutError, OSError) as exc:
            log.warning("key maintenance failed; will retry", extra={"error": str(exc)})
        return queried
