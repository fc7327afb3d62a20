"""Handling codes and the action to take, as Europol and SIS frame them.

- `h:H0` use only for the stated purpose; `h:H1` not for use in court without the
  provider's permission; `h:H2` not to be passed on without the provider's permission;
  `h:H3` other restrictions, written in the case's `h3:` field.
- `action:` what the receiving post is asked to do: discreet check, specific check,
  stop, seize, inform only (the operator may declare more, `handling.actions`).

Both ride on the first line of `!alert`/`!request` beside `class:` (`commands.deadlines`)
and are read off it here before the case parser sees the line (`split_terms`). They are
shown beside the TLP label in every rendering (`case_label`). H2 is enforced: a case
marked H2 goes to no post it was not first sent to unless its originator permitted that
post (`!permit REF POST`): `may_forward` is the one table.

Pure: no storage, no Matrix, no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from liaison.commands.errors import CommandError
from liaison.commands.identifiers import CATEGORY_RE, declared_word, parse_ref, strip_invisible
from liaison.commands.texts import fold_word, has_text, text


class Handling(StrEnum):
    H0 = "H0"
    H1 = "H1"
    H2 = "H2"
    H3 = "H3"


BUILTIN_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "discreet-check": ("discreet", "скрытая-проверка", "скрытно", "فحص-سري", "سري"),
    "specific-check": ("specific", "проверка", "فحص-محدد", "فحص"),
    "stop": ("stop-and-detain", "задержать", "задержание", "إيقاف", "توقيف"),
    "seize": ("изъять", "изъятие", "ضبط", "حجز"),
    "inform-only": ("inform", "информация", "للعلم", "إعلام"),
}
"""The SIS actions to be taken, with what officers type for each in ru and ar."""

TERM_KEYS: Mapping[str, tuple[str, ...]] = {
    "class": ("класс", "صنف"),
    "h": ("handling", "обр", "обращение", "تداول"),
    "action": ("действие", "إجراء", "اجراء"),
}
"""First-line options read here (not by `commands.parser`), canonical form first."""

H3_FIELD_KEYS = ("h3", "ограничения", "قيود")
"""The body field that holds an H3 case's restriction (`h3: not to customs`)."""

_TERM_WORDS = {fold_word(word): key for key, words in TERM_KEYS.items()
               for word in (key, *words)}


class HandlingConfig(BaseModel):
    """The `handling:` section: actions the operator adds to the built-in ones (a label
    per language)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Extra actions: name → labels by language (en required)")
    red_cleared_rooms: tuple[str, ...] = Field(
        default=(),
        description="Post rooms where replies to a TLP:RED case may be carried into the "
        "case's thread (when the room's members are exactly the originator's post)")

    @field_validator("actions")
    @classmethod
    def _check_actions(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for name, labels in value.items():
            if not CATEGORY_RE.fullmatch(name):
                raise ValueError(f"action name {name!r} must be lower-case letters, digits "
                                 "and dashes, e.g. photograph")
            if "en" not in labels:
                raise ValueError(f"action {name!r} needs at least an English label (en)")
        return value


@dataclass(frozen=True)
class Terms:
    """What `split_terms` read off a first line: the words as typed (resolved later,
    against the config) and the line without them."""

    rest: str
    deadline_class: str | None = None
    handling: str | None = None
    action: str | None = None


def split_terms(args: str) -> Terms:
    """Take `class:`, `h:` and `action:` (any alias, `key: value` with a space too) off a
    command's first line; the rest goes to the case parser unchanged."""
    tokens = strip_invisible(args).split()
    kept: list[str] = []
    found: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        head, sep, value = token.partition(":")
        key = _TERM_WORDS.get(fold_word(head)) if sep else None
        if key is None:
            kept.append(token)
            continue
        if not value and index < len(tokens) and ":" not in tokens[index]:
            value = tokens[index]
            index += 1
        if key in found:
            raise CommandError.of("error.option_twice", key=key)
        if not value:
            raise CommandError.of("handling.error.empty", key=key)
        found[key] = value
    return Terms(" ".join(kept), found.get("class"), found.get("h"), found.get("action"))


