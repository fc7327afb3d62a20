"""Signing and verifying cross-signing objects the way Matrix clients check them."""

from __future__ import annotations

import copy
import stat
from pathlib import Path

from liaison.bot.crosssigning import (
    CrossSigningSeeds,
    SigningKey,
    build_public_keys,
    canonical_bytes,
    device_is_cross_signed,
    load_seeds,
    save_seeds,
    verify_signature,
)

USER = "@liaison:example.org"


def _device(user_id: str = USER) -> dict[str, object]:
    return {
        "user_id": user_id,
        "device_id": "ABCDEFGHIJ",
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {"curve25519:ABCDEFGHIJ": "c" * 43, "ed25519:ABCDEFGHIJ": "e" * 43},
        "signatures": {user_id: {"ed25519:ABCDEFGHIJ": "s" * 86}},
        "unsigned": {"device_display_name": "Liaison"},
    }


def test_canonical_json_ignores_signatures_and_unsigned_and_sorts_keys() -> None:
    obj = {"b": 1, "a": "é", "signatures": {"x": 1}, "unsigned": {"y": 2}}
    assert canonical_bytes(obj) == '{"a":"é","b":1}'.encode()


def test_signature_verifies_and_key_ids_are_unpadded() -> None:
    key = SigningKey(bytes(range(32)))
    assert "=" not in key.public and len(key.public) == 43
    signed = key.sign({"hello": "world"}, USER)
    signature = signed["signatures"][USER][key.key_id]
    assert "=" not in signature
    assert verify_signature(signed, USER, key.public)
    tampered = dict(signed, hello="mars")
    assert not verify_signature(tampered, USER, key.public)


def test_device_chain_verifies_only_when_every_link_is_signed() -> None:
    seeds = CrossSigningSeeds.generate()
    keys = build_public_keys(USER, seeds)
    device = SigningKey(seeds.self_signing).sign(_device(), USER)
    assert device_is_cross_signed(USER, device, keys["master_key"], keys["self_signing_key"])

    assert not device_is_cross_signed(USER, _device(), keys["master_key"],
                                      keys["self_signing_key"])
    other_master = build_public_keys(USER, CrossSigningSeeds.generate())["master_key"]
    assert not device_is_cross_signed(USER, device, other_master, keys["self_signing_key"])
    forged_ssk = copy.deepcopy(keys["self_signing_key"])
    forged_ssk["usage"] = ["user_signing"]
    assert not device_is_cross_signed(USER, device, keys["master_key"], forged_ssk)
    assert not device_is_cross_signed(USER, device, None, keys["self_signing_key"])


def test_device_signed_by_the_usk_is_not_cross_signed() -> None:
    seeds = CrossSigningSeeds.generate()
    keys = build_public_keys(USER, seeds)
    device = SigningKey(seeds.user_signing).sign(_device(), USER)
    assert not device_is_cross_signed(USER, device, keys["master_key"], keys["self_signing_key"])


def test_seeds_round_trip_through_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "cross-signing.json"
    seeds = CrossSigningSeeds.generate()
    save_seeds(path, seeds)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_seeds(path) == seeds
    assert load_seeds(tmp_path / "missing.json") is None
