"""Handlers: the shell side of each command family and of the events that work a case.

Each module runs inside the one transaction the router opens for an event
(`bot.event_transaction`), through the narrow `handlers.context.Services` it is given:
the event's database connection for its repositories, the outbox (only through
`send`/`send_case`, which check disclosure), the audit log and the clock. Decisions are
the pure core's (`commands/`); a handler fetches what they need, asks, and stores and
queues what they decided. Handlers never import `bot/`: the shell calls them, not the
other way round.
"""

from __future__ import annotations

from liaison.commands.builtin import register_builtins
from liaison.commands.registry import CommandRegistry
from liaison.handlers.cases import register_case_commands
from liaison.handlers.chasing import register_chasing_commands
from liaison.handlers.hits import register_hit_commands
from liaison.handlers.language import register_language_command
from liaison.handlers.links import register_link_commands
from liaison.handlers.requests import register_request_commands


def default_registry() -> CommandRegistry:
    """A fresh registry with the bot's whole command set; one per bot, never shared."""
    registry = CommandRegistry()
    register_builtins(registry)
    register_case_commands(registry)
    register_chasing_commands(registry)
    register_language_command(registry)
    register_request_commands(registry)
    register_hit_commands(registry)
    register_link_commands(registry)
    return registry
