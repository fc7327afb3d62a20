"""The operator's YAML configuration: loading, validation and errors that name the line.

The file is read with ruamel.yaml's round-trip loader so every mapping and
sequence remembers where it was written; pydantic validates the shape; then the
posts, groups and category rules are checked against each other. Every problem
found is reported at once, as `config.yaml:12: bot.user_id: Field required`.

Secrets are never written in the file, only referenced (`{env: NAME}` or
`{file: PATH}`), and are read when the bot needs them.

The package follows those seams: `errors` (a problem and its line), `fields` (shared
field types), `secrets`, `sections` (one model per section), `model` (`Config`, the
whole file), `loading` (YAML with line numbers) and `checks` (the cross-checks).
"""

from __future__ import annotations

from liaison.commands.attachments import AttachmentsConfig
from liaison.commands.durations import Duration
from liaison.config.checks import RESERVED_TARGET_WORDS, SAME_COUNTRY_PREFIX
from liaison.config.errors import ConfigError, ConfigProblem, Finding, Loc
from liaison.config.fields import RateLimit, ServerName, UserId
from liaison.config.loading import format_path, load_config, parse_config
from liaison.config.model import Config
from liaison.config.secrets import INLINE_SECRET_MESSAGE, SecretRef
from liaison.config.sections import (
    AccessConfig,
    AllowedInviters,
    BackupsConfig,
    BotConfig,
    DecryptionConfig,
    HomeserverConfig,
    LimitsConfig,
    LogFormat,
    LoggingConfig,
    LogLevel,
    MetricsConfig,
    OutboxConfig,
    RetentionConfig,
    SyncConfig,
    TrustConfig,
    TrustPolicy,
)

__all__ = [
    "INLINE_SECRET_MESSAGE",
    "RESERVED_TARGET_WORDS",
    "SAME_COUNTRY_PREFIX",
    "AccessConfig",
    "AllowedInviters",
    "AttachmentsConfig",
    "BackupsConfig",
    "BotConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "DecryptionConfig",
    "Duration",
    "Finding",
    "HomeserverConfig",
    "LimitsConfig",
    "Loc",
    "LogFormat",
    "LogLevel",
    "LoggingConfig",
    "MetricsConfig",
    "OutboxConfig",
    "RateLimit",
    "RetentionConfig",
    "SecretRef",
    "ServerName",
    "SyncConfig",
    "TrustConfig",
    "TrustPolicy",
    "UserId",
    "format_path",
    "load_config",
    "parse_config",
]
