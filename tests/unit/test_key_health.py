"""What the bot says and counts when the homeserver refuses its one-time keys."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from nio import KeysUploadError, KeysUploadResponse

from liaison.bot.key_health import KeyHealth, upload_keys

REFUSAL = ("One time key signed_curve25519:AAAAAAAAADs already exists. Old key: {\"key\": "
           "\"oWRO9\"}; new key: {'key': '3Ckwg'}")


class Uploads:
    """A client whose keys/upload answers come from a list."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)

    async def keys_upload(self) -> Any:
        return self.answers.pop(0)


def refused(status: int, message: str = REFUSAL) -> KeysUploadError:
    error = KeysUploadError(message, "M_UNKNOWN")
    error.transport_response = SimpleNamespace(status=status)  # type: ignore[assignment]
    return error


async def test_a_refused_upload_names_a_stale_store_once_and_counts_every_refusal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = KeyHealth()
    client = Uploads(refused(400), refused(400), KeysUploadResponse(50, 50))

    with caplog.at_level(logging.DEBUG, logger="liaison.bot.key_health"):
        assert await upload_keys(client, health) is None  # type: ignore[arg-type]
        assert await upload_keys(client, health) is None  # type: ignore[arg-type]
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert health.upload_rejected == ("HTTP 400 One time key signed_curve25519:"
                                          "AAAAAAAAADs already exists")
        assert await upload_keys(client, health) is not None  # type: ignore[arg-type]

    assert len(errors) == 1
    assert errors[0].startswith("the homeserver refuses the bot's one-time keys (HTTP 400 "
                                "One time key signed_curve25519:AAAAAAAAADs already exists)")
    assert "the store is older than the device it belongs to" in errors[0]
    assert "Old key" not in errors[0]
    assert health.upload_failures == 2
    assert health.upload_rejected is None and health.one_time_keys_on_server == 50


async def test_an_unanswered_upload_is_a_warning_and_does_not_make_the_bot_unhealthy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = KeyHealth()
    with caplog.at_level(logging.WARNING, logger="liaison.bot.key_health"):
        assert await upload_keys(Uploads(refused(502, "Bad Gateway")), health) is None  # type: ignore[arg-type]
    assert health.upload_failures == 1 and health.upload_rejected is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
