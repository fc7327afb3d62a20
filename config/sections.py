"""The sections of the configuration file, one model each."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from liaison.commands.durations import Duration
from liaison.commands.flood import Rate
from liaison.commands.model import ROOM_ID_RE
from liaison.config.fields import RateLimit, ServerName, UserId, _check_listen_host, _Section
from liaison.config.secrets import SecretRef


class HomeserverConfig(_Section):
    """The Matrix homeserver the bot logs in to."""

    url: str = Field(description="Client-server API base URL, http:// or https://")
    allow_insecure_http: bool = Field(
        default=False, description="Accept http:// to a host other than this machine: "
                                   "the access token and every event would cross the "
                                   "network unencrypted")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PydanticCustomError(
                "url", "url must start with https:// (or http://) and name a host"
            )
        if parts.query or parts.fragment:
            raise PydanticCustomError("url", "url must not have a query or fragment")
        return value.rstrip("/")


class BotConfig(_Section):
    """The bot's own Matrix account and the key that protects its crypto store."""

    user_id: UserId
    device_name: str = Field(default="Liaison", min_length=1)
    display_name: str = Field(default="Liaison", min_length=1, max_length=100,
                              description="The name clients show for the bot; set at start "
                                          "only when the profile differs")
    password: SecretRef | None = None
    access_token: SecretRef | None = None
    pickle_key: SecretRef

    @model_validator(mode="after")
    def _needs_a_credential(self) -> BotConfig:
        if self.password is None and self.access_token is None:
            raise PydanticCustomError(
                "credential", "give the bot a password or an access_token (or both)"
            )
        return self

    @property
    def server_name(self) -> str:
        """The server part of the bot's user id: `liaison.example`."""
        return self.user_id.split(":", 1)[1]

    def secrets(self) -> Iterator[tuple[str, SecretRef]]:
        """The configured secret references with their field names."""
        for name in ("password", "access_token", "pickle_key"):
            ref = getattr(self, name)
            if ref is not None:
                yield name, ref


class AllowedInviters(_Section):
    """Who may invite the bot into a room: listed users and anyone on listed servers."""

    users: tuple[UserId, ...] = ()
    servers: tuple[ServerName, ...] = ()


class AccessConfig(_Section):
    """Who may bring the bot into rooms and who administers it."""

    allowed_inviters: AllowedInviters = AllowedInviters()
    admins: tuple[UserId, ...] = ()
    admins_room: str | None = Field(
        default=None, description="Room (quoted id) where the bot tells the admins of rooms "
                                  "it was brought into that are no post's")

    @field_validator("admins_room")
    @classmethod
    def _check_admins_room(cls, value: str | None) -> str | None:
        if value is not None and not ROOM_ID_RE.match(value):
            raise ValueError("admins_room must be a Matrix room id such as !abc123:example.org")
        return value


TrustPolicy: TypeAlias = Literal["tofu", "cross-signed"]


class TrustConfig(_Section):
    """Which devices of room members the bot encrypts to and accepts messages from.

    `tofu` trusts a member's devices as first seen and notices when they change;
    `cross-signed` trusts only devices the member has cross-signed.
    """

    policy: TrustPolicy
    notify_device_changes: bool = True


LogLevel: TypeAlias = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat: TypeAlias = Literal["text", "json"]


class LoggingConfig(_Section):
    level: LogLevel = "INFO"
    format: LogFormat = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class SyncConfig(_Section):
    """Long-polling against the homeserver and how long to back off when it is away."""

    timeout: Duration = timedelta(seconds=30)
    backoff_max: Duration = timedelta(seconds=60)


class DecryptionConfig(_Section):
    """How long to wait for a missing room key before telling the sender."""

    grace_period: Duration = timedelta(seconds=30)


