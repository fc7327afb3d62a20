"""`liaison link check` and `liaison link export`: an operator's look at each link.

`check` asks the homeserver with the bot's own access token (`credentials.json`, as
`liaison rooms` does; no crypto store, safe beside the running bot) whether the bot is in
the link room, the room is encrypted, the partner is in it and publishes the pinned
master key with a device signed by it; and reads the database (read-only) for the
directories accepted and published and the protocol events queued. What is wrong is
decided by `problems`, a plain function of those facts.

`export` writes the exchange with one partner (`link_log`) as JSON lines.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    JoinedMembersResponse,
    JoinedRoomsResponse,
    RoomGetStateEventResponse,
)

from liaison.bot.crosssigning import KEYS_QUERY, cross_signing_public_key, device_signed_by_pinned
from liaison.bot.rawapi import request_json
from liaison.bot.rooms import RoomsError, bot_client
from liaison.commands.durations import format_duration
from liaison.commands.links import Link, LinkView
from liaison.config import Config
from liaison.storage import links as link_store
from liaison.storage.db import read_only


@dataclass(frozen=True)
class LinkFacts:
    """What `check` found about one link; None where it could not be found out."""

    joined: bool
    encrypted: bool
    partner_joined: bool
    partner_reachable: bool
    published_master: str | None
    pinned_devices: int
    directory_received: tuple[int, int] | None
    """(version, received ms) of the partner's directory this bot accepted."""
    directory_published: int | None
    """The version of this bot's directory last queued for the partner."""
    queued: int
    oldest_queued_ms: int | None


def problems(link: Link, facts: LinkFacts, *, now_ms: int, stuck_after_ms: int) -> list[str]:
    """What is wrong with `link`, one sentence each; empty when nothing is."""
    found = []
    if not facts.joined:
        found.append(f"the bot is not in the link room {link.room}")
    elif not facts.encrypted:
        found.append(f"the link room {link.room} is not encrypted")
    if facts.joined and not facts.partner_joined:
        found.append(f"the partner {link.partner} is not in the link room")
    if not facts.partner_reachable:
        found.append(f"the partner's homeserver did not answer for {link.partner}'s keys")
    elif facts.published_master != link.partner_master_key:
        found.append(f"{link.partner} publishes master key {facts.published_master or '(none)'}"
                     f", not the pinned {link.partner_master_key}: the link is refused")
    elif facts.pinned_devices == 0:
        found.append(f"no device of {link.partner} is signed by the pinned master key")
    if facts.oldest_queued_ms is not None and now_ms - facts.oldest_queued_ms >= stuck_after_ms:
        found.append(f"the oldest of {facts.queued} protocol events queued for the partner "
                     f"has waited {_age(now_ms - facts.oldest_queued_ms)}")
    return found


def describe(link: Link, facts: LinkFacts, *, now_ms: int) -> list[str]:
    """The figures of `link`, for the operator."""
    received = ("none accepted yet" if facts.directory_received is None else
                f"version {facts.directory_received[0]}, accepted "
                f"{_age(now_ms - facts.directory_received[1])} ago")
    published = ("never published" if facts.directory_published is None
                 else f"version {facts.directory_published}")
    oldest = ("" if facts.oldest_queued_ms is None
              else f", oldest {_age(now_ms - facts.oldest_queued_ms)} old")
    return [f"link {link.name}: partner {link.partner} in {link.room}",
            f"  room: {'joined' if facts.joined else 'NOT joined'}, "
            f"{'encrypted' if facts.encrypted else 'NOT encrypted'}, partner "
            f"{'joined' if facts.partner_joined else 'NOT joined'}",
            f"  identity: pinned {link.partner_master_key}, published "
            f"{facts.published_master or '(none)'}, {facts.pinned_devices} device(s) signed "
            "by the pinned key",
            f"  partner's directory: {received}; ours: {published}",
            f"  queued protocol events: {facts.queued}{oldest}"]


def _age(ms: int) -> str:
    return format_duration(timedelta(seconds=max(0, ms) // 1000))


async def _room_facts(client: AsyncClient, link: Link, joined_rooms: set[str]
                      ) -> tuple[bool, bool, bool]:
    if link.room not in joined_rooms:
        return False, False, False
    state = await client.room_get_state_event(link.room, "m.room.encryption")
    encrypted = isinstance(state, RoomGetStateEventResponse) and bool(
        state.content.get("algorithm"))
    members = await client.joined_members(link.room)
    partner_joined = isinstance(members, JoinedMembersResponse) and any(
        member.user_id == link.partner for member in members.members)
    return True, encrypted, partner_joined


async def _identity_facts(client: AsyncClient, link: Link) -> tuple[bool, str | None, int]:
    result = await request_json(client, "POST", KEYS_QUERY,
                                {"device_keys": {link.partner: []}})
    if not result.ok:
        raise RoomsError(f"keys/query failed: HTTP {result.status}")
    body: dict[str, Any] = result.body
    server = link.partner.partition(":")[2]
    reachable = server not in (body.get("failures") or {})
    master = body.get("master_keys", {}).get(link.partner)
    ssk = body.get("self_signing_keys", {}).get(link.partner)
    devices = body.get("device_keys", {}).get(link.partner) or {}
    pinned = sum(1 for device in devices.values()
                 if isinstance(device, dict) and device_signed_by_pinned(
                     link.partner, device, master, ssk, link.partner_master_key))
    return reachable, cross_signing_public_key(master), pinned


async def gather_facts(config: Config, database: Path, *, now_ms: int) -> dict[str, LinkFacts]:
    """Link name → what the homeserver and the database say of it."""
    client = await bot_client(config)
    try:
        rooms = await client.joined_rooms()
        if not isinstance(rooms, JoinedRoomsResponse):
            raise RoomsError(f"listing the bot's rooms failed: {rooms}")
        joined_rooms = set(rooms.rooms)
        online = {}
        for link in config.links:
            online[link.name] = (*await _room_facts(client, link, joined_rooms),
                                 *await _identity_facts(client, link))
    finally:
        await client.close()
    found = {}
    async with read_only(database) as conn:
        for link in config.links:
            joined, encrypted, partner_joined, reachable, master, pinned = online[link.name]
            published = await link_store.published(conn, link.name)
            queued, oldest = await link_store.queued(conn, link.room)
            found[link.name] = LinkFacts(
                joined=joined, encrypted=encrypted, partner_joined=partner_joined,
                partner_reachable=reachable, published_master=master, pinned_devices=pinned,
                directory_received=await link_store.directory_received(conn, link.name),
                directory_published=None if published is None else published[0],
                queued=queued, oldest_queued_ms=oldest)
    return found


async def partner_post_ids(config: Config, database: Path) -> list[str]:
    """The partners' posts in the directories this bot accepted (as routing sees them),
    for `liaison stats`; none when there is no database (or one too old to hold any)."""
    try:
        async with read_only(database) as conn:
            directories = await link_store.accepted_directories(conn)
    except (FileNotFoundError, sqlite3.Error):
        return []
    return list(LinkView(links=tuple(config.links), directories=directories).partner_posts())


async def export_exchange(database: Path, link: str) -> list[str]:
    """The exchange with the partner of `link`, one JSON object a line, in logged order."""
    async with read_only(database) as conn:
        entries = await link_store.exchange(conn, link)
    return [json.dumps(asdict(entry), ensure_ascii=False, sort_keys=True) for entry in entries]
