"""Run one command the way the router does, without Matrix: for handler tests."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from bot.clock import Clock
from bot.config import Config
from bot.services import FollowUp, Services
from commands.errors import CommandError
from commands.registry import CommandRegistry, Invocation, split_command
from commands.render import Notice, render_command_error
from storage.db import Database

BOT_USER = "@liaison:liaison.example"


async def run_command(
    db: Database, config: Config, clock: Clock, registry: CommandRegistry, *,
    room_id: str, sender: str, body: str, event_id: str, at: datetime,
    joined: frozenset[str], members: Mapping[str, frozenset[str]] | None = None,
    charts: bool = True, follow_ups: list[FollowUp] | None = None,
) -> Notice:
    """One command in its own transaction; a CommandError is answered as the router does.
    `charts`: whether the charts extra is installed; `follow_ups` receives what the
    command queued after its answer."""
    parsed = split_command(body)
    assert parsed is not None
    word, args, lines = parsed
    async with db.transaction() as conn:
        services = Services(config=config, clock=clock, conn=conn, bot_user_id=BOT_USER,
                            joined_rooms=joined, encrypted_rooms=joined,
                            members_of=lambda room: (members or {}).get(room),
                            charts=charts,
                            follow_ups=follow_ups if follow_ups is not None else [])
        try:
            spec = registry.resolve(word)
            invocation = Invocation(
                command=spec, args=args, lines=lines, room_id=room_id, sender=sender,
                event_id=event_id, sent_at=at, now=at, post=config.post_by_room(room_id),
                audience=services.audience(room_id), language="en", bot_device_id="DEVICE",
                services=services)
            return await spec.handler(invocation)
        except CommandError as error:
            return render_command_error(error)
