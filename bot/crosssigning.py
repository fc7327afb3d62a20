"""Cross-signing of the bot's own device (MSC4153 clients share keys only with such devices).

matrix-nio has no cross-signing, so the bot keeps its own master and
self-signing Ed25519 keys (seeds in the data directory, 0600), publishes them
once, and signs its device with the self-signing key. Every start checks the
published state and repairs only what is missing; it never replaces an
identity silently, because users would see an identity-change warning and
verified users would be blocked.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import canonicaljson
from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa
from nio import AsyncClient

from liaison.bot.files import write_private_file
from liaison.bot.rawapi import ApiError, request_json

log = logging.getLogger(__name__)

KEYS_QUERY = "/_matrix/client/v3/keys/query"
DEVICE_SIGNING_UPLOAD = "/_matrix/client/v3/keys/device_signing/upload"
SIGNATURES_UPLOAD = "/_matrix/client/v3/keys/signatures/upload"


class IdentityConflict(Exception):
    """The homeserver holds a cross-signing identity this data directory cannot continue."""


def unpadded_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def decode_unpadded_b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def canonical_bytes(obj: dict[str, Any]) -> bytes:
    """Matrix canonical JSON of a signed object, without `signatures` and `unsigned`."""
    stripped = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    return bytes(canonicaljson.encode_canonical_json(stripped))


class SigningKey:
    """An Ed25519 key from a 32-byte seed, signing the way Matrix expects."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._key = ECC.construct(curve="Ed25519", seed=seed)
        self.public = unpadded_b64(self._key.public_key().export_key(format="raw"))

    @property
    def key_id(self) -> str:
        return f"ed25519:{self.public}"

    def sign(self, obj: dict[str, Any], user_id: str) -> dict[str, Any]:
        """Return a copy of `obj` with this key's signature added under `user_id`."""
        signature = eddsa.new(self._key, "rfc8032").sign(canonical_bytes(obj))
        signed = dict(obj)
        signatures = {user: dict(sigs) for user, sigs in obj.get("signatures", {}).items()}
        signatures.setdefault(user_id, {})[self.key_id] = unpadded_b64(signature)
        signed["signatures"] = signatures
        return signed


def verify_signature(obj: dict[str, Any], user_id: str, public_key: str) -> bool:
    """True when `obj` carries a valid signature by the Ed25519 key `public_key` of `user_id`."""
    signature = obj.get("signatures", {}).get(user_id, {}).get(f"ed25519:{public_key}")
    if not isinstance(signature, str):
        return False
    try:
        key = eddsa.import_public_key(decode_unpadded_b64(public_key))
        eddsa.new(key, "rfc8032").verify(canonical_bytes(obj), decode_unpadded_b64(signature))
    except (ValueError, TypeError):
        return False
    return True


def cross_signing_public_key(key_obj: dict[str, Any] | None) -> str | None:
    """The single ed25519 public key of a master/self-signing key object."""
    if not key_obj:
        return None
    keys = key_obj.get("keys", {})
    values = [v for k, v in keys.items() if k.startswith("ed25519:") and isinstance(v, str)]
    return values[0] if len(values) == 1 else None


def device_is_cross_signed(
    user_id: str,
    device: dict[str, Any],
    master_key: dict[str, Any] | None,
    self_signing_key: dict[str, Any] | None,
) -> bool:
    """The MSC4153 chain: device ← self-signing key ← master key, all signatures valid."""
    master_public = cross_signing_public_key(master_key)
    ssk_public = cross_signing_public_key(self_signing_key)
    if not master_public or not ssk_public or self_signing_key is None:
        return False
    if "self_signing" not in self_signing_key.get("usage", []):
        return False
    if self_signing_key.get("user_id") != user_id or device.get("user_id") != user_id:
        return False
    if not verify_signature(self_signing_key, user_id, master_public):
        return False
    return verify_signature(device, user_id, ssk_public)


