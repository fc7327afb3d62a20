"""The operator's YAML configuration: loading, validation and errors that name the line.

The file is read with ruamel.yaml's round-trip loader so every mapping and
sequence remembers where it was written; pydantic validates the shape; then the
posts, groups and category rules are checked against each other. Every problem
found is reported at once, as `config.yaml:12: bot.user_id: Field required`.

Secrets are never written in the file, only referenced (`{env: NAME}` or
`{file: PATH}`), and are read when the bot needs them.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import ipaddress
import os
import re
import stat
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from commands.attachments import AttachmentsConfig
from commands.chase_policy import ChasingConfig, escalation_target_problems
from commands.durations import Duration
from commands.flood import Rate
from commands.model import MXID_RE, ROOM_ID_RE, SERVER_NAME, Agency, CategoryRule, Group, Post
from commands.notify import NotificationSettings, quiet_post_problems
from commands.report_schedule import ReportsConfig, report_problems

INLINE_SECRET_MESSAGE = "secrets must not be written in the config; use {env: NAME} or {file: PATH}"
SAME_COUNTRY_PREFIX = "same-country:"
# Target words a group name must not shadow (`to:neighbours`).
RESERVED_TARGET_WORDS = frozenset({"neighbours", "neighbors"})

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SERVER_NAME_RE = re.compile(rf"^{SERVER_NAME}$")

Loc: TypeAlias = tuple[str | int, ...]


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration: where (dotted path, line) and what."""

    path: str
    line: int | None
    message: str

    def render(self, source: str | None = None) -> str:
        """`config.yaml:12: bot.user_id: Field required`; parts that are unknown are left out."""
        where = source or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        return ": ".join(part for part in (where, self.path, self.message) if part)


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists everything that is wrong."""

    def __init__(self, problems: Sequence[ConfigProblem], *, source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(problem.render(self.source) for problem in self.problems)


# --------------------------------------------------------------------------- field types



def _check_mxid(value: Any) -> Any:
    if isinstance(value, str) and not MXID_RE.match(value):
        raise PydanticCustomError("user_id", f"{value!r} is not a Matrix user id like @name:server")
    return value


def _check_server_name(value: Any) -> Any:
    if isinstance(value, str) and not _SERVER_NAME_RE.match(value):
        raise PydanticCustomError(
            "server_name",
            f"{value!r} is not a Matrix server name like example.org or example.org:8448",
        )
    return value


UserId = Annotated[str, BeforeValidator(_check_mxid)]
ServerName = Annotated[str, BeforeValidator(_check_server_name)]


def _relative_to_base(value: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the config file's directory, when it is known."""
    base_dir = info.context.get("base_dir") if isinstance(info.context, dict) else None
    if value.is_absolute() or base_dir is None:
        return value
    return Path(base_dir) / value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- secrets


class SecretRef(_Section):
    """Where a secret lives: an environment variable or a file, exactly one of them.

    The secret itself is never held by the configuration; `resolve()` reads it
    when the bot needs it.
    """

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_inline_secret(cls, value: Any) -> Any:
        if isinstance(value, str | int | float):
            raise PydanticCustomError("inline_secret", INLINE_SECRET_MESSAGE)
        return value

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME_RE.match(value):
            raise PydanticCustomError("env_name", f"{value!r} is not an environment variable name")
        return value

    @field_validator("file", mode="before")
    @classmethod
    def _check_file_not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise PydanticCustomError("file", "file must be a path, not empty")
        return value

    @field_validator("file")
    @classmethod
    def _resolve_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _relative_to_base(value, info)

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise PydanticCustomError(
                "secret_ref", "write exactly one of {env: NAME} or {file: PATH}"
            )
        return self

    def describe(self) -> str:
        """`environment variable LIAISON_PASSWORD` or `secret file /run/secrets/x`."""
        if self.env is not None:
            return f"environment variable {self.env}"
        return f"secret file {self.file}"

    def resolve(self, environ: Mapping[str, str] | None = None) -> str:
        """Read the secret now; raise ConfigError naming the variable or file if it is missing.

        A file's trailing newline is dropped (editors and `echo` add one).
        """
        if self.env is not None:
            value = (os.environ if environ is None else environ).get(self.env)
            if value is None:
                raise _secret_error(f"environment variable {self.env} is not set")
            if not value:
                raise _secret_error(f"environment variable {self.env} is empty")
            return value
        assert self.file is not None  # guaranteed by _exactly_one
        try:
            value = self.file.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            raise _secret_error(f"secret file {self.file} does not exist") from None
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
            raise _secret_error(f"secret file {self.file} cannot be read: {reason}") from None
        if not value:
            raise _secret_error(f"secret file {self.file} is empty")
        return value

    def exposure_warning(self) -> str | None:
        """A warning when the secret file may be read or changed by group or others."""
        if self.file is None:
            return None
        try:
            mode = self.file.stat().st_mode
        except OSError:
            return None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            return (
                f"secret file {self.file} is accessible by group or others "
                f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 on it"
            )
        return None


