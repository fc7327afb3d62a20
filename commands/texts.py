"""Every word of the command language and every message the core writes, in one place.

Two kinds of entries live here:

- the *vocabulary* officers type: command words, priority names, option keys and
  the word for "neighbours", each with Russian and Arabic aliases;
- the *messages* the bot writes, by message id. English is the source, here in
  `MESSAGES`; Russian and Arabic live in gettext catalogues,
  `commands/locale/<lang>/LC_MESSAGES/liaison.po`, whose msgids are these message
  ids (each entry carries its English as an extracted comment, so a translator
  sees the source and a changed English shows up as stale). `text()` looks a
  message up in the reader's language and falls back to English.

Catalogues are compiled to `.mo` by `python -m devkit.catalogues compile` (the
Makefile's setup step); when no up-to-date `.mo` sits beside a `.po` (a fresh
clone, a `pip install .`), the `.po` is read directly with Babel.

Templates use `str.format` fields; values (which may come from officers) are
inserted as data and never interpreted as format strings. A value that must be
rendered in the reader's language (a noun, a time) is passed as a `Localizable`
(`Term`, `commands.localtime.Moment`) and rendered when the text is; integers are
formatted with the reader's locale.

The vocabulary is in `commands.vocabulary`, the English messages by topic in
`commands.texts_general`, `texts_errors`, `texts_cases`, `texts_chasing`, `texts_shell`,
`texts_requests` (issue 20), `texts_hits` and `texts_links` (issue 18);
this module joins them into `MESSAGES`, reads the catalogues and renders with `text()`.
"""

from __future__ import annotations

import functools
import gettext
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from babel.messages.catalog import Catalog
from babel.messages.mofile import read_mo
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from liaison.commands.model import LANGUAGES
from liaison.commands.texts_cases import CASE_MESSAGES
from liaison.commands.texts_chasing import CHASING_MESSAGES
from liaison.commands.texts_errors import ERROR_MESSAGES
from liaison.commands.texts_general import GENERAL_MESSAGES
from liaison.commands.texts_hits import HIT_MESSAGES
from liaison.commands.texts_links import LINK_MESSAGES
from liaison.commands.texts_requests import REQUEST_MESSAGES
from liaison.commands.texts_shell import SHELL_MESSAGES
from liaison.commands.vocabulary import (
    COMMAND_ALIASES,
    DAY_WORDS,
    FIELD_KEYS,
    LANGUAGE_WORDS,
    NEIGHBOUR_WORDS,
    OPTION_KEYS,
    PRIORITY_WORDS,
    TIME_FIELD_KEYS,
    fold_word,
)

MESSAGES: Mapping[str, str] = {**GENERAL_MESSAGES, **ERROR_MESSAGES, **CASE_MESSAGES,
                               **CHASING_MESSAGES, **SHELL_MESSAGES, **REQUEST_MESSAGES,
                               **HIT_MESSAGES, **LINK_MESSAGES}
"""English, by message id: the source of every catalogue, in the order of the `.pot`."""

PLURAL_MESSAGES: dict[str, tuple[str, str]] = {
    "error.targets_too_many": ("{count} target; the limit is {limit}.",
                               "{count} targets; the limit is {limit}."),
    "error.fields_too_many": ("{count} key: value line; the limit is {limit}.",
                              "{count} key: value lines; the limit is {limit}."),
    "chart.ack.more": ("{count} more post is in the table only.",
                       "{count} more posts are in the table only."),
    "count.posts": ("{count} post", "{count} posts"),
    "count.groups": ("{count} group", "{count} groups"),
}
"""Messages that depend on a number, `{count}`: English singular and plural here; each
catalogue has as many forms as its language needs (gettext plural forms: three in
Russian, six in Arabic), chosen by `count` when `text()` renders the message."""

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "liaison"
RTL_LANGUAGES = frozenset({"ar"})
"""Languages written right to left: their notices get `dir="rtl"` and isolated Latin."""


def catalogue_path(language: str, suffix: str = ".po") -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / (DOMAIN + suffix)


@functools.cache
def _loaded(language: str) -> Catalog | None:
    """A translated language's catalogue: its compiled `.mo` when it is at least as new as
    the `.po` (an installed wheel has only the `.mo`), else the `.po`; None when there is
    neither."""
    po, mo = catalogue_path(language), catalogue_path(language, ".mo")
    if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
        with mo.open("rb") as handle:
            return read_mo(handle)
    if not po.exists():
        return None
    with po.open("rb") as handle:
        return read_po(handle, locale=language, domain=DOMAIN)


