"""Plain JSON calls to client-server endpoints that matrix-nio does not wrap.

matrix-nio 0.26 has no cross-signing API, and its key query drops the
cross-signing keys, so those few endpoints are called here directly through
the client's own HTTP session and access token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nio import AsyncClient


@dataclass(frozen=True)
class ApiResult:
    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def homeserver_away(self) -> bool:
        """A 5xx (a proxy's page while Synapse restarts) or a rate limit: worth asking
        again later, unlike any other answer."""
        return self.status >= 500 or self.status == 429

    @property
    def errcode(self) -> str | None:
        value = self.body.get("errcode")
        return value if isinstance(value, str) else None


class ApiError(Exception):
    """A homeserver answered an unexpected status; carries it for the caller's message."""

    def __init__(self, what: str, result: ApiResult) -> None:
        detail = result.body.get("error") or result.body.get("errcode") or ""
        super().__init__(f"{what} failed: HTTP {result.status} {detail}".rstrip())
        self.result = result


async def request_json(
    client: AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    timeout: float = 30.0,
) -> ApiResult:
    """Call `path` (starting with /_matrix/...) with the client's token; parse the JSON answer."""
    headers = {"Content-Type": "application/json"}
    if client.access_token:
        headers["Authorization"] = f"Bearer {client.access_token}"
    data = json.dumps(body) if body is not None else None
    response = await client.send(method, path, data, headers, timeout=timeout)
    try:
        text = await response.text()
    finally:
        response.release()
    try:
        parsed = json.loads(text) if text else {}
    except json.JSONDecodeError:
        parsed = {"error": text[:200]}
    if not isinstance(parsed, dict):
        parsed = {"value": parsed}
    return ApiResult(response.status, parsed)
