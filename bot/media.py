"""The I/O side of attachments: fetch an officer's encrypted file from the media repository,
decrypt and verify it, and upload it again under a fresh key (`commands.attachments` holds
the decisions). Both run outside any database transaction: an upload that no message
ever points at (the bot crashed before queueing the relay) is an orphan, harmless; the
relay itself is queued in the event's transaction, so it goes out once.
"""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import timedelta
from typing import Any

import aiohttp
from nio import AsyncClient, MemoryDownloadResponse, UploadResponse
from nio.crypto.attachments import decrypt_attachment, encrypt_attachment
from nio.exceptions import EncryptionError

from commands.attachments import EncryptedFile, Fetched

log = logging.getLogger(__name__)


class MediaUnavailable(Exception):
    """The media repository did not give the file (timeout, unknown, remote server down)."""


class MediaTooLarge(Exception):
    """The file turned out larger than the limit (whatever its event declared)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes")
        self.size = size


class MediaInvalid(Exception):
    """The file does not decrypt, or does not match what its event declared."""


async def fetch(client: AsyncClient, file: EncryptedFile, *, timeout: timedelta,
                max_bytes: int) -> Fetched:
    """Download, verify against the declared ciphertext hash, and decrypt."""
    try:
        response = await asyncio.wait_for(client.download(mxc=file.url),
                                          timeout.total_seconds())
    except (TimeoutError, OSError, aiohttp.ClientError) as error:
        raise MediaUnavailable(f"{file.url}: {error!r}") from None
    if not isinstance(response, MemoryDownloadResponse):
        raise MediaUnavailable(f"{file.url}: {response}")
    ciphertext = response.body
    if len(ciphertext) > max_bytes:  # AES-CTR: exactly as long as the plaintext
        raise MediaTooLarge(len(ciphertext))
    try:
        data = await asyncio.to_thread(decrypt_attachment, ciphertext, file.key, file.sha256,
                                       file.iv)
    except (EncryptionError, ValueError, KeyError, TypeError) as error:
        raise MediaInvalid(f"{file.url}: {error!r}") from None
    return await asyncio.to_thread(Fetched.of, data)


async def upload(client: AsyncClient, data: bytes, *, filename: str) -> dict[str, Any]:
    """Encrypt under a fresh key and upload; the `file` object for the relayed event."""
    ciphertext, keys = await asyncio.to_thread(encrypt_attachment, data)
    try:
        response, _ = await client.upload(io.BytesIO(ciphertext),
                                          content_type="application/octet-stream",
                                          filename=filename, filesize=len(ciphertext))
    except (TimeoutError, OSError, aiohttp.ClientError) as error:
        raise MediaUnavailable(f"upload failed: {error!r}") from None
    if not isinstance(response, UploadResponse):
        raise MediaUnavailable(f"upload failed: {response}")
    return {"url": response.content_uri, "key": keys["key"], "iv": keys["iv"],
            "hashes": keys["hashes"], "v": keys.get("v", "v2")}
