"""Commands are declared, not dispatched through if/elif.

Each command is one `CommandSpec`: its name, aliases in English, Russian and
Arabic, its usage line, summary and help (message ids in `commands.texts`), the
role it needs, and its handler. `!help` and usage errors are generated from the
declarations. The registry knows nothing about Matrix: the shell splits a message
with `split_command`, resolves the word, fills an `Invocation` and awaits the
handler.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from liaison.commands.audience import Audience
from liaison.commands.errors import CommandError
from liaison.commands.model import Post
from liaison.commands.parser import strip_invisible
from liaison.commands.relations import without_reply_fallback
from liaison.commands.render import Code, Line, Notice, render_notice
from liaison.commands.texts import COMMAND_ALIASES, fold_word, has_text, text

Reply = Notice
"""What a handler answers in the sender's room: a rendered notice (see `commands.render`)."""


class Role(StrEnum):
    """Who may use a command. Each role includes the ones before it."""

    ANYONE = "anyone"
    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def admits(self, held: Role) -> bool:
        """True when someone holding `held` may use a command that needs this role."""
        return held.rank >= self.rank


@dataclass(frozen=True)
class Invocation:
    """Everything a handler may know about one command event; the shell fills it."""

    command: CommandSpec
    args: str
    """The text after the command word on the first line."""
    lines: tuple[str, ...]
    """The lines after the first."""
    room_id: str
    sender: str
    event_id: str
    sent_at: datetime
    """The event's server timestamp, aware UTC."""
    now: datetime
    """When the bot handles it, aware UTC."""
    post: Post | None
    audience: Audience | None
    """Who reads the answer (`commands.audience`): what it may say about a case."""
    language: str
    bot_device_id: str
    services: Any
    """The shell's own object (database, client, config); opaque to the core."""
    context_ref: str | None = None
    """The case the message replies to or is threaded under, found by the shell in its
    database; commands about one case use it when no reference is typed."""


Handler = Callable[[Invocation], Awaitable[Reply]]

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,23}$")
_SCRIPTS = {"ru": "CYRILLIC", "ar": "ARABIC"}


