"""Run one command through the router's own command runner (`bot.command_runner`), with
the rooms given here instead of a Matrix client: for handler tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from liaison.bot.clock import Clock
from liaison.bot.command_runner import CommandEvent, CommandRunner
from liaison.bot.directory import Directory
from liaison.bot.event_transaction import EventTransactions
from liaison.commands.flood import FloodGate
from liaison.commands.links import LinkView
from liaison.commands.registry import CommandRegistry, split_command
from liaison.commands.relations import relation_of
from liaison.commands.render import Notice
from liaison.config import Config
from liaison.handlers.context import Services
from liaison.storage.db import Database

BOT_USER = "@liaison:liaison.example"


@dataclass(frozen=True)
class GivenRooms:
    """The rooms as a test declares them: all joined ones are encrypted."""

    joined_rooms: frozenset[str]
    members_by_room: Mapping[str, frozenset[str]] = field(default_factory=dict)
    user_id: str = BOT_USER

    def joined(self) -> frozenset[str]:
        return self.joined_rooms

    def encrypted(self) -> frozenset[str]:
        return self.joined_rooms

    def members(self, room_id: str) -> frozenset[str] | None:
        return self.members_by_room.get(room_id)


class LinkedTransactions(EventTransactions):
    """`EventTransactions` whose `Services` read the given links and partners'
    directories (`Services.links`), as the shell's directory provides them."""

    def __init__(self, *, links: LinkView, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._links = links

    def services_for(self, conn: Any) -> Services:
        return replace(super().services_for(conn), links=self._links)


def transactions_for(db: Database, config: Config, clock: Clock, *, joined: frozenset[str],
                     members: Mapping[str, frozenset[str]] | None = None, charts: bool = True,
                     links: LinkView | None = None,
                     user_id: str = BOT_USER) -> EventTransactions:
    """The event transactions a handler test runs its events in."""
    return LinkedTransactions(
        links=links or LinkView(), db=db, clock=clock,
        rooms=GivenRooms(joined, members or {}, user_id), directory=Directory(config),
        wake_sender=lambda: None, charts=charts)


async def run_command(
    db: Database, config: Config, clock: Clock, registry: CommandRegistry, *,
    room_id: str, sender: str, body: str, event_id: str, at: datetime,
    joined: frozenset[str], members: Mapping[str, frozenset[str]] | None = None,
    charts: bool = True, links: LinkView | None = None, user_id: str = BOT_USER,
) -> Notice:
    """One command in its own transaction, answered as the router answers it (the answer
    is queued in the outbox too); returns the answer. `links`: what `Services.links`
    holds (none by default); `user_id`: the bot's."""
    parsed = split_command(body)
    assert parsed is not None
    word, args, lines = parsed
    transactions = transactions_for(db, config, clock, joined=joined, members=members,
                                    charts=charts, links=links, user_id=user_id)
    await transactions.joined_ms(room_id)  # the router notes when it joined a room first
    limits = config.limits
    runner = CommandRunner(
        transactions=transactions, registry=registry, directory=Directory(config),
        flood=FloodGate(per_user=limits.commands_per_user, per_room=limits.commands_per_room),
        bot_device_id="DEVICE")
    result = await runner.run(CommandEvent(
        room_id=room_id, sender=sender, event_id=event_id,
        server_ms=int(at.timestamp() * 1000), content={"body": body},
        relation=relation_of({}), word=word, args=args, lines=lines))
    assert result is not None and result.reply is not None, "the command was not answered"
    return result.reply
