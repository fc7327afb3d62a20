"""Identifiers officers type (post ids, targets, case references, grades, categories):
plain ASCII once invisible characters are stripped and Arabic-Indic digits and
typographic dashes are read; look-alike letters from other scripts are refused with a
suggestion (see `commands.parser`)."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping

from liaison.commands.errors import CommandError
from liaison.commands.texts import NEIGHBOUR_WORDS, Term, fold_word

NEIGHBOURS = NEIGHBOUR_WORDS[0]

INVISIBLE = frozenset(
    [*map(chr, range(0x200B, 0x2010)), *map(chr, range(0x202A, 0x202F)),
     *map(chr, range(0x2060, 0x2065)), *map(chr, range(0x2066, 0x206A)),
     "\ufeff", "\u00ad", "\u061c", "\u180e"]
)
"""Zero-width characters and bidi controls: invisible, so never part of an identifier."""

_INVISIBLE_TABLE = dict.fromkeys(map(ord, INVISIBLE))
_INVISIBLE_RE = re.compile("[" + "".join(sorted(INVISIBLE)) + "]")
_ARABIC_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "0123456789" * 2)
# Dashes that word processors and phone keyboards put where a hyphen was typed (KZ–0042
# pasted from a report): in an identifier each can only have meant the hyphen.
_DASHES = str.maketrans(dict.fromkeys(
    "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d", "-"))
_LOOKALIKES = str.maketrans(
    "АВСЕНІЈКМОРЅТХУаеіјорсѕхуΑΒΕΖΗΙΚΜΝΟΡΤΥΧοіԁԛԝ",
    "ABCEHIJKMOPSTXYaeijopcsxyABEZHIKMNOPTYXoidqw",
)

REF_RE = re.compile(r"[A-Z]{2}-[0-9]{4,8}")
GRADE_RE = re.compile(r"[ABCX][1-4]")
CATEGORY_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_TARGET_RE = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_POST_SHAPE_RE = re.compile(r"[A-Za-z]{2}(?:-[A-Za-z0-9]+)*")
_NEIGHBOUR_WORDS = frozenset(fold_word(word) for word in NEIGHBOUR_WORDS)


def strip_invisible(value: str) -> str:
    """Remove zero-width characters and bidi controls."""
    if value.isascii() or not _INVISIBLE_RE.search(value):
        return value
    return value.translate(_INVISIBLE_TABLE)


def clean_identifier(value: str, what: str) -> str:
    """Strip invisibles and whitespace, read Arabic-Indic digits and typographic dashes
    (as `-`); the result is ASCII.

    Raises CommandError naming the other characters (a Cyrillic `Т` in `UZ-ТЕRMEZ`)
    and suggesting the Latin spelling when there is an obvious one. `what` is the
    message id of the noun ("the target", "the case reference").
    """
    cleaned = strip_invisible(value).strip()
    if cleaned.isascii():
        return cleaned
    cleaned = cleaned.translate(_ARABIC_DIGITS).translate(_DASHES)
    if cleaned.isascii():
        return cleaned
    others = [ch for ch in dict.fromkeys(cleaned) if not ch.isascii()]
    chars = ", ".join(
        f"{ch} (U+{ord(ch):04X} {unicodedata.name(ch, 'UNNAMED')})" for ch in others[:4]
    )
    compatible = unicodedata.normalize("NFKC", cleaned)
    latin = compatible.translate(_LOOKALIKES)
    if not latin.isascii():
        latin = compatible.upper().translate(_LOOKALIKES)
    suggestions = (latin,) if latin.isascii() and latin.strip() else ()
    raise CommandError.of(
        "error.identifier_lookalike", suggestions=suggestions,
        what=Term(what), value=cleaned, chars=chars,
    )


def parse_ref(value: str) -> str:
    """Read a case reference such as `KZ-0042` (any case, spaces around); return it in capitals."""
    cleaned = clean_identifier(value, "noun.ref")
    if not cleaned:
        raise CommandError.of("error.ref_missing")
    upper = cleaned.upper()
    if not REF_RE.fullmatch(upper):
        raise CommandError.of("error.ref_bad", value=cleaned)
    return upper


def _canonical_target(token: str) -> str:
    """`neighbours` in any language; post ids and countries in capitals; groups in lower case."""
    if fold_word(strip_invisible(token)) in _NEIGHBOUR_WORDS:
        return NEIGHBOURS
    cleaned = clean_identifier(token, "noun.target")
    if len(cleaned) > 40 or not _TARGET_RE.fullmatch(cleaned):
        raise CommandError.of("error.target_bad", value=cleaned)
    return cleaned.upper() if _POST_SHAPE_RE.fullmatch(cleaned) else cleaned.lower()


def declared_word(word: str, declared: Mapping[str, Iterable[str]], *,
                  cutoff: float) -> tuple[str | None, tuple[str, ...]]:
    """The declared name a typed word stands for (the name itself or one of its aliases,
    compared folded, invisible characters dropped), else None and the nearest names."""
    folded = fold_word(strip_invisible(word).strip())
    table = {fold_word(name): name for name in declared}
    table.update({fold_word(alias): name for name, aliases in declared.items()
                  for alias in aliases})
    if folded in table:
        return table[folded], ()
    near = difflib.get_close_matches(folded, list(table), n=1, cutoff=cutoff)
    return None, tuple(table[match] for match in near)
