"""Attachments, the pure part: what an encrypted media event says about itself, what the
config accepts, which alert a bare attachment follows, what the relayed event carries."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from liaison.commands.attachments import (
    AttachmentsConfig,
    Fetched,
    attachment_of,
    in_window,
    media_fields,
    refusal_of,
    timeline_detail,
    type_allowed,
)
from liaison.storage.cases import recordable

FILE = {"url": "mxc://kz.example/abc", "v": "v2", "iv": "aXY", "key": {"k": "a2V5"},
        "hashes": {"sha256": "aGFzaA"}}


def image(**overrides: Any) -> dict[str, Any]:
    content: dict[str, Any] = {"msgtype": "m.image", "body": "plate.jpg", "file": dict(FILE),
                               "info": {"mimetype": "image/jpeg", "size": 1200, "w": 640,
                                        "h": 480}}
    content.update(overrides)
    return content


def test_an_encrypted_image_is_an_attachment_named_by_its_body() -> None:
    attachment = attachment_of(image())
    assert attachment is not None
    assert (attachment.msgtype, attachment.filename, attachment.caption) == (
        "m.image", "plate.jpg", "")
    assert (attachment.mimetype, attachment.declared_size) == ("image/jpeg", 1200)
    assert attachment.file.url == "mxc://kz.example/abc" and attachment.file.key == "a2V5"
    assert attachment.thumbnail is None


def test_with_a_filename_the_body_is_a_caption() -> None:
    attachment = attachment_of(image(filename="plate.jpg", body="Plate of the Kamaz"))
    assert attachment is not None
    assert (attachment.filename, attachment.caption) == ("plate.jpg", "Plate of the Kamaz")


@pytest.mark.parametrize("content", [
    {"msgtype": "m.text", "body": "hello"},
    image(file=None, url="mxc://kz.example/abc"),  # unencrypted media is never taken
    image(file={**FILE, "hashes": {}}),
    image(file={**FILE, "url": "https://kz.example/abc"}),
    image(file={**FILE, "key": "not a jwk"}),
])
def test_what_is_not_an_encrypted_attachment(content: dict[str, Any]) -> None:
    assert attachment_of(content) is None


def test_file_names_lose_paths_and_control_characters() -> None:
    attachment = attachment_of(image(body="../../etc/pass\u202ewd\n"))
    assert attachment is not None and attachment.filename == "passwd"
    unnamed = attachment_of(image(body=""))
    assert unnamed is not None and unnamed.filename == "image"


def test_types_match_exactly_or_by_family() -> None:
    patterns = ["image/*", "application/pdf"]
    assert type_allowed("image/png", patterns)
    assert type_allowed("application/pdf", patterns)
    assert not type_allowed("application/zip", patterns)
    assert not type_allowed("imagex/png", patterns)


def test_refusals_by_type_then_by_declared_or_actual_size() -> None:
    policy = AttachmentsConfig(max_bytes=1000, types=["image/*"])
    attachment = attachment_of(image())
    assert attachment is not None
    too_large = refusal_of(attachment, policy)
    assert too_large is not None and too_large.msg_id == "attachment.refused.too_large"
    assert too_large.params["size"] == 1200 and too_large.params["limit"] == 1000
    assert refusal_of(attachment, policy, size=900) is None
    pdf = attachment_of(image(info={"mimetype": "application/pdf", "size": 10}))
    assert pdf is not None
    refused = refusal_of(pdf, policy)
    assert refused is not None and refused.reason == "type"
    untyped = attachment_of(image(info={}))
    assert untyped is not None and untyped.mimetype == "application/octet-stream"
    assert refusal_of(untyped, policy) is not None


def test_config_refuses_malformed_types_and_lowercases() -> None:
    assert AttachmentsConfig(types=["Image/*"]).types == ["image/*"]
    for bad in ("image", "*/*", "image/j*"):
        with pytest.raises(ValidationError):
            AttachmentsConfig(types=[bad])
    with pytest.raises(ValidationError):
        AttachmentsConfig(max_bytes=0)
    assert AttachmentsConfig(window="90s").window == timedelta(seconds=90)  # type: ignore[arg-type]


def test_window_after_an_alert() -> None:
    assert in_window(10_000, 10_000 + 120_000, 120_000)
    assert not in_window(10_000, 10_000 + 120_001, 120_000)
    assert in_window(10_000, 9_500, 120_000)  # stamped a moment before the bot took the alert


def test_the_relayed_event_carries_the_new_file_and_the_digest_is_recorded() -> None:
    attachment = attachment_of(image(filename="plate.jpg", body="caption"))
    assert attachment is not None
    new_file = {"url": "mxc://bot.example/xyz", "key": {"k": "bmV3"}, "iv": "aXY2",
                "hashes": {"sha256": "bmV3aGFzaA"}, "v": "v2"}
    fields = media_fields(attachment, file=new_file, size=1200, thumbnail=None)
    assert fields == {"msgtype": "m.image", "filename": "plate.jpg", "file": new_file,
                      "info": {"mimetype": "image/jpeg", "size": 1200, "w": 640, "h": 480}}
    fetched = Fetched.of(b"photo")
    detail = timeline_detail(attachment, fetched, "$event")
    assert detail["sha256"] == hashlib.sha256(b"photo").hexdigest() and detail["size"] == 5
    assert recordable(detail) == {"event_id": "$event", "sha256": detail["sha256"], "size": 5,
                                  "mimetype": "image/jpeg", "msgtype": "m.image"}
