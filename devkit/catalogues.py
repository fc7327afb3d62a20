"""`python -m devkit.catalogues extract|update|compile|check`: the gettext catalogues.

English is the source (`commands.texts.MESSAGES`); the msgid of every entry is its
message id, and the English text rides along as an extracted comment so that a
translator sees it and a changed English is caught:

- `extract` writes the template `commands/locale/liaison.pot` from `MESSAGES`;
- `update` merges it into each language's `.po`: new ids come in empty, removed
  ones go, and an entry whose English changed is marked fuzzy (to re-translate);
- `compile` writes each `.mo` beside its `.po` (the Makefile's setup step runs it;
  without a `.mo` the bot reads the `.po` itself);
- `check` lists what is missing, stale or has other placeholders than the English,
  and exits 1 if anything is (the unit tests run the same check).

Plural messages (`commands.texts.PLURAL_MESSAGES`) are gettext plural entries
(`msgid`/`msgid_plural` both the message id, one `msgstr[i]` per plural form of the
language); their extracted comment is `en: SINGULAR | PLURAL`.
"""

from __future__ import annotations

import string
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from liaison.commands.model import LANGUAGES
from liaison.commands.texts import DOMAIN, LOCALE_DIR, MESSAGES, PLURAL_MESSAGES, catalogue_path

TRANSLATED = tuple(language for language in LANGUAGES if language != "en")
TEMPLATE = LOCALE_DIR / f"{DOMAIN}.pot"
ENGLISH_PREFIX = "en: "
"""How the English source is written in an entry's extracted comment."""


def new_catalog(language: str | None = None) -> Catalog:
    return Catalog(locale=language, domain=DOMAIN, project="Liaison", version="0.1",
                   copyright_holder="the Liaison authors", msgid_bugs_address="",
                   last_translator="Liaison translators", charset="utf-8", fuzzy=False)


def english_comment(english: str) -> str:
    return ENGLISH_PREFIX + english


def plural_english(forms: tuple[str, str]) -> str:
    """How a plural message's English is written in its extracted comment."""
    return f"{forms[0]} | {forms[1]}"


def template(messages: Mapping[str, str] = MESSAGES,
             plurals: Mapping[str, tuple[str, str]] = PLURAL_MESSAGES) -> Catalog:
    catalog = new_catalog()
    for msg_id, english in messages.items():
        catalog.add(msg_id, "", auto_comments=[english_comment(english)],
                    flags=("python-brace-format",) if placeholders(english) else ())
    for msg_id, forms in plurals.items():
        catalog.add((msg_id, msg_id), ("", ""),
                    auto_comments=[english_comment(plural_english(forms))],
                    flags=("python-brace-format",))
    return catalog


def read(path: Path, language: str) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=language, domain=DOMAIN)


def write(path: Path, catalog: Catalog) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        write_po(handle, catalog, width=100, sort_output=False, omit_header=False,
                 ignore_obsolete=True)


def placeholders(template_text: str) -> set[str]:
    """The `str.format` field names of a template."""
    return {name for _, name, _, _ in string.Formatter().parse(template_text) if name}


def source_of(auto_comments: Sequence[str]) -> str | None:
    """The English an entry was translated from, from its extracted comment, with its
    white space collapsed (a `.po` writer wraps long comments)."""
    joined = " ".join(auto_comments)
    marker = ENGLISH_PREFIX.strip()  # a writer drops the space after an empty English
    if not joined.startswith(marker):
        return None
    return same_words(joined[len(marker):])


def same_words(english: str) -> str:
    return " ".join(english.split())


def update(language: str, messages: Mapping[str, str] = MESSAGES,
           plurals: Mapping[str, tuple[str, str]] = PLURAL_MESSAGES) -> Catalog:
    """The language's catalogue merged with the current English: translations kept where
    the English is unchanged, fuzzy where it changed, new ids empty, removed ids gone."""
    path = catalogue_path(language)
    old = read(path, language) if path.exists() else Catalog(locale=language, domain=DOMAIN)
    merged = new_catalog(language)
    for msg_id, english in messages.items():
        previous = old.get(msg_id)
        translation = str(previous.string) if previous is not None and previous.string else ""
        changed = (previous is not None
                   and source_of(previous.auto_comments) != same_words(english))
        flags = {"python-brace-format"} if placeholders(english) else set()
        if translation and (changed or (previous is not None and previous.fuzzy)):
            flags.add("fuzzy")
        merged.add(msg_id, translation, auto_comments=[english_comment(english)], flags=flags,
                   user_comments=list(previous.user_comments) if previous is not None else [])
    for msg_id, forms in plurals.items():
        english = plural_english(forms)
        previous = old.get(msg_id)
        old_forms = (tuple(str(form) for form in previous.string)
                     if previous is not None and isinstance(previous.string, tuple | list)
                     else ())
        translated = len(old_forms) == merged.num_plurals and any(old_forms)
        flags = {"python-brace-format"}
        changed = (previous is not None
                   and source_of(previous.auto_comments) != same_words(english))
        if translated and (changed or (previous is not None and previous.fuzzy)):
            flags.add("fuzzy")
        merged.add((msg_id, msg_id),
                   old_forms if translated else ("",) * merged.num_plurals,
                   auto_comments=[english_comment(english)], flags=flags,
                   user_comments=list(previous.user_comments) if previous is not None else [])
    return merged


