"""`!lang en|ru|ar`: the language the bot writes in for this room — handled in `lang`.

The choice is stored (`storage.languages`) and audited, and wins over the post's
configured language from the next message on (`bot.directory`). In a post's room only
those who act for the post may change it; elsewhere (a supervisors' room, a direct
message) whoever is in the room may. The answer is already in the new language.
"""

from __future__ import annotations

from liaison.commands.access import acts_for
from liaison.commands.errors import CommandError
from liaison.commands.registry import CommandRegistry, CommandSpec, Invocation, Reply, Role
from liaison.commands.render import render_notice
from liaison.commands.texts import LANGUAGE_WORDS, fold_word, text
from liaison.handlers.context import Services
from liaison.storage import languages

AUDIT_ACTION = "language-set"

_WORDS = {fold_word(word): code for code, words in LANGUAGE_WORDS.items()
          for word in (code, *words)}


def register_language_command(registry: CommandRegistry) -> None:
    registry.register(CommandSpec.declare("lang", lang, role=Role.ANYONE))


def language_code(word: str) -> str | None:
    """`en`, `ru` or `ar` for a code or a language's name in any of the three (`русский`,
    `العربية`); None for anything else."""
    return _WORDS.get(fold_word(word.strip()))


async def lang(invocation: Invocation) -> Reply:
    services = invocation.services
    if not isinstance(services, Services):
        raise TypeError("!lang needs the shell's Services")
    words = invocation.args.split()
    if not words and not any(line.strip() for line in invocation.lines):
        return render_notice(text("lang.current", invocation.language),
                             language=invocation.language)
    chosen = language_code(words[0]) if len(words) == 1 else None
    if chosen is None or any(line.strip() for line in invocation.lines):
        raise invocation.command.usage_error(CommandError.of(
            "error.lang_unknown", value=" ".join(words) or invocation.lines[0].strip()),
            invocation.language)
    post = services.config.post_by_room(invocation.room_id)
    if post is not None and not acts_for(post, invocation.sender):
        raise CommandError.of("error.not_post_officer", post=post.id)
    now_ms = int(invocation.now.timestamp() * 1000)
    previous = await languages.set_room_language(services.conn, room_id=invocation.room_id,
                                                 language=chosen, by=invocation.sender,
                                                 now_ms=now_ms)
    await services.record(AUDIT_ACTION, actor=invocation.sender, room_id=invocation.room_id,
                          detail={"language": chosen, "was": previous or invocation.language,
                                  "post": post.id if post is not None else None})
    return render_notice(text("lang.set", chosen), language=chosen)
