"""Opening the stored device: a crypto store written under another pickle key is a
start-up refusal that says so, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from liaison.bot.session import (
    CREDENTIALS_FILE,
    Credentials,
    SessionSettings,
    StartupError,
    _new_client,
    open_session,
)

USER = "@liaison:example.org"
DEVICE = "LIAISONDEV"


def settings(data_dir: Path, pickle_key: str) -> SessionSettings:
    return SessionSettings(homeserver="http://127.0.0.1:9", user_id=USER,
                           device_name="Liaison", data_dir=data_dir, pickle_key=pickle_key,
                           password=None, access_token=None)


async def test_a_changed_pickle_key_is_refused_with_an_explanation(tmp_path: Path) -> None:
    first = settings(tmp_path, "the key the store was written with")
    tmp_path.chmod(0o700)
    Credentials(first.homeserver, USER, DEVICE, "token").save(tmp_path / CREDENTIALS_FILE)
    client = _new_client(first, USER, DEVICE)
    client.restore_login(USER, DEVICE, "token")  # creates and pickles the Olm account
    assert client.olm is not None
    await client.close()

    with pytest.raises(StartupError, match=r"bot\.pickle_key") as refused:
        await open_session(settings(tmp_path, "another key"))
    assert DEVICE in str(refused.value)
    assert "another key" not in str(refused.value)


async def serve_login(status: int, body: str, content_type: str) -> tuple[web.AppRunner, str]:
    """A homeserver whose /login always answers `status` with `body`."""
    async def login(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, content_type=content_type)

    app = web.Application()
    app.router.add_post("/_matrix/client/v3/login", login)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(("status", "body", "content_type", "refused"), [
    (403, '{"errcode": "M_FORBIDDEN", "error": "Invalid password"}', "application/json", True),
    (403, '{"errcode": "M_FORBIDDEN"}', "application/json", True),  # nio keeps no errcode
    (404, "<html><body>Not Found</body></html>", "text/html", True),  # not a homeserver
    (502, "<html><body>502 Bad Gateway</body></html>", "text/html", False),
    (503, '{"errcode": "M_UNKNOWN", "error": "Synapse is starting"}', "application/json",
     False),
    (429, '{"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", '
          '"retry_after_ms": 100}', "application/json", False),
])
async def test_a_first_login_refused_stops_start_up_but_a_proxy_error_is_retried(
    tmp_path: Path, status: int, body: str, content_type: str, refused: bool,
) -> None:
    runner, url = await serve_login(status, body, content_type)
    try:
        tmp_path.chmod(0o700)
        first = SessionSettings(homeserver=url, user_id=USER, device_name="Liaison",
                                data_dir=tmp_path, pickle_key="key", password="secret",
                                access_token=None)
        expected = StartupError if refused else ConnectionError
        with pytest.raises(expected) as raised:
            await open_session(first)
        assert f"HTTP {status}" in str(raised.value)
        assert "secret" not in str(raised.value)
        assert not (tmp_path / CREDENTIALS_FILE).exists()
    finally:
        await runner.cleanup()
