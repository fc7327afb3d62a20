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

from liaison.commands.attachments import (
    Attachment,
    AttachmentRefusal,
    AttachmentsConfig,
    EncryptedFile,
    Fetched,
    media_fields,
    refusal_of,
)

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


async def take_attachment(
    client: AsyncClient, attachment: Attachment, policy: AttachmentsConfig, *, open_case: bool
) -> AttachmentRefusal | tuple[Fetched, dict[str, Any]]:
    """Fetch, verify and re-upload an attachment on a case, or say why it is not taken:
    the new event's media fields (under a fresh key) with what was fetched."""
    if not open_case:
        return AttachmentRefusal("finished", {})
    refusal = refusal_of(attachment, policy)
    if refusal is not None:
        return refusal
    try:
        fetched = await fetch(client, attachment.file, timeout=policy.fetch_timeout,
                              max_bytes=policy.max_bytes)
    except MediaTooLarge as error:
        return refusal_of(attachment, policy, size=error.size) or AttachmentRefusal(
            "too_large", {"name": attachment.filename, "size": error.size,
                          "limit": policy.max_bytes})
    except MediaUnavailable as error:
        log.warning("attachment not fetched", extra={"reason": str(error)})
        return AttachmentRefusal("unavailable", {"name": attachment.filename})
    except MediaInvalid as error:
        log.warning("attachment does not decrypt", extra={"reason": str(error)})
        return AttachmentRefusal("invalid", {"name": attachment.filename})
    if attachment.declared_size is not None and attachment.declared_size != len(fetched.data):
        return AttachmentRefusal("invalid", {"name": attachment.filename})
    thumbnail = await _relayed_thumbnail(client, attachment, policy)
    try:
        file = await upload(client, fetched.data, filename=attachment.filename)
    except MediaUnavailable as error:
        log.warning("attachment not uploaded", extra={"reason": str(error)})
        return AttachmentRefusal("unavailable", {"name": attachment.filename})
    return fetched, media_fields(attachment, file=file, size=len(fetched.data),
                                 thumbnail=thumbnail)


async def _relayed_thumbnail(client: AsyncClient, attachment: Attachment,
                             policy: AttachmentsConfig) -> dict[str, Any] | None:
    """The source's thumbnail, re-encrypted and uploaded; None when it had none or it
    cannot be had (the attachment goes without it)."""
    if attachment.thumbnail is None:
        return None
    try:
        thumbnail = await fetch(client, attachment.thumbnail, timeout=policy.fetch_timeout,
                                max_bytes=policy.max_bytes)
        return await upload(client, thumbnail.data, filename="thumbnail")
    except (MediaUnavailable, MediaInvalid, MediaTooLarge) as error:
        log.info("thumbnail left out", extra={"reason": str(error)})
        return None