class OutboxConfig(_Section):
    """Delivery of queued outgoing messages."""

    max_attempts: Annotated[StrictInt, Field(ge=1)] | None = Field(
        default=None, description="Give up after this many attempts; None retries forever"
    )
    backoff_max: Duration = timedelta(seconds=60)
    concurrency: Annotated[StrictInt, Field(ge=1)] = 16


class LimitsConfig(_Section):
    """Flood control (see `commands.flood`): commands over a limit are not run, replies and
    attachments on cases over theirs are not carried, and the sender is told once per
    window."""

    commands_per_user: RateLimit = Rate(10, timedelta(minutes=1))
    commands_per_room: RateLimit = Rate(30, timedelta(minutes=1))
    # Replies, attachments and edits of alerts on cases, carried into other posts' rooms.
    case_messages_per_user: RateLimit = Rate(20, timedelta(minutes=1))
    case_messages_per_room: RateLimit = Rate(60, timedelta(minutes=1))


class RetentionConfig(_Section):
    """How long finished cases keep their content (see `storage.retention`)."""

    closed_cases: Duration | None = Field(
        default=timedelta(days=90),
        description="Purge closed and cancelled cases this long after they were finished; "
                    "None keeps them",
    )

    @field_validator("closed_cases")
    @classmethod
    def _at_least_a_day(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(days=1):
            raise PydanticCustomError(
                "retention", "keep closed cases at least 1d (a typo such as 90m for 90d "
                             "would purge them within the hour)")
        return value


class HitsConfig(_Section):
    """Matching every case's identifiers and people against the cases the bot holds
    (`commands.entities`, `commands.hits`, `handlers.hits`)."""

    enabled: bool = True
    name_threshold: Annotated[StrictInt, Field(ge=50, le=100)] = Field(
        default=90, description="Score (0-100) from which two names are a possible hit")
    max_entities_per_case: Annotated[StrictInt, Field(ge=1, le=1000)] = Field(
        default=50, description="Entities matched from one case; the rest are dropped")
    max_value_chars: Annotated[StrictInt, Field(ge=16, le=1000)] = Field(
        default=120, description="A field value longer than this is not an identifier")
    max_notices_per_case: Annotated[StrictInt, Field(ge=1, le=1000)] = Field(
        default=20, description="Links of one new case told as hit notices; the rest are "
                                "listed by !links, and its origin is told how many")


class BackupsConfig(_Section):
    """Scheduled `liaison backup` archives, written by the running bot (`bot.backup`)."""

    every: Duration | None = Field(
        default=None, description="Write an archive this often; None (the default) writes none")
    keep: Annotated[StrictInt, Field(ge=1)] = Field(
        default=7, description="How many of the newest scheduled archives to keep")
    dir: Path | None = Field(
        default=None, description="Where the archives go; default DATA_DIR/archives")
    encrypt_to: str | None = Field(
        default=None, description="Seal each archive to this public key (`liaison backup-key`)")

    @field_validator("encrypt_to")
    @classmethod
    def _a_public_key(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise PydanticCustomError("backups", "not a public key from `liaison backup-key` "
                                                 "(32 bytes, base64)")
        return value

    @field_validator("every")
    @classmethod
    def _at_least_a_minute(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(minutes=1):
            raise PydanticCustomError("backups", "back up at most once a minute")
        return value


class MetricsConfig(_Section):
    """The optional HTTP listener for Prometheus (`/metrics`) and health checks
    (`/healthz`, see `bot.health`)."""

    enabled: bool = False
    host: Annotated[str, BeforeValidator(_check_listen_host)] = Field(
        default="127.0.0.1", description="Address to listen on; loopback unless a "
                                         "scraper elsewhere needs it (then the bot warns)")
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = 9464
    sync_stalled_after: Duration = Field(
        default=timedelta(minutes=5),
        description="/healthz fails when no sync has succeeded for this long")
    outbox_stuck_after: Duration = Field(
        default=timedelta(minutes=10),
        description="/healthz fails when the oldest queued message has waited this long")