def device_signed_by_pinned(
    user_id: str,
    device: dict[str, Any],
    master_key: dict[str, Any] | None,
    self_signing_key: dict[str, Any] | None,
    pinned_master: str,
) -> bool:
    """The chain device ← self-signing key ← master key verifies **and** the master key is
    `pinned_master` (a link's `partner_master_key`): a homeserver admin who resets the
    user's cross-signing keys publishes another master key and fails here."""
    return (cross_signing_public_key(master_key) == pinned_master
            and device_is_cross_signed(user_id, device, master_key, self_signing_key))


def device_with_curve25519(devices: dict[str, dict[str, Any]],
                           curve25519: str) -> dict[str, Any] | None:
    """The signed device object (as keys/query returns it) whose Curve25519 identity key is
    `curve25519`: the device behind a Megolm session's sender key."""
    for device_id, device in devices.items():
        if (isinstance(device, dict) and device.get("device_id") == device_id
                and device.get("keys", {}).get(f"curve25519:{device_id}") == curve25519):
            return device
    return None


@dataclass(frozen=True)
class CrossSigningSeeds:
    master: bytes
    self_signing: bytes
    user_signing: bytes

    @classmethod
    def generate(cls) -> CrossSigningSeeds:
        return cls(secrets.token_bytes(32), secrets.token_bytes(32), secrets.token_bytes(32))

    def to_json(self) -> str:
        return json.dumps(
            {
                "master": unpadded_b64(self.master),
                "self_signing": unpadded_b64(self.self_signing),
                "user_signing": unpadded_b64(self.user_signing),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> CrossSigningSeeds:
        data = json.loads(text)
        return cls(
            decode_unpadded_b64(data["master"]),
            decode_unpadded_b64(data["self_signing"]),
            decode_unpadded_b64(data["user_signing"]),
        )


def load_seeds(path: Path) -> CrossSigningSeeds | None:
    if not path.exists():
        return None
    return CrossSigningSeeds.from_json(path.read_text(encoding="utf-8"))


def save_seeds(path: Path, seeds: CrossSigningSeeds) -> None:
    write_private_file(path, seeds.to_json())


def build_public_keys(user_id: str, seeds: CrossSigningSeeds) -> dict[str, dict[str, Any]]:
    """The three cross-signing key objects as uploaded, the SSK and USK signed by the master."""
    master = SigningKey(seeds.master)
    ssk = SigningKey(seeds.self_signing)
    usk = SigningKey(seeds.user_signing)

    def key_object(key: SigningKey, usage: str) -> dict[str, Any]:
        return {"user_id": user_id, "usage": [usage], "keys": {key.key_id: key.public}}

    return {
        "master_key": key_object(master, "master"),
        "self_signing_key": master.sign(key_object(ssk, "self_signing"), user_id),
        "user_signing_key": master.sign(key_object(usk, "user_signing"), user_id),
    }


@dataclass(frozen=True)
class PublishedIdentity:
    master_key: dict[str, Any] | None
    self_signing_key: dict[str, Any] | None
    device: dict[str, Any] | None


async def query_identity(client: AsyncClient, user_id: str, device_id: str) -> PublishedIdentity:
    result = await request_json(client, "POST", KEYS_QUERY, {"device_keys": {user_id: []}})
    if not result.ok:
        raise ApiError("keys/query", result)
    body = result.body
    return PublishedIdentity(
        master_key=body.get("master_keys", {}).get(user_id),
        self_signing_key=body.get("self_signing_keys", {}).get(user_id),
        device=body.get("device_keys", {}).get(user_id, {}).get(device_id),
    )


async def upload_cross_signing_keys(
    client: AsyncClient, user_id: str, seeds: CrossSigningSeeds, password: str | None
) -> None:
    """Publish the keys; a replacement needs the account password (user-interactive auth)."""
    body: dict[str, Any] = dict(build_public_keys(user_id, seeds))
    result = await request_json(client, "POST", DEVICE_SIGNING_UPLOAD, body)
    if result.ok:
        return
    if result.status != 401 or "flows" not in result.body:
        raise ApiError("keys/device_signing/upload", result)
    if password is None:
        raise IdentityConflict(
            "the homeserver asks for the bot's password to publish cross-signing keys; "
            "configure bot.password and try again"
        )
    body["auth"] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
        "session": result.body.get("session"),
    }
    retry = await request_json(client, "POST", DEVICE_SIGNING_UPLOAD, body)
    if not retry.ok:
        raise ApiError("keys/device_signing/upload (with password)", retry)


async def sign_own_device(
    client: AsyncClient, user_id: str, device: dict[str, Any], seeds: CrossSigningSeeds
) -> None:
    signed = SigningKey(seeds.self_signing).sign(device, user_id)
    device_id = device["device_id"]
    result = await request_json(
        client, "POST", SIGNATURES_UPLOAD, {user_id: {device_id: signed}}
    )
    failures = result.body.get("failures") or {}
    if not result.ok or failures:
        raise ApiError(f"keys/signatures/upload {failures}", result)


async def ensure_cross_signed(
    client: AsyncClient, seeds_path: Path, password: str | None
) -> bool:
    """Make sure the bot's device is cross-signed; return True when anything was uploaded.

    Idempotent: a second call with everything in place uploads nothing.
    """
    user_id, device_id = client.user_id, client.device_id
    assert user_id and device_id
    published = await query_identity(client, user_id, device_id)
    if published.device is None:
        raise IdentityConflict(
            f"the homeserver has no keys for device {device_id}; the device keys must be "
            "uploaded before cross-signing"
        )
    seeds = load_seeds(seeds_path)
    uploaded = False
    server_master = cross_signing_public_key(published.master_key)

    if server_master is None:
        if seeds is None:
            seeds = CrossSigningSeeds.generate()
            save_seeds(seeds_path, seeds)  # persisted before publishing, never lost after
        await upload_cross_signing_keys(client, user_id, seeds, password)
        uploaded = True
        published = await query_identity(client, user_id, device_id)
    elif seeds is None or SigningKey(seeds.master).public != server_master:
        raise IdentityConflict(
            f"the homeserver holds cross-signing master key {server_master} for {user_id}, "
            f"but {seeds_path} "
            + ("does not exist" if seeds is None else "holds a different key")
            + ". Liaison will not replace an identity silently: users would see an "
            "identity-change warning. If this is intended, run `liaison reset-identity`."
        )
    elif SigningKey(seeds.self_signing).public != cross_signing_public_key(
        published.self_signing_key
    ):
        await upload_cross_signing_keys(client, user_id, seeds, password)
        uploaded = True
        published = await query_identity(client, user_id, device_id)

    assert published.device is not None
    if not device_is_cross_signed(
        user_id, published.device, published.master_key, published.self_signing_key
    ):
        await sign_own_device(client, user_id, published.device, seeds)
        uploaded = True
    log.info(
        "device cross-signed",
        extra={"device_id": device_id, "master_key": SigningKey(seeds.master).public,
               "uploaded": uploaded},
    )
    return uploaded


async def reset_identity(client: AsyncClient, seeds_path: Path, password: str) -> str:
    """Replace the cross-signing identity with fresh keys; returns the new master key.

    Fresh keys every time: re-uploading an older master key after it was
    replaced breaks Synapse.
    """
    user_id, device_id = client.user_id, client.device_id
    assert user_id and device_id
    seeds = CrossSigningSeeds.generate()
    pending = seeds_path.with_suffix(".new")
    save_seeds(pending, seeds)
    await upload_cross_signing_keys(client, user_id, seeds, password)
    os.replace(pending, seeds_path)
    published = await query_identity(client, user_id, device_id)
    if published.device is not None:
        await sign_own_device(client, user_id, published.device, seeds)
    return SigningKey(seeds.master).public
