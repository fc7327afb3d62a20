"""Field types shared by the configuration sections: Matrix ids, server names, rates,
listen hosts and paths relative to the config file."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

from liaison.commands.flood import Rate
from liaison.commands.model import MXID_RE, SERVER_NAME

_SERVER_NAME_RE = re.compile(rf"^{SERVER_NAME}$")


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
