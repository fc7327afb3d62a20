"""Opening the stored device: a crypto store written under another pickle key is a
start-up refusal that says so, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.session import (
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