@functools.cache
def catalogue(language: str) -> Mapping[str, str]:
    """The messages of one language by message id: English from `MESSAGES`, the others
    from their catalogue (`_loaded`). Fuzzy and empty entries count as missing (and fall
    back to English)."""
    if language == "en" or language not in LANGUAGES:
        return MESSAGES
    loaded = _loaded(language)
    if loaded is None:
        return {}
    return {str(message.id): str(message.string) for message in loaded
            if message.id and isinstance(message.id, str) and isinstance(message.string, str)
            and message.string and not message.fuzzy}


@functools.cache
def plural_catalogue(language: str) -> Mapping[str, tuple[str, ...]]:
    """The plural messages of one language: each form by message id (English from
    `PLURAL_MESSAGES`); an entry with any form empty, or fuzzy, counts as missing."""
    if language == "en" or language not in LANGUAGES:
        return PLURAL_MESSAGES
    loaded = _loaded(language)
    if loaded is None:
        return {}
    return {str(message.id[0]): tuple(str(form) for form in message.string)
            for message in loaded
            if isinstance(message.id, tuple | list)  # a .po gives tuples, a .mo lists
            and isinstance(message.string, tuple | list)
            and all(message.string) and not message.fuzzy}


@functools.cache
def plural_form(language: str) -> Callable[[int], int]:
    """Which of a language's plural forms a number takes: gettext's Plural-Forms rule for
    the language, from CLDR (`n != 1` in English)."""
    return gettext.c2py(get_plural(language if language in LANGUAGES else "en").plural_expr)


def plural_template(msg_id: str, count: int, language: str) -> str:
    """The form of plural message `msg_id` for `count`, in `language` (else English)."""
    forms = plural_catalogue(language).get(msg_id)
    if forms is not None:
        index = plural_form(language)(count)
        if 0 <= index < len(forms):
            return forms[index]
    english = PLURAL_MESSAGES[msg_id]
    return english[plural_form("en")(count)]


@runtime_checkable
class Localizable(Protocol):
    """A template value rendered in the reader's language when the text is."""

    def localized(self, language: str) -> str: ...


@dataclass(frozen=True)
class Term:
    """A message id used as a value: `Term("noun.ref")` reads "the case reference" in
    English and its translation elsewhere."""

    msg_id: str

    def localized(self, language: str) -> str:
        return text(self.msg_id, language)

    def __str__(self) -> str:
        return text(self.msg_id)


def format_number(value: int | float, language: str = "en") -> str:
    """A number in the reader's locale (`8,000`, `8 000`)."""
    return format_decimal(value, locale=language if language in LANGUAGES else "en")


def _value(value: object, language: str) -> object:
    if isinstance(value, Localizable):
        return value.localized(language)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format_number(value, language)
    return value


def text(msg_id: str, language: str = "en", /, **params: object) -> str:
    """The message `msg_id` in `language` (English if missing there), with `params` filled in.

    Raises KeyError for an unknown id: a typo in a message id is a bug, not input.
    """
    if msg_id in PLURAL_MESSAGES:
        count = params.get("count")
        if not isinstance(count, int):
            raise TypeError(f"{msg_id} is a plural message: pass count=<int>")
        template = plural_template(msg_id, count, language)
    else:
        template = catalogue(language).get(msg_id) or MESSAGES[msg_id]
    if not params:
        return template
    return template.format(**{key: _value(value, language) for key, value in params.items()})


_FIELD_KEY_OF = {fold_word(typed): key for key, words in FIELD_KEYS.items() for typed in words}


def field_key(key: str, language: str = "en") -> str:
    """A case field's key as the reader reads it: a known key (`прибытие`, `vehicle`) in
    the reader's language, any other key exactly as the officer typed it."""
    known = _FIELD_KEY_OF.get(fold_word(key.strip()))
    return key if known is None else text(f"field.{known}", language)


def has_text(msg_id: str) -> bool:
    return msg_id in MESSAGES or msg_id in PLURAL_MESSAGES


def is_rtl(language: str) -> bool:
    return language in RTL_LANGUAGES


__all__ = [
    "COMMAND_ALIASES",
    "DAY_WORDS",
    "DOMAIN",
    "FIELD_KEYS",
    "LANGUAGE_WORDS",
    "LOCALE_DIR",
    "MESSAGES",
    "NEIGHBOUR_WORDS",
    "OPTION_KEYS",
    "PLURAL_MESSAGES",
    "PRIORITY_WORDS",
    "RTL_LANGUAGES",
    "TIME_FIELD_KEYS",
    "Localizable",
    "Term",
    "catalogue",
    "catalogue_path",
    "field_key",
    "fold_word",
    "format_number",
    "has_text",
    "is_rtl",
    "plural_catalogue",
    "plural_form",
    "plural_template",
    "text",
]
