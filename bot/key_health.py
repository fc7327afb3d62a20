"""Whether the bot's own keys keep flowing: one-time key uploads and key claims.

nio answers a refused upload with an error response, not an exception, and its sync
helpers drop it: a bot whose uploads the homeserver refuses looks healthy while new
officers' devices can no longer open sessions with it. Every upload goes through
`upload_keys` here, which logs a failure in words and keeps the figures `/healthz` and
`/metrics` report (`bot.health`, `bot.metrics`).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from aiohttp import ClientError
from nio import AsyncClient, KeysUploadResponse

log = logging.getLogger(__name__)

ALREADY_EXISTS = "already exists"
"""Synapse's words when an uploaded one-time key id is taken by a different key: the
local account is older than the keys the homeserver holds for this device."""


def _first_sentence(error: str) -> str:
    """Synapse's refusal without the keys it quotes after the first sentence."""
    return error.split(". ", 1)[0].rstrip(".")


def stale_store_reason(error: str) -> str:
    return (f"the homeserver refuses the bot's one-time keys ({error}): it already holds "
            "keys this crypto store does not know, so the store is older than the device "
            "it belongs to (restored from an old copy?). Officers' new sessions with the "
            "bot will fail. Stop the bot and run `liaison recover-device --yes` "
            "(docs/deployment.md, 'When the crypto store is stale').")


@dataclass
class KeyHealth:
    """Figures about the bot's own keys, since this process started."""

    upload_failures: int = 0
    claim_failures: int = 0
    upload_rejected: str | None = None
    """Why the homeserver refused the last upload (an answer, not an outage); cleared by
    the next upload it accepts."""
    one_time_keys_on_server: int | None = None
    """The device's unclaimed one-time keys on the homeserver, as last reported."""

    decryption_window_s: float = 900.0
    """Over how long `undecryptable_share` is taken."""
    last_decrypted_command_s: float | None = None
    """When (monotonic seconds) the last command that had to be decrypted was read."""
    _events: deque[tuple[float, bool]] = field(default_factory=deque)
    """(monotonic seconds, decrypted?) of officers' encrypted events in the window."""

    def note_event(self, now_s: float, *, decrypted: bool, command: bool) -> None:
        """An officer's encrypted event arrived: read, or not (yet)."""
        self._events.append((now_s, decrypted))
        if decrypted and command:
            self.last_decrypted_command_s = now_s
        while self._events and self._events[0][0] < now_s - self.decryption_window_s:
            self._events.popleft()

    def undecryptable_share(self, now_s: float) -> float | None:
        """The share of officers' encrypted events in the window the bot could not read
        when they arrived; None when there were none."""
        recent = [ok for at, ok in self._events if at >= now_s - self.decryption_window_s]
        if not recent:
            return None
        return recent.count(False) / len(recent)

    last_claim_error: str | None = None

    def claim_failed(self, error: str) -> None:
        self.claim_failures += 1
        self.last_claim_error = error

    def upload_failed(self, error: str, *, refused: bool) -> None:
        self.upload_failures += 1
        if refused:
            self.upload_rejected = error

    def upload_succeeded(self, count: int | None) -> None:
        self.upload_rejected = None
        if count is not None:
            self.one_time_keys_on_server = count


def _status(response: object) -> int | None:
    transport = getattr(response, "transport_response", None)
    status = getattr(transport, "status", None)
    return status if isinstance(status, int) else None


async def upload_keys(client: AsyncClient, health: KeyHealth) -> KeysUploadResponse | None:
    """Upload the device keys or fresh one-time keys; None (logged, counted) on failure."""
    try:
        response = await client.keys_upload()
    except (ClientError, TimeoutError, OSError) as exc:
        health.upload_failed(f"{type(exc).__name__}: {exc}", refused=False)
        log.warning("uploading one-time keys failed: the homeserver did not answer; "
                    "will retry", extra={"error": str(exc)})
        return None
    if isinstance(response, KeysUploadResponse):
        health.upload_succeeded(response.signed_curve25519_count)
        return response
    status = _status(response)
    message = getattr(response, "message", None) or str(response)
    error = f"HTTP {status or 'no status'} {_first_sentence(message)}"
    refused = status is not None and 400 <= status < 500 and status != 429
    repeated = refused and health.upload_rejected == error
    health.upload_failed(error, refused=refused)
    if repeated:  # said once; nio tries again with every sync
        log.debug("one-time keys refused again", extra={"error": error})
    elif refused and ALREADY_EXISTS in error:
        log.error(stale_store_reason(error), extra={"status": status})
    elif refused:
        log.error("the homeserver refused the bot's one-time keys; new officers' devices "
                  "cannot open sessions with the bot while this lasts",
                  extra={"error": error, "status": status})
    else:
        log.warning("uploading one-time keys failed; will retry",
                    extra={"error": error, "status": status})
    return None


def note_server_count(client: AsyncClient, health: KeyHealth) -> None:
    """Take the one-time key count the last sync reported (nio keeps it)."""
    olm = client.olm
    if olm is not None and olm.uploaded_key_count is not None:
        health.one_time_keys_on_server = olm.uploaded_key_count
