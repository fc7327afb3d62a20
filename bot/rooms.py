"""`liaison rooms`: the rooms the bot is in, what each stands for, and leaving one.

Works beside a running bot with the bot's own access token (`credentials.json` in
the data directory), without its crypto store: it only lists rooms and their members
and, when asked, leaves a room. What a room stands for is decided as the bot decides
it (`commands.audience.room_audience`).
"""

from __future__ import annotations

from dataclasses import dataclass

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinedMembersResponse,
    JoinedRoomsResponse,
    RoomLeaveResponse,
)

from liaison.bot.session import CREDENTIALS_FILE, Credentials
from liaison.commands.audience import Audience, AudienceKind
from liaison.config import Config
from liaison.handlers.context import audience_in


class RoomsError(Exception):
    """The homeserver or the data directory did not allow it; the message says why."""


@dataclass(frozen=True)
class JoinedRoom:
    room_id: str
    audience: Audience
    members: int


def describe(audience: Audience) -> str:
    """What a room stands for, in one line for the operator."""
    if audience.kind is AudienceKind.POST:
        return f"post {audience.post}"
    if audience.kind is AudienceKind.SUPERVISORS:
        return "supervisors' room of " + ", ".join(audience.posts)
    if audience.kind is AudienceKind.DIRECT:
        return f"direct room with {audience.person}"
    if audience.kind is AudienceKind.ADMINS:
        return "admins' room"
    if audience.kind is AudienceKind.LINK:
        return "link room: the partner bot (protocol events only, docs/links.md)"
    return "unknown: no post's, supervisors' or configured person's room (the bot is silent)"


async def bot_client(config: Config) -> AsyncClient:
    """A client with the bot's access token and no crypto store (beside the running bot)."""
    credentials = Credentials.load(config.data_dir / CREDENTIALS_FILE)
    if credentials is None:
        raise RoomsError(f"no {CREDENTIALS_FILE} in {config.data_dir}: the bot has not "
                         "logged in yet")
    client = AsyncClient(credentials.homeserver, credentials.user_id,
                         device_id=credentials.device_id,
                         config=AsyncClientConfig(encryption_enabled=False))
    client.access_token = credentials.access_token
    client.user_id = credentials.user_id
    return client


async def joined_rooms(config: Config) -> list[JoinedRoom]:
    """Every room the bot is in, with what it stands for."""
    client = await bot_client(config)
    try:
        response = await client.joined_rooms()
        if not isinstance(response, JoinedRoomsResponse):
            raise RoomsError(f"listing the bot's rooms failed: {response}")
        found = []
        for room_id in sorted(response.rooms):
            members = await client.joined_members(room_id)
            if not isinstance(members, JoinedMembersResponse):
                raise RoomsError(f"listing the members of {room_id} failed: {members}")
            users = frozenset(member.user_id for member in members.members)
            found.append(JoinedRoom(room_id, audience_in(config, room_id, users), len(users)))
        return found
    finally:
        await client.close()


async def leave_room(config: Config, room_id: str) -> None:
    """Leave `room_id` (the bot takes no invite back from it unless invited again)."""
    client = await bot_client(config)
    try:
        response = await client.room_leave(room_id)
        if not isinstance(response, RoomLeaveResponse):
            raise RoomsError(f"leaving {room_id} failed: {response}")
    finally:
        await client.close()