def _secret_error(message: str) -> ConfigError:
    return ConfigError([ConfigProblem(path="", line=None, message=message)])


# --------------------------------------------------------------------------- sections


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


def _to_rate(value: Any) -> Any:
    if value is None or isinstance(value, Rate):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("rate", "write a rate as COUNT/DURATION, like 10/1m")
    try:
        return Rate.parse(value)
    except ValueError as error:
        raise PydanticCustomError("rate", str(error)) from None


RateLimit = Annotated[Rate | None, BeforeValidator(_to_rate)]
"""A rate written in YAML as `10/1m` (COUNT/DURATION); null for no limit."""


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


_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                          r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _check_listen_host(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME_RE.match(value):
            raise PydanticCustomError(
                "host", "{host} is not an IP address or host name, like 127.0.0.1",
                {"host": value}) from None
    return value


def _insecure_homeserver(data: Mapping[str, Any]) -> list[Finding]:
    """`homeserver.url` with http:// to a host other than this machine, unless the operator
    said `allow_insecure_http: true`: the access token would cross the network in clear."""
    section = data.get("homeserver")
    if not isinstance(section, dict) or section.get("allow_insecure_http") is True:
        return []
    url = section.get("url")
    if not isinstance(url, str):
        return []
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or _is_loopback(parts.hostname):
        return []
    return [(("homeserver", "url"),
             f"http:// to {parts.hostname} sends the bot's access token and every message "
             "unencrypted over the network; use https://, or set "
             "homeserver.allow_insecure_http: true if this network is trusted")]


def _is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (`127.0.0.1`, `::1`, `localhost`)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def _metrics_warnings(config: Config) -> list[Finding]:
    """An enabled listener reachable from other machines, or a stall limit that the
    sync long-poll alone reaches."""
    metrics = config.metrics
    if not metrics.enabled:
        return []
    warnings: list[Finding] = []
    if not _is_loopback(metrics.host):
        warnings.append((("metrics", "host"),
                         f"{metrics.host} is not a loopback address: /metrics and /healthz "
                         "(no authentication) are reachable from other machines; firewall "
                         "the port or use 127.0.0.1"))
    if metrics.sync_stalled_after <= config.sync.timeout:
        warnings.append((("metrics", "sync_stalled_after"),
                         "sync_stalled_after is not longer than sync.timeout: /healthz will "
                         "fail between quiet syncs"))
    return warnings


# --------------------------------------------------------------------------- the whole file


class Config(_Section):
    """The validated configuration. Build it with `load_config` or `parse_config`.

    Treat it as read-only: the lookups below are indexed once, at construction.
    """

    homeserver: HomeserverConfig
    bot: BotConfig
    data_dir: Path = Field(description="Credentials, crypto store and database live here")
    access: AccessConfig = AccessConfig()
    trust: TrustConfig
    logging: LoggingConfig = LoggingConfig()
    sync: SyncConfig = SyncConfig()
    decryption: DecryptionConfig = DecryptionConfig()
    outbox: OutboxConfig = OutboxConfig()
    chasing: ChasingConfig = ChasingConfig()
    notifications: NotificationSettings = NotificationSettings()
    reports: ReportsConfig = ReportsConfig()
    limits: LimitsConfig = LimitsConfig()
    retention: RetentionConfig = RetentionConfig()
    attachments: AttachmentsConfig = AttachmentsConfig()
    metrics: MetricsConfig = MetricsConfig()
    backups: BackupsConfig = BackupsConfig()
    posts: list[Post] = []
    groups: list[Group] = []
    category_rules: list[CategoryRule] = []

    _warnings: list[str] = PrivateAttr(default_factory=list)
    _config_path: Path | None = PrivateAttr(default=None)
    _source_sha256: str | None = PrivateAttr(default=None)
    _posts_by_id: dict[str, Post] = PrivateAttr(default_factory=dict)
    _posts_by_room: dict[str, Post] = PrivateAttr(default_factory=dict)
    _groups_by_name: dict[str, Group] = PrivateAttr(default_factory=dict)

    @field_validator("data_dir")
    @classmethod
    def _resolve_data_dir(cls, value: Path, info: ValidationInfo) -> Path:
        return _relative_to_base(value, info)

    def model_post_init(self, context: Any, /) -> None:
        # setdefault: the first definition wins; duplicates are reported by the loader.
        for post in self.posts:
            self._posts_by_id.setdefault(post.id, post)
            self._posts_by_room.setdefault(post.room, post)
        for group in self.groups:
            self._groups_by_name.setdefault(group.name, group)

    @property
    def warnings(self) -> list[str]:
        """Things that load but look wrong, rendered like errors (`config.yaml:40: ...`)."""
        return list(self._warnings)

    @property
    def config_path(self) -> Path | None:
        """The file this configuration was loaded from, if any."""
        return self._config_path

    @property
    def source_sha256(self) -> str | None:
        """SHA-256 of the text this configuration was parsed from (secrets are only
        referenced in it, never written), for the audit log."""
        return self._source_sha256

    def post_by_id(self, post_id: str) -> Post | None:
        return self._posts_by_id.get(post_id)

    def post_by_room(self, room_id: str) -> Post | None:
        return self._posts_by_room.get(room_id)

    def with_room_languages(self, chosen: Mapping[str, str]) -> Config:
        """This configuration with each post reading the language its room chose with
        `!lang` (room id → language); itself when no post's language changes."""
        posts = [post.model_copy(update={"language": chosen[post.room]})
                 if chosen.get(post.room, post.language) != post.language else post
                 for post in self.posts]
        if all(new is old for new, old in zip(posts, self.posts, strict=True)):
            return self
        changed = self.model_copy(update={"posts": posts})
        changed._posts_by_id, changed._posts_by_room, changed._groups_by_name = {}, {}, {}
        changed.model_post_init(None)
        return changed

    def with_room_replacements(self, replaced: Mapping[str, str]) -> Config:
        """This configuration with each post whose room was upgraded served in the room
        that replaced it (`replaced`: old room id → new, as `bot.room_upgrades` records
        them; followed to the last one); the old room still names the post, so events in
        it (a case's thread) find their post. Itself when no post's room was replaced."""
        def final(room: str) -> str:
            seen = {room}
            while room in replaced and replaced[room] not in seen:
                room = replaced[room]
                seen.add(room)
            return room

        posts = [post.model_copy(update={"room": final(post.room)})
                 if final(post.room) != post.room else post for post in self.posts]
        if all(new is old for new, old in zip(posts, self.posts, strict=True)):
            return self
        changed = self.model_copy(update={"posts": posts})
        changed._posts_by_id, changed._posts_by_room, changed._groups_by_name = {}, {}, {}
        changed.model_post_init(None)
        for old in replaced:
            post = changed._posts_by_room.get(final(old))
            if post is not None:
                changed._posts_by_room.setdefault(old, post)
        return changed

    def group(self, name: str) -> Group | None:
        return self._groups_by_name.get(name)

    def name_gaps(self) -> list[str]:
        """One line per language some posts have no name in (they are shown by their
        English name in rooms reading it): what `check-config` warns about, once each."""
        gaps = []
        for language in ("ru", "ar"):
            missing = [post.id for post in self.posts if not post.names.get(language)]
            if missing:
                gaps.append(f"{len(missing)} of {len(self.posts)} posts have no names.{language}"
                            f" and are shown in English in rooms reading {language}: "
                            + ", ".join(missing))
        return gaps


# --------------------------------------------------------------------------- loading


def load_config(path: Path, *, check_secrets: bool = True) -> Config:
    """Read and validate the configuration file at `path`; raise ConfigError on any problem.

    Relative paths in the file (data_dir, secret files) are taken relative to
    the file's directory. With `check_secrets` (the default, as at start-up)
    every referenced secret must be readable now; it is not kept.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _file_error(source, f"configuration file {path} does not exist") from None
    except IsADirectoryError:
        raise _file_error(source, f"{path} is a directory, not a configuration file") from None
    except UnicodeDecodeError:
        raise _file_error(source, f"configuration file {path} is not UTF-8 text") from None
    except OSError as error:
        reason = error.strerror or str(error)
        raise _file_error(source, f"cannot read configuration file {path}: {reason}") from None
    absolute = path.resolve()
    config = parse_config(
        text, source=source, base_dir=absolute.parent, check_secrets=check_secrets
    )
    config._config_path = absolute
    return config


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    check_secrets: bool = False,
) -> Config:
    """Validate configuration text; raise ConfigError listing every problem with its line.

    `source` names the text in messages. Relative paths are resolved against
    `base_dir` when given and left relative otherwise. `check_secrets` also
    reads every referenced secret (and warns about loosely protected files);
    it is off here so that parsing touches neither the environment nor files.
    """
    root = _load_yaml(text, source)
    problems: list[ConfigProblem] = []
    data: dict[str, Any] = _plain(root, (), root, problems)
    context = {"base_dir": base_dir}
    warnings: list[ConfigProblem] = []

    config: Config | None = None
    try:
        config = Config.model_validate(data, context=context)
    except ValidationError as error:
        problems.extend(_problems_from_validation(error, root))
    cross_problems, cross_warnings = _cross_check(data)
    problems.extend(_at(root, loc, message) for loc, message in cross_problems)
    warnings.extend(_at(root, loc, message) for loc, message in cross_warnings)
    if config is not None:
        warnings.extend(_at(root, loc, message) for loc, message in _metrics_warnings(config))
    if check_secrets:
        secret_problems, secret_warnings = _check_secrets(data, context)
        problems.extend(_at(root, loc, message) for loc, message in secret_problems)
        warnings.extend(_at(root, loc, message) for loc, message in secret_warnings)

    if problems or config is None:
        raise ConfigError(_in_file_order(problems), source=source)
    config._warnings = [warning.render(source) for warning in _in_file_order(warnings)]
    config._source_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return config


def _file_error(source: str, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(path="", line=None, message=message)], source=source)


def _load_yaml(text: str, source: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        root = yaml.load(text)
    except MarkedYAMLError as error:
        raise ConfigError([_yaml_problem(error)], source=source) from None
    except YAMLError as error:
        raise ConfigError(
            [ConfigProblem("", None, f"YAML error: {error}")], source=source
        ) from None
    if root is None:
        raise ConfigError([ConfigProblem("", None, "the configuration is empty")], source=source)
    if not isinstance(root, CommentedMap):
        raise ConfigError(
            [ConfigProblem("", 1, "the configuration must be a mapping of sections (key: value)")],
            source=source,
        )
    return root


def _yaml_problem(error: MarkedYAMLError) -> ConfigProblem:
    mark = error.problem_mark or error.context_mark
    line = mark.line + 1 if mark is not None else None
    if isinstance(error, DuplicateKeyError):
        # ruamel's message quotes both values, which may be a secret: name only the key.
        match = re.search(r'found duplicate key "(.*?)" with value', str(error.problem))
        key = f" {match.group(1)!r}" if match else ""
        return ConfigProblem("", line, f"duplicate key{key}; each key may appear once")
    message = f"YAML syntax error: {error.problem or error.context}"
    if error.problem and "'@'" in error.problem:
        message += ' (quote Matrix user ids: "@name:server")'
    return ConfigProblem("", line, message)


def _plain(node: Any, loc: Loc, root: CommentedMap, problems: list[ConfigProblem]) -> Any:
    """Turn the round-trip tree into plain dicts, lists and scalars for pydantic."""
    if isinstance(node, CommentedMap):
        return {key: _plain(value, (*loc, key), root, problems) for key, value in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(item, (*loc, index), root, problems) for index, item in enumerate(node)]
    if isinstance(node, TaggedScalar):
        # `room: !abc:server` unquoted: YAML reads the leading "!" as a tag.
        intended = f"{node.tag}{node.value or ''}"
        problems.append(
            _at(
                root,
                loc,
                f"YAML reads a value starting with '!' as a tag; quote it: {intended!r}",
            )
        )
        return intended
    if isinstance(node, str):
        return str(node)
    return node


def _problems_from_validation(error: ValidationError, root: CommentedMap) -> list[ConfigProblem]:
    problems = []
    for detail in error.errors(include_url=False, include_input=False):
        loc: Loc = tuple(detail["loc"])
        if detail["type"] == "extra_forbidden":
            message = _unknown_field_message(loc)
        elif detail["type"] == "value_error" and "error" in detail.get("ctx", {}):
            message = str(detail["ctx"]["error"])
        else:
            message = detail["msg"]
        problems.append(_at(root, loc, message))
    return problems


def _unknown_field_message(loc: Loc) -> str:
    name = loc[-1]
    known = _field_names_at(loc[:-1])
    if not known:
        return f"unknown field {name!r}"
    close = difflib.get_close_matches(str(name), known, n=1)
    if close:
        return f"unknown field {name!r}; did you mean {close[0]!r}?"
    return f"unknown field {name!r}; expected one of: {', '.join(known)}"


def _field_names_at(loc: Loc) -> list[str]:
    """The field names of the model found at `loc` in Config, if it is a model."""
    model: type[BaseModel] = Config
    for step in loc:
        if isinstance(step, int):
            continue
        field = model.model_fields.get(step)
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            return []
        model = inner
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `X`, `X | None`, `list[X]` or `tuple[X, ...]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType, list, tuple, Annotated):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------- lines


def _at(root: CommentedMap, loc: Loc, message: str) -> ConfigProblem:
    return ConfigProblem(path=format_path(loc), line=_line_of(root, loc), message=message)


def format_path(loc: Iterable[str | int]) -> str:
    """`("posts", 3, "room")` -> `posts[3].room`."""
    text = ""
    for step in loc:
        if isinstance(step, int):
            text += f"[{step}]"
        else:
            text += f".{step}" if text else str(step)
    return text


def _line_of(root: CommentedMap, loc: Loc) -> int | None:
    """The 1-based line of the deepest node on `loc` that exists in the file.

    A missing field therefore points at its parent mapping; a key reached
    through a YAML merge (`<<: *defaults`) points at the mapping that merged it.
    """
    node: Any = root
    line: int | None = root.lc.line + 1
    for step in loc:
        try:
            if isinstance(node, CommentedMap) and step in node:
                position = node.lc.key(step)
            elif isinstance(node, CommentedSeq) and isinstance(step, int) and step < len(node):
                position = node.lc.item(step)
            else:
                break
        except (KeyError, TypeError, IndexError):
            break
        line = position[0] + 1
        node = node[step]
    return line


def _in_file_order(problems: Iterable[ConfigProblem]) -> list[ConfigProblem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda problem: (problem.line is None, problem.line or 0))


# --------------------------------------------------------------------------- cross-checks

Finding: TypeAlias = tuple[Loc, str]


def _cross_check(data: dict[str, Any]) -> tuple[list[Finding], list[Finding]]:
    """Check posts, groups and category rules against each other on the raw data.

    This runs even when some entries failed validation, so that one run of
    `liaison check-config` shows everything. Returns (problems, warnings).
    """
    posts = _mappings(data.get("posts"))
    groups = _mappings(data.get("groups"))
    rules = _mappings(data.get("category_rules"))
    problems: list[Finding] = []
    warnings: list[Finding] = []

    first_by_id: dict[str, int] = {}
    first_by_room: dict[str, int] = {}
    neighbours_of: dict[str, set[str]] = {}
    for index, post in posts:
        post_id, room = post.get("id"), post.get("room")
        if isinstance(post_id, str):
            if post_id in first_by_id:
                problems.append(
                    (
                        ("posts", index, "id"),
                        f"duplicate post id {post_id}; "
                        f"already used by posts[{first_by_id[post_id]}]",
                    )
                )
            else:
                first_by_id[post_id] = index
                neighbours_of[post_id] = set(_strings(post.get("neighbours")))
        if isinstance(room, str):
            if room in first_by_room:
                other = first_by_room[room]
                problems.append(
                    (
                        ("posts", index, "room"),
                        f"room {room} is already the room of "
                        f"{_post_label(posts, other)}; each post needs its own room",
                    )
                )
            else:
                first_by_room[room] = index
    known_ids = list(first_by_id)

    for index, post in posts:
        post_id = post.get("id")
        for position, neighbour in _indexed_strings(post.get("neighbours")):
            loc: Loc = ("posts", index, "neighbours", position)
            if neighbour == post_id:
                problems.append((loc, "a post cannot be its own neighbour"))
            elif neighbour not in first_by_id:
                problems.append((loc, _unknown_post(neighbour, known_ids)))
            elif isinstance(post_id, str) and post_id not in neighbours_of[neighbour]:
                warnings.append(
                    (
                        loc,
                        f"{post_id} lists {neighbour} as a neighbour but {neighbour} "
                        f"does not list {post_id}; alerts to neighbours will flow one way",
                    )
                )

    problems.extend(_check_groups(groups, posts, known_ids))
    problems.extend(_check_rules(rules, known_ids))
    problems.extend(escalation_target_problems(data))
    problems.extend(quiet_post_problems(data))
    problems.extend(_insecure_homeserver(data))
    problems.extend(report_problems(data))
    return problems, warnings


def _check_groups(
    groups: list[tuple[int, dict[str, Any]]],
    posts: list[tuple[int, dict[str, Any]]],
    known_ids: list[str],
) -> list[Finding]:
    problems: list[Finding] = []
    countries = {post["country"] for _, post in posts if isinstance(post.get("country"), str)}
    upper_ids = {post_id.upper() for post_id in known_ids}
    first_by_name: dict[str, int] = {}
    for index, group in groups:
        name = group.get("name")
        if isinstance(name, str):
            loc: Loc = ("groups", index, "name")
            if name in first_by_name:
                problems.append(
                    (
                        loc,
                        f"duplicate group name {name}; "
                        f"already used by groups[{first_by_name[name]}]",
                    )
                )
            else:
                first_by_name[name] = index
            if name.upper() in upper_ids:
                problems.append((loc, f"group name {name} is also a post id; rename the group"))
            elif name.upper() in countries or len(name) == 2:
                problems.append(
                    (loc, f"group name {name} could be read as a country code; rename the group")
                )
            elif name.lower() in RESERVED_TARGET_WORDS:
                problems.append((loc, f"group name {name} is a reserved target word"))
        for position, post_id in _indexed_strings(group.get("posts")):
            if post_id not in known_ids:
                problems.append(
                    (("groups", index, "posts", position), _unknown_post(post_id, known_ids))
                )
    return problems


def _check_rules(rules: list[tuple[int, dict[str, Any]]], known_ids: list[str]) -> list[Finding]:
    problems: list[Finding] = []
    agencies = [agency.value for agency in Agency]
    for index, rule in rules:
        for position, target in _indexed_strings(rule.get("add")):
            loc: Loc = ("category_rules", index, "add", position)
            if target.startswith(SAME_COUNTRY_PREFIX):
                agency = target.removeprefix(SAME_COUNTRY_PREFIX)
                if agency not in agencies:
                    close = difflib.get_close_matches(agency, agencies, n=1)
                    hint = f"did you mean {close[0]}?" if close else f"one of {', '.join(agencies)}"
                    problems.append((loc, f"unknown agency {agency!r} in {target!r}; {hint}"))
            elif target not in known_ids:
                problems.append(
                    (
                        loc,
                        _unknown_post(target, known_ids, extra=f" or {SAME_COUNTRY_PREFIX}AGENCY"),
                    )
                )
    return problems


def _unknown_post(post_id: str, known_ids: list[str], *, extra: str = "") -> str:
    by_upper = {known.upper(): known for known in known_ids}
    close = difflib.get_close_matches(post_id.upper(), list(by_upper), n=1)
    if close:
        return f"unknown post id {post_id!r}; did you mean {by_upper[close[0]]}?"
    return f"unknown post id {post_id!r}; expected a configured post id{extra}"


def _post_label(posts: list[tuple[int, dict[str, Any]]], index: int) -> str:
    post = dict(posts)[index]
    post_id = post.get("id")
    return f"{post_id} (posts[{index}])" if isinstance(post_id, str) else f"posts[{index}]"


def _mappings(value: Any) -> list[tuple[int, dict[str, Any]]]:
    if not isinstance(value, list):
        return []
    return [(index, item) for index, item in enumerate(value) if isinstance(item, dict)]


def _strings(value: Any) -> list[str]:
    return [item for _, item in _indexed_strings(value)]


def _indexed_strings(value: Any) -> list[tuple[int, str]]:
    if not isinstance(value, list):
        return []
    return [(index, item) for index, item in enumerate(value) if isinstance(item, str)]


def _check_secrets(
    data: dict[str, Any], context: dict[str, Any]
) -> tuple[list[Finding], list[Finding]]:
    """Read every referenced secret once, so a missing one stops start-up with its line."""
    problems: list[Finding] = []
    warnings: list[Finding] = []
    bot = data.get("bot")
    if not isinstance(bot, dict):
        return problems, warnings
    for name in ("password", "access_token", "pickle_key"):
        raw = bot.get(name)
        if raw is None:
            continue
        try:
            ref = SecretRef.model_validate(raw, context=context)
        except ValidationError:
            continue  # already reported by the main validation
        loc: Loc = ("bot", name)
        try:
            ref.resolve()
        except ConfigError as error:
            problems.extend((loc, problem.message) for problem in error.problems)
            continue
        exposure = ref.exposure_warning()
        if exposure is not None:
            warnings.append((loc, exposure))
    return problems, warnings


__all__ = [
    "INLINE_SECRET_MESSAGE",
    "AccessConfig",
    "AllowedInviters",
    "AttachmentsConfig",
    "BotConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "DecryptionConfig",
    "Duration",
    "HomeserverConfig",
    "LimitsConfig",
    "LogFormat",
    "LogLevel",
    "LoggingConfig",
    "MetricsConfig",
    "OutboxConfig",
    "RetentionConfig",
    "SecretRef",
    "SyncConfig",
    "TrustConfig",
    "TrustPolicy",
    "format_path",
    "load_config",
    "parse_config",
]
