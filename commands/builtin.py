"""The commands that need nothing but the registry: `!help [command]` and `!ping`. The
bot's whole command set is put together by `handlers.default_registry`.
"""

from __future__ import annotations

from liaison.commands.errors import CommandError
from liaison.commands.registry import CommandRegistry, CommandSpec, Invocation, Reply, Role
from liaison.commands.render import render_notice
from liaison.commands.texts import text


def register_builtins(registry: CommandRegistry) -> None:
    """Declare `!help` (which lists whatever `registry` holds) and `!ping`."""

    async def help_command(invocation: Invocation) -> Reply:
        words = invocation.args.split()
        if not words:
            return registry.help_overview_notice(invocation.language)
        try:
            return registry.help_for_notice(words[0], invocation.language)
        except CommandError as error:
            raise invocation.command.usage_error(error, invocation.language) from None

    registry.register(CommandSpec.declare("help", help_command, role=Role.ANYONE))
    registry.register(CommandSpec.declare("ping", ping, role=Role.ANYONE))


async def ping(invocation: Invocation) -> Reply:
    """Name the bot's device and the time from the message's server timestamp to now."""
    elapsed_ms = round((invocation.now - invocation.sent_at).total_seconds() * 1000)
    if elapsed_ms >= 0:
        answer = text("ping.reply", invocation.language, device=invocation.bot_device_id,
                      ms=elapsed_ms)
    else:
        answer = text("ping.reply_skew", invocation.language, device=invocation.bot_device_id,
                      ms=-elapsed_ms)
    return render_notice(answer, language=invocation.language)
