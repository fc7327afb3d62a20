"""Photos, documents, video and audio on cases — the pure part (the shell that fetches,
decrypts and uploads is `bot.media`; the case side is `handlers.case_events.carry_attachment`).

An attachment is an encrypted media event (`m.image`, `m.file`, `m.video`, `m.audio`)
whose content carries a `file` object (url, key, iv, hashes). It belongs to a case when
it is sent in the case's thread or as a reply to the case, or bare in an origin room
within the configured window after the same officer's alert there (`in_window`).
What may be attached is decided from the config (`AttachmentsConfig`): `refusal_of` before
anything is downloaded (from what the event declares), and again on the bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from pydantic_core import PydanticCustomError

from liaison.commands.durations import Duration

MEDIA_MSGTYPES = frozenset({"m.image", "m.file", "m.video", "m.audio"})
DEFAULT_TYPE = "application/octet-stream"
MIB = 1024 * 1024


class AttachmentsConfig(BaseModel):
    """The `attachments:` section: which photos and files are taken on cases, how big,
    and how long after an alert a bare attachment from its author still belongs to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_bytes: Annotated[StrictInt, Field(ge=1)] = Field(
        default=20 * MIB, description="Refuse attachments larger than this (decrypted size)")
    types: list[str] = Field(
        default_factory=lambda: ["image/*", "video/*", "audio/*", "application/pdf"],
        description="Accepted MIME types; `image/*` accepts every image type")
    window: Duration = Field(
        default=timedelta(minutes=2),
        description="A bare attachment this soon after its sender's alert, in the alert's "
                    "room, is attached to that alert")
    fetch_timeout: Duration = timedelta(seconds=30)

    @field_validator("types")
    @classmethod
    def _check_types(cls, value: list[str]) -> list[str]:
        for pattern in value:
            major, _, minor = pattern.partition("/")
            if not major or not minor or major == "*" or ("*" in minor and minor != "*"):
                raise PydanticCustomError(
                    "mime_type", "write a MIME type like image/jpeg or image/*, not {pattern}",
                    {"pattern": pattern})
        return [pattern.lower() for pattern in value]



@dataclass(frozen=True)
class EncryptedFile:
    """The `file` object of an encrypted media event: where the ciphertext is, how to open it."""

    url: str
    key: str
    """The AES key, unpadded URL-safe base64 (the JWK's `k`)."""
    iv: str
    sha256: str
    """The SHA-256 of the ciphertext, unpadded base64, as declared by the sender."""

    @classmethod
    def of(cls, value: object) -> EncryptedFile | None:
        if not isinstance(value, Mapping):
            return None
        key, hashes = value.get("key"), value.get("hashes")
        url, iv = value.get("url"), value.get("iv")
        k = key.get("k") if isinstance(key, Mapping) else None
        sha256 = hashes.get("sha256") if isinstance(hashes, Mapping) else None
        if not all(isinstance(part, str) and part for part in (url, iv, k, sha256)):
            return None
        assert isinstance(url, str) and isinstance(iv, str)
        assert isinstance(k, str) and isinstance(sha256, str)
        if not url.startswith("mxc://"):
            return None
        return cls(url=url, key=k, iv=iv, sha256=sha256)


@dataclass(frozen=True)
class Attachment:
    """What an officer's media event says about itself."""

    msgtype: str
    filename: str
    caption: str
    mimetype: str
    declared_size: int | None
    file: EncryptedFile
    thumbnail: EncryptedFile | None
    thumbnail_info: Mapping[str, Any]
    info: Mapping[str, Any]


def attachment_of(content: Mapping[str, Any]) -> Attachment | None:
    """The attachment in an event's content; None when it is not an encrypted media event
    (an unencrypted `url` is never taken: it would have crossed the server in the clear)."""
    msgtype = content.get("msgtype")
    file = EncryptedFile.of(content.get("file"))
    if msgtype not in MEDIA_MSGTYPES or file is None:
        return None
    assert isinstance(msgtype, str)
    info = content.get("info")
    info = info if isinstance(info, Mapping) else {}
    body = content.get("body")
    body = body if isinstance(body, str) else ""
    filename = content.get("filename")
    # MSC2530: with a `filename`, a different `body` is a caption; without one, the body is
    # the file's name.
    caption = body if isinstance(filename, str) and filename and body != filename else ""
    name = filename if isinstance(filename, str) and filename else body
    mimetype = info.get("mimetype")
    size = info.get("size")
    thumbnail_info = info.get("thumbnail_info")
    return Attachment(
        msgtype=msgtype,
        filename=_safe_name(name, msgtype),
        caption=caption.strip(),
        mimetype=mimetype.lower() if isinstance(mimetype, str) and mimetype else DEFAULT_TYPE,
        declared_size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        file=file,
        thumbnail=EncryptedFile.of(info.get("thumbnail_file")),
        thumbnail_info=thumbnail_info if isinstance(thumbnail_info, Mapping) else {},
        info=info,
    )