def parse_handling(word: str) -> Handling:
    cleaned = strip_invisible(word).strip().upper().removeprefix("H:")
    try:
        return Handling(cleaned if cleaned.startswith("H") else "H" + cleaned)
    except ValueError:
        raise CommandError.of("handling.error.code_unknown", value=word) from None


def actions_of(extra: Mapping[str, Mapping[str, str]]) -> dict[str, tuple[str, ...]]:
    """Every declared action with its typed words: the built-in ones and the operator's
    (whose labels are also words for it)."""
    return {**BUILTIN_ACTIONS, **{name: tuple(labels.values()) for name, labels in extra.items()}}


def resolve_action(word: str, extra: Mapping[str, Mapping[str, str]]) -> str:
    """The declared action a typed word names; a CommandError with the nearest otherwise."""
    declared = actions_of(extra)
    name, near = declared_word(word, declared, cutoff=0.5)
    if name is not None:
        return name
    raise CommandError.of("handling.error.action_unknown", value=word,
                          actions=", ".join(declared),
                          suggestions=tuple("action:" + match for match in near))


def h3_restriction(fields: Sequence[tuple[str, str]]) -> tuple[str | None,
                                                               tuple[tuple[str, str], ...]]:
    """The `h3:` field's text and the fields without it."""
    keys = {fold_word(key) for key in H3_FIELD_KEYS}
    said = next((value for key, value in fields if fold_word(key) in keys), None)
    return said, tuple((key, value) for key, value in fields if fold_word(key) not in keys)


def check_h3(handling: Handling | None, restriction: str | None) -> None:
    if handling is Handling.H3 and not restriction:
        raise CommandError.of("handling.error.h3_text")
    if handling is not Handling.H3 and restriction:
        raise CommandError.of("handling.error.h3_without")


def action_label(action: str, language: str,
                 extra: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """The action in the reader's language: a built-in one from the catalogue, an
    operator's from its labels when given, else by its name."""
    labels = (extra or {}).get(action)
    if labels is not None:
        return labels.get(language) or labels["en"]
    return text(f"action.{action}", language) if has_text(f"action.{action}") else action


def handling_label(handling: str | None, action: str | None, language: str,
                   extra: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """` · H2 · ACTION: stop` — what follows the TLP label; empty without either. The
    code stays as written (like TLP), its meaning and the action are translated."""
    parts = []
    if handling is not None:
        parts.append(f"{handling} ({text(f'handling.{handling}', language)})")
    if action is not None:
        parts.append(text("handling.action", language,
                          action=action_label(action, language, extra)))
    return "".join(" · " + part for part in parts)


# --- H2: passing a case on ------------------------------------------------------------


class Forwarding(StrEnum):
    """How a case reaches a post it was not first sent to."""

    UPDATE = "update"
    """`!update REF to:POST …` adds a target."""
    ATTACHMENT = "attachment"
    """An attachment to a post added later."""
    LINK = "link"
    """A bot-to-bot link to a partner (a future forwarding path)."""


def may_forward(handling: str | None, post: str, *, first_targets: Collection[str],
                permitted: Collection[str]) -> bool:
    """The H2 table: a case marked H2 reaches a post it was not first sent to only when its
    originator permitted that post; every other handling code leaves forwarding to TLP."""
    if handling != Handling.H2.value or post in first_targets:
        return True
    return post in permitted


@dataclass(frozen=True)
class PermitCommand:
    ref: str
    post: str


def parse_permit(args: str, lines: Sequence[str]) -> PermitCommand:
    """`!permit REF POST`."""
    usage = text("command.permit.usage")
    words = strip_invisible(args).split()
    try:
        if len(words) != 2 or any(line.strip() for line in lines):
            raise CommandError.of("handling.error.permit_args")
        ref = parse_ref(words[0])
        post = words[1].strip().upper()
    except CommandError as error:
        raise error.with_usage(usage, "command.permit.usage") from None
    return PermitCommand(ref=ref, post=post)
