"""Secrets: never written in the file, only referenced (`{env: NAME}` or
`{file: PATH}`), and read when the bot needs them."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from liaison.config.errors import ConfigError, ConfigProblem, Finding, Loc
from liaison.config.fields import _relative_to_base, _Section

INLINE_SECRET_MESSAGE = "secrets must not be written in the config; use {env: NAME} or {file: PATH}"
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
