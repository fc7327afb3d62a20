"""The commands, described for clients that suggest a bot's commands as the user types.

Two proposals, both still unstable, so both unstable names are published:

- MSC4391 (simplified in-room bot commands): one `org.matrix.msc4391.command_description`
  state event per command, its state key `base64(sha256(command + bot user id))`,
  content `{command, description, parameters: [{key, type, description, required}]}`;
  a client sends `org.matrix.msc4391.command: {command, arguments: {key: value}}` in the
  message, and `command_text` turns that back into the line an officer would type.
- MSC4332 (in-room bot commands): one `org.matrix.msc4332.commands` state event, state
  key the bot's user id, content `{sigil: "!", commands: [{syntax, variables,
  description}]}`; a client sends the filled-in syntax as the body, which the bot reads
  like any typed command. MSC4332 has no optional variables, so its syntax carries only
  the required ones.

Everything comes from the same declarations as `!help` (`commands.registry.CommandSpec`):
a command's summary is its description and its usage line gives its parameters
(`PRIORITY` required, `[to:TARGETS]` an optional `to:` option, `[OUTCOME]` optional,
`en|ru|ar` one of those words). Descriptions are MSC1767 `m.text` lists, the room's
language first, then the others tagged with their `lang` (MSC3554). Pure functions: the
shell (`bot.command_state`) decides where to publish and when.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from liaison.commands.model import LANGUAGES
from liaison.commands.registry import CommandRegistry, CommandSpec
from liaison.commands.texts import text

MSC4391_DESCRIPTION = "org.matrix.msc4391.command_description"
MSC4391_COMMAND = "org.matrix.msc4391.command"
MSC4332_COMMANDS = "org.matrix.msc4332.commands"
DETAILS = "details"
"""The extra parameter of `!alert` and `!request`: the `key: value` lines and text below."""
_WITH_DETAILS = frozenset({"alert", "request"})
_TOKEN_RE = re.compile(r"^(?P<open>\[)?(?:(?P<option>[a-z]+):)?(?P<name>[^\]\[]+)(?(open)\])$")


@dataclass(frozen=True)
class Parameter:
    """One parameter of a command, read from its usage line."""

    key: str
    required: bool
    option: bool
    """Typed as `key:value` (`to:UZ-TERMEZ`), not by position."""
    choices: tuple[str, ...] = ()
    """For `en|ru|ar`: the words it may be."""
    index: int = 0
    """Position in the usage line (for the description in each language)."""


def parameters(spec: CommandSpec) -> tuple[Parameter, ...]:
    """The parameters of a command, from its English usage line (`!alert PRIORITY
    [to:TARGETS] …`), plus `details` for `!alert` and `!request`."""
    found: list[Parameter] = []
    for index, token in enumerate(spec.usage("en").split()[1:]):
        match = _TOKEN_RE.match(token)
        if match is None:
            continue
        name = match["name"]
        choices = tuple(name.split("|")) if "|" in name else ()
        key = match["option"] or ("language" if choices else name.lower())
        found.append(Parameter(key=key, required=match["open"] is None,
                               option=match["option"] is not None, choices=choices,
                               index=index))
    if spec.name in _WITH_DETAILS:
        found.append(Parameter(key=DETAILS, required=False, option=False, index=-1))
    return tuple(found)


def m_text(bodies: Mapping[str, str], first: str) -> dict[str, Any]:
    """An MSC1767 `m.text` block: `first`'s language first (clients without translations
    show it), then the others, each tagged with its `lang` (MSC3554)."""
    order = [first, *(language for language in LANGUAGES if language != first)]
    return {"m.text": [{"body": bodies[language], "lang": language} for language in order
                       if language in bodies]}


def _token_in(spec: CommandSpec, parameter: Parameter, language: str) -> str:
    """How the usage line in `language` writes the parameter (`to:КОМУ`)."""
    if parameter.key == DETAILS:
        return text("command.param.details", language)
    tokens = spec.usage(language).split()[1:]
    english = spec.usage("en").split()[1:]
    source = tokens if len(tokens) == len(english) else english
    return source[parameter.index].strip("[]")


def _type(parameter: Parameter) -> Any:
    if not parameter.choices:
        return "string"
    return {"schema_type": "union", "variants": [
        {"schema_type": "literal", "value": choice, "literal_type": "string"}
        for choice in parameter.choices]}


def state_key(command: str, bot_user_id: str) -> str:
    """MSC4391's state key: `base64(sha256(command + bot user id))`."""
    digest = hashlib.sha256((command + bot_user_id).encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii")


def msc4391_descriptions(registry: CommandRegistry, bot_user_id: str,
                         language: str) -> dict[str, dict[str, Any]]:
    """State key → content of each command's `org.matrix.msc4391.command_description`."""
    descriptions = {}
    for spec in registry:
        params = [{
            "key": parameter.key, "type": _type(parameter), "required": parameter.required,
            "description": m_text({lang: _token_in(spec, parameter, lang)
                                   for lang in LANGUAGES}, language),
        } for parameter in parameters(spec)]
        descriptions[state_key(spec.name, bot_user_id)] = {
            "command": spec.name,
            "description": m_text({lang: spec.summary(lang) for lang in LANGUAGES}, language),
            "parameters": params,
        }
    return descriptions


def msc4332_commands(registry: CommandRegistry, language: str) -> dict[str, Any]:
    """The content of the bot's `org.matrix.msc4332.commands` state event."""
    commands = []
    for spec in registry:
        required = [parameter for parameter in parameters(spec)
                    if parameter.required and not parameter.option]
        syntax = " ".join([spec.name, *("{" + parameter.key + "}" for parameter in required)])
        commands.append({
            "syntax": syntax,
            "variables": {parameter.key: m_text({lang: _token_in(spec, parameter, lang)
                                                 for lang in LANGUAGES}, language)
                          for parameter in required},
            "description": m_text({lang: spec.summary(lang) for lang in LANGUAGES}, language),
        })
    return {"sigil": "!", "commands": commands}


def published_digest(contents: Iterable[tuple[str, str, Mapping[str, Any]]]) -> str:
    """A digest of (event type, state key, content) triples: what was published, to
    republish only when it changes."""
    canonical = json.dumps(sorted([kind, key, dict(content)] for kind, key, content in contents),
                           sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def command_text(registry: CommandRegistry, invocation: Any) -> str | None:
    """The command line an officer would type for an MSC4391 invocation
    (`{command: "alert", arguments: {priority: "flash", to: "UZ-TERMEZ", details: …}}`):
    positional values in the usage line's order, options as `key:value`, `details` on the
    lines below. None when it is not a command this bot has, or an argument is not text."""
    if not isinstance(invocation, Mapping):
        return None
    name, arguments = invocation.get("command"), invocation.get("arguments") or {}
    if not isinstance(name, str) or not isinstance(arguments, Mapping):
        return None
    spec = next((spec for spec in registry if spec.name == name), None)
    if spec is None:
        return None
    words = ["!" + spec.name]
    details = ""
    for parameter in parameters(spec):
        value = arguments.get(parameter.key)
        if value is None:
            continue
        if not isinstance(value, str | int) or isinstance(value, bool):
            return None
        value = str(value)
        if parameter.key == DETAILS:
            details = value
        elif parameter.option:
            words.append(f"{parameter.key}:{value}")
        else:
            words.append(value)
    if any("\n" in word for word in words):
        return None
    return " ".join(words) + (("\n" + details) if details else "")