def compile_all() -> list[Path]:
    written = []
    for language in TRANSLATED:
        po = catalogue_path(language)
        if not po.exists():
            continue
        catalog = read(po, language)
        mo = catalogue_path(language, ".mo")
        with mo.open("wb") as handle:
            write_mo(handle, catalog, use_fuzzy=False)
        written.append(mo)
    return written


def problems(language: str, messages: Mapping[str, str] = MESSAGES,
             catalog: Catalog | None = None,
             plurals: Mapping[str, tuple[str, str]] = PLURAL_MESSAGES) -> list[str]:
    """Everything wrong with one language's catalogue against the English."""
    path = catalogue_path(language)
    if catalog is None:
        if not path.exists():
            return [f"{language}: no catalogue at {path}"]
        catalog = read(path, language)
    found: list[str] = []
    seen = set()
    for message in catalog:
        msg_id = message.id
        if isinstance(msg_id, tuple | list):
            seen.add(str(msg_id[0]))
            found.extend(plural_problems(language, message, plurals, catalog.num_plurals))
            continue
        if not msg_id or not isinstance(msg_id, str):
            continue
        seen.add(msg_id)
        english = messages.get(msg_id)
        if english is None:
            found.append(f"{language}: {msg_id}: stale, no such message id any more")
            continue
        translation = message.string if isinstance(message.string, str) else ""
        if not translation:
            found.append(f"{language}: {msg_id}: not translated")
        elif message.fuzzy:
            found.append(f"{language}: {msg_id}: fuzzy, check the translation")
        elif source_of(message.auto_comments) != same_words(english):
            found.append(f"{language}: {msg_id}: stale, translated from other English")
        elif placeholders(translation) != placeholders(english):
            found.append(f"{language}: {msg_id}: placeholders "
                         f"{sorted(placeholders(translation))}, the English has "
                         f"{sorted(placeholders(english))}")
    found.extend(f"{language}: {msg_id}: missing" for msg_id in [*messages, *plurals]
                 if msg_id not in seen)
    return found


def plural_problems(language: str, message: Message,
                    plurals: Mapping[str, tuple[str, str]], num_plurals: int) -> list[str]:
    """What is wrong with one plural entry: every form the language has must be there,
    translated from the current English, with no placeholder the English lacks and
    `{count}` or the same placeholders as the English otherwise."""
    msg_id = str(message.id[0])
    forms = plurals.get(msg_id)
    if forms is None:
        return [f"{language}: {msg_id}: stale, no such message id any more"]
    strings = message.string if isinstance(message.string, tuple | list) else ()
    english = placeholders(forms[1])
    if len(strings) != num_plurals or not all(strings):
        return [f"{language}: {msg_id}: not translated (needs {num_plurals} plural forms)"]
    if message.fuzzy:
        return [f"{language}: {msg_id}: fuzzy, check the translation"]
    if source_of(message.auto_comments) != same_words(plural_english(forms)):
        return [f"{language}: {msg_id}: stale, translated from other English"]
    return [f"{language}: {msg_id}: form {index}: placeholders {sorted(placeholders(form))}, "
            f"the English has {sorted(english)}"
            for index, form in enumerate(strings) if placeholders(str(form)) != english]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else "check"
    if command == "extract":
        write(TEMPLATE, template())
        print(f"wrote {TEMPLATE}")
    elif command == "update":
        for language in TRANSLATED:
            write(catalogue_path(language), update(language))
            print(f"updated {catalogue_path(language)}")
    elif command == "compile":
        for path in compile_all():
            print(f"compiled {path}")
    elif command == "check":
        found = [problem for language in TRANSLATED for problem in problems(language)]
        print("\n".join(found) or "catalogues complete")
        return 1 if found else 0
    else:
        print("usage: python -m devkit.catalogues extract|update|compile|check", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