@dataclass(frozen=True)
class CommandSpec:
    """One declared command. `usage_id`, `summary_id` and `help_id` are message ids in
    `commands.texts`, so the help is rendered in the reader's language."""

    name: str
    handler: Handler = field(compare=False)
    aliases: tuple[str, ...] = ()
    role: Role = Role.OFFICER
    supervisor_rooms: bool = False
    """An officer's command that supervisors may also use in their own rooms (their direct
    room with the bot, a supervisors' room), about the cases their posts work."""
    usage_id: str = ""
    summary_id: str = ""
    help_id: str = ""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"command name {self.name!r} must be a short lower-case word")
        for alias in self.aliases:
            if not alias or any(ch.isspace() for ch in alias):
                raise ValueError(f"alias {alias!r} of {self.name} must be one word")
        for attr, suffix in (("usage_id", "usage"), ("summary_id", "summary"),
                             ("help_id", "help")):
            if not getattr(self, attr):
                object.__setattr__(self, attr, f"command.{self.name}.{suffix}")

    @classmethod
    def declare(
        cls,
        name: str,
        handler: Handler,
        *,
        role: Role = Role.OFFICER,
        aliases: Sequence[str] | None = None,
        supervisor_rooms: bool = False,
    ) -> CommandSpec:
        """A spec whose aliases and texts come from the catalogue in `commands.texts`."""
        chosen = COMMAND_ALIASES.get(name, ()) if aliases is None else tuple(aliases)
        return cls(name=name, handler=handler, aliases=tuple(chosen), role=role,
                   supervisor_rooms=supervisor_rooms)

    @property
    def words(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def aliases_in(self, language: str) -> tuple[str, ...]:
        """The aliases written in `language`'s script (Cyrillic for ru, Arabic for ar)."""
        script = _SCRIPTS.get(language)
        if script is None:
            return ()
        return tuple(alias for alias in self.aliases
                     if unicodedata.name(alias[0], "").startswith(script))

    def usage(self, language: str = "en") -> str:
        return text(self.usage_id, language)

    def summary(self, language: str = "en") -> str:
        return text(self.summary_id, language)

    def help(self, language: str = "en") -> str:
        return text(self.help_id, language)

    def usage_error(self, error: CommandError, language: str = "en") -> CommandError:
        """The error with this command's usage line, unless it already carries one."""
        return error.with_usage(self.usage(language), self.usage_id)


class CommandRegistry:
    """The commands one bot understands; build one per bot (see `default_registry`)."""

    def __init__(self) -> None:
        self._specs: dict[str, CommandSpec] = {}
        self._words: dict[str, CommandSpec] = {}

    def register(self, spec: CommandSpec) -> CommandSpec:
        """Add a command. Raises ValueError when a word is taken or a text id is missing."""
        for msg_id in (spec.usage_id, spec.summary_id, spec.help_id):
            if not has_text(msg_id):
                raise ValueError(f"{spec.name}: no message {msg_id!r} in commands.texts")
        folded = [fold_word(word) for word in spec.words]
        for word, key in zip(spec.words, folded, strict=True):
            other = self._words.get(key)
            if other is not None or folded.count(key) > 1:
                owner = other.name if other else spec.name
                raise ValueError(f"command word {word!r} is already used by {owner}")
        self._specs[spec.name] = spec
        for key in folded:
            self._words[key] = spec
        return spec

    def command(
        self,
        name: str,
        *,
        role: Role = Role.OFFICER,
        aliases: Sequence[str] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Decorator form of `register`, with aliases and texts from the catalogue:

        >>> @registry.command("ping", role=Role.ANYONE)
        ... async def ping(invocation: Invocation) -> Reply: ...
        """

        def decorate(handler: Handler) -> Handler:
            self.register(CommandSpec.declare(name, handler, role=role, aliases=aliases))
            return handler

        return decorate

    def resolve(self, word: str) -> CommandSpec:
        """The command for a typed word or alias, in any case, with or without `!`.

        Raises CommandError naming the nearest commands when the word is unknown.
        """
        key = _fold_command_word(word)
        spec = self._words.get(key)
        if spec is not None:
            return spec
        near = difflib.get_close_matches(key, list(self._words), n=3, cutoff=0.6)
        names = tuple(dict.fromkeys("!" + self._words[match].name for match in near))
        shown = "!" + key if key else "!"
        raise CommandError.of("error.command_unknown", suggestions=names, word=shown)

    def __iter__(self) -> Iterator[CommandSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and _fold_command_word(word) in self._words

    def help_overview(self, language: str = "en") -> str:
        """Plain-text list of commands with their summaries."""
        return self.help_overview_notice(language).text

    def help_overview_notice(self, language: str = "en") -> Notice:
        """Each command with its word in the reader's language (`!alert, !тревога`)."""
        lines: list[Line] = [text("help.overview.title", language)]
        for spec in self:
            words = ", ".join("!" + word for word in (spec.name, *spec.aliases_in(language)))
            lines.append([Code(words), " — " + spec.summary(language)])
        lines.append(text("help.overview.footer", language))
        return render_notice(*lines, language=language)

    def help_for(self, word: str, language: str = "en") -> str:
        """Plain-text help for one command: usage, summary, help, aliases, role."""
        return self.help_for_notice(word, language).text

    def help_for_notice(self, word: str, language: str = "en") -> Notice:
        spec = self.resolve(word)
        lines: list[Line] = [
            [text("help.usage", language) + " ", Code(spec.usage(language))],
            spec.summary(language),
            spec.help(language),
        ]
        if spec.aliases:
            lines.append(text("help.aliases", language) + " " + ", ".join(
                "!" + alias for alias in spec.aliases))
        lines.append(text("help.role", language) + " " + text(f"role.{spec.role.value}",
                                                              language))
        return render_notice(*lines, language=language)


def _fold_command_word(word: str) -> str:
    cleaned = strip_invisible(word).strip()
    if cleaned[:1] and unicodedata.normalize("NFKC", cleaned[0]) == "!":
        cleaned = cleaned[1:]
    return fold_word(cleaned)


def split_command(body: str, prefix: str = "!") -> tuple[str, str, tuple[str, ...]] | None:
    """Split a message body into (command word, rest of the first line, following lines).

    Returns None when the body is not a command. Tolerates leading whitespace, a
    reply fallback (`> ` lines and a blank line before the real body), `\\r\\n`,
    non-breaking spaces and a full-width `！` as the prefix. The word comes back
    as typed, minus invisible characters; `CommandRegistry.resolve` folds it.
    """
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = without_reply_fallback(lines)
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return None
    first = _NBSP_RE.sub(" ", strip_invisible(lines[0])).strip()
    rest = _without_prefix(first, prefix)
    if not rest or rest[0].isspace():
        return None
    word, *args = rest.split(maxsplit=1)
    if not all(unicodedata.category(ch)[0] in "LNM" or ch in "-_" for ch in word):
        return None
    return word, args[0].strip() if args else "", tuple(lines[1:])


def _without_prefix(line: str, prefix: str) -> str | None:
    """The line after the prefix; a full-width `！` counts as `!`."""
    if line.startswith(prefix):
        return line[len(prefix):]
    if line[:1] and unicodedata.normalize("NFKC", line[0]) == prefix:
        return line[1:]
    return None


_NBSP_RE = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\t]")