def _safe_name(name: str, msgtype: str) -> str:
    """A file name without path or control characters, never empty."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()[:200]
    return base or msgtype.removeprefix("m.")


def type_allowed(mimetype: str, patterns: Sequence[str]) -> bool:
    """`mimetype` matches one of `patterns` (`image/jpeg`, or `image/*` for a whole family)."""
    major = mimetype.split("/", 1)[0]
    return any(pattern == mimetype or pattern == f"{major}/*" for pattern in patterns)


@dataclass(frozen=True)
class AttachmentRefusal:
    """Why an attachment was not taken: a message id (`attachment.refused.*`) and its
    parameters, and the reason recorded on the audit log."""

    reason: str
    params: Mapping[str, object]

    @property
    def msg_id(self) -> str:
        return f"attachment.refused.{self.reason}"


def refusal_of(attachment: Attachment, policy: AttachmentsConfig,
            size: int | None = None) -> AttachmentRefusal | None:
    """Whether the config refuses the attachment, judged by its declared type and size, or
    by `size` (the decrypted bytes') once known."""
    if not type_allowed(attachment.mimetype, policy.types):
        return AttachmentRefusal("type", {"name": attachment.filename,
                                          "type": attachment.mimetype,
                                          "types": ", ".join(policy.types)})
    actual = size if size is not None else attachment.declared_size
    if actual is not None and actual > policy.max_bytes:
        return AttachmentRefusal("too_large", {"name": attachment.filename, "size": actual,
                                               "limit": policy.max_bytes})
    return None


def in_window(alert_ms: int, sent_ms: int, window_ms: int) -> bool:
    """A bare attachment sent `sent_ms` belongs to an alert the bot took at `alert_ms`:
    within the window either side, since the bot may take the alert a moment after the
    homeserver stamped a photo sent right behind it."""
    return abs(sent_ms - alert_ms) <= window_ms


@dataclass(frozen=True)
class Fetched:
    """An attachment's decrypted bytes, verified, and their digest for the chain of custody."""

    data: bytes
    sha256: str
    """Hex SHA-256 of the decrypted bytes."""

    @classmethod
    def of(cls, data: bytes) -> Fetched:
        return cls(data=data, sha256=hashlib.sha256(data).hexdigest())


def timeline_detail(attachment: Attachment, fetched: Fetched, event_id: str) -> dict[str, Any]:
    """What the timeline (and the audit log, without the name) keeps about an attachment."""
    return {"event_id": event_id, "sha256": fetched.sha256, "size": len(fetched.data),
            "mimetype": attachment.mimetype, "msgtype": attachment.msgtype,
            "name": attachment.filename}


def media_fields(attachment: Attachment, *, file: Mapping[str, Any], size: int,
                 thumbnail: Mapping[str, Any] | None) -> dict[str, Any]:
    """What makes the bot's message about an attachment a media event of the same kind: the
    re-encrypted upload's `file`, the name and `info` (dimensions and duration kept). The
    body is the bot's caption (`case_render.render_attachment_notice`), escaped like any
    relayed text."""
    info: dict[str, Any] = {"mimetype": attachment.mimetype, "size": size}
    for key in ("w", "h", "duration"):
        value = attachment.info.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            info[key] = value
    if thumbnail is not None:
        info["thumbnail_file"] = dict(thumbnail)
        info["thumbnail_info"] = {key: value for key, value in attachment.thumbnail_info.items()
                                  if key in ("w", "h", "mimetype", "size")}
    return {"msgtype": attachment.msgtype, "filename": attachment.filename, "file": dict(file),
            "info": info}
