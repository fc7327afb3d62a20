"""People's names across Cyrillic, Arabic and Latin scripts: the forms a name is compared
in, the keys the index finds candidates by, and the score of two names.

A name is written to Latin by more than one scheme, because the same man is
`Мухаммед` in a Kazakh record, `Mukhammed` in his passport and `Muhammad` in an Arabic
one:

- Cyrillic: ICAO Doc 9303 (the passport scheme), GOST 7.79 (the national standard,
  whose `š č ž` are also read as `sh ch zh`) and the common English spelling
  (Wikipedia's), all by `iuliia`, which implements these schemes letter for letter;
- Arabic: a consonant skeleton (the letters as written, short vowels are not) and a
  common romanisation (long vowels from the letters, frequent names from a table);
- Latin and anything else: `anyascii`, and `š č ž` also read as `sh ch zh`.

Every form also gets a consonant *skeleton* (`Muhammad`, `Mukhammed`, `محمد` → `mhmd`),
which is what the index keys are made of (`blocking_keys`). Two names score the best
`rapidfuzz` token-sort ratio over their forms (word order does not count), at least a
fixed score when their skeletons agree, then are boosted or penalised by date of birth
and country, as sanction-screening systems do (`name_score`). Pure functions.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from dataclasses import dataclass

import iuliia
from anyascii import anyascii
from rapidfuzz import fuzz

MAX_TOKENS = 5
"""A name's words compared at most; more are dropped (`homoglyph-stuffed` or absurd input)."""
SKELETON_AGREES = 90
"""The score of two names whose skeletons are the same words (before DOB and country)."""
DOB_SAME = 8
DOB_SAME_YEAR = -10
DOB_DIFFERENT = -25
COUNTRY_SAME = 2
COUNTRY_DIFFERENT = -8

_CYRILLIC_SCHEMES = (iuliia.ICAO_DOC_9303, iuliia.GOST_779, iuliia.WIKIPEDIA)
_SCHOLARLY = str.maketrans({"š": "sh", "č": "ch", "ž": "zh", "ć": "ch", "ŝ": "shch",
                            "Š": "Sh", "Č": "Ch", "Ž": "Zh", "Ć": "Ch", "Ŝ": "Shch"})
_DIGRAPHS = (("dzh", "j"), ("kh", "h"), ("sh", "s"), ("ch", "c"), ("zh", "j"), ("dj", "j"),
             ("th", "t"), ("dh", "d"), ("gh", "g"), ("ph", "f"), ("ts", "c"), ("ck", "k"),
             ("q", "k"), ("w", "f"), ("v", "f"), ("x", "h"))
_DIGRAPH_RE = re.compile("|".join(digraph for digraph, _ in _DIGRAPHS))
_DIGRAPH_OF = dict(_DIGRAPHS)
_VOWELS = re.compile(r"[aeiouy]")
_NOT_LETTER = re.compile(r"[^a-z ]+")

_ARABIC_CONSONANTS = {
    "ب": "b", "ت": "t", "ث": "t", "ج": "j", "ح": "h", "خ": "h", "د": "d", "ذ": "d", "ر": "r",
    "ز": "z", "س": "s", "ش": "s", "ص": "s", "ض": "d", "ط": "t", "ظ": "z", "غ": "g", "ف": "f",
    "ق": "k", "ك": "k", "ل": "l", "م": "m", "ن": "n", "ه": "h", "ة": "", "ع": "", "ء": "",
    "ئ": "", "ؤ": "", "ا": "", "أ": "", "إ": "", "آ": "", "ى": "", "ي": "", "و": "",
    "پ": "p", "چ": "c", "ژ": "j", "گ": "g", "ک": "k", "ی": "",
}
_ARABIC_ROMAN = {
    "ب": "b", "ت": "t", "ث": "th", "ج": "j", "ح": "h", "خ": "kh", "د": "d", "ذ": "dh",
    "ر": "r", "ز": "z", "س": "s", "ش": "sh", "ص": "s", "ض": "d", "ط": "t", "ظ": "z", "ع": "",
    "غ": "gh", "ف": "f", "ق": "q", "ك": "k", "ل": "l", "م": "m", "ن": "n", "ه": "h", "ة": "a",
    "ء": "", "ئ": "", "ؤ": "", "ا": "a", "أ": "a", "إ": "i", "آ": "a", "ى": "a", "ي": "i",
    "و": "u", "پ": "p", "چ": "ch", "ژ": "zh", "گ": "g", "ک": "k", "ی": "i",
}
COMMON_ARABIC_NAMES = {
    "محمد": "muhammad", "احمد": "ahmad", "محمود": "mahmud", "عبدالله": "abdullah",
    "عبد الله": "abdullah", "علي": "ali", "حسن": "hasan", "حسين": "husayn", "عمر": "umar",
    "يوسف": "yusuf", "ابراهيم": "ibrahim", "خالد": "khalid", "مصطفى": "mustafa",
    "عثمان": "uthman", "سعيد": "said", "كريم": "karim", "فاطمة": "fatima", "عائشة": "aisha",
    "مريم": "maryam", "رحمن": "rahman", "عبدالرحمن": "abdurrahman", "جمال": "jamal",
    "نور": "nur", "رشيد": "rashid", "صالح": "salih", "سليمان": "sulayman", "اسماعيل": "ismail",
    "حامد": "hamid", "طارق": "tariq", "ناصر": "nasir", "قاسم": "qasim", "وليد": "walid",
}
"""The usual romanisation of frequent given names, whose short vowels the script omits."""
_ARABIC_FOLD = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "\u0640": None,
                              **{chr(c): None for c in range(0x064B, 0x0653)}})


@dataclass(frozen=True)
class NameForms:
    """A name as typed, its Latin forms (lower case, one space between words) and the
    consonant skeleton of each word (sorted, so word order does not count)."""

    typed: str
    latin: tuple[str, ...]
    skeleton: tuple[str, ...]


@dataclass(frozen=True)
class Person:
    """A name with what sanction screening weighs beside it."""

    forms: NameForms
    dob: str | None = None
    """ISO date, `1980-02-03`."""
    country: str | None = None
    """ISO 3166 alpha-2, `UZ`."""


def _script(text: str) -> str:
    for char in text:
        if char.isalpha():
            name = unicodedata.name(char, "")
            if name.startswith("CYRILLIC"):
                return "cyrillic"
            if name.startswith("ARABIC"):
                return "arabic"
    return "latin"


def _words(text: str) -> str:
    """Lower case ASCII letters and single spaces; at most `MAX_TOKENS` words."""
    cleaned = _NOT_LETTER.sub(" ", text.lower().replace("'", "").replace("`", ""))
    return " ".join(cleaned.split()[:MAX_TOKENS])


def skeleton_word(word: str) -> str:
    """The consonants of a Latin word as names are heard: digraphs folded in one pass
    (`kh`→`h`, `sh`→`s`; `zkh` is `z`+`kh`, never `zh`), `x` as `h` (Uzbek Latin's `x`
    is `х`), `v` and `w` as `f` (Arabic writes `-ov` with `ف`), vowels and `y` dropped, a
    final `h` dropped, doubled letters once."""
    word = _DIGRAPH_RE.sub(lambda found: _DIGRAPH_OF[found.group()], word)  # one pass
    word = _VOWELS.sub("", word)
    if len(word) > 1 and word.endswith("h"):
        word = word[:-1]
    return "".join(char for char, _ in itertools.groupby(word))


def _arabic_skeleton_word(word: str) -> str:
    letters = [("f" if index == 0 and char == "و" else _ARABIC_CONSONANTS.get(char, ""))
               for index, char in enumerate(word)]
    if word.endswith("ه") and len(word) > 1:
        letters[-1] = ""
    return "".join(char for char, _ in itertools.groupby("".join(letters)))


def _arabic_roman_word(word: str) -> str:
    common = COMMON_ARABIC_NAMES.get(word)
    if common is not None:
        return common
    out = []
    for index, char in enumerate(word):
        if char == "و" and index == 0:
            out.append("w")
        elif char == "ي" and index == 0:
            out.append("y")
        else:
            out.append(_ARABIC_ROMAN.get(char, ""))
    return "".join(out)


def _arabic_words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKC", text).translate(_ARABIC_FOLD)
    words = [word for word in re.split(r"[^\u0621-\u064a\u067e\u0686\u0698\u06a9\u06af\u06cc]+",
                                       folded) if word]
    joined: list[str] = []
    for word in words:  # `عبد الله` is one name
        if joined and joined[-1] == "عبد":
            joined[-1] += word
        else:
            joined.append(word)
    return joined[:MAX_TOKENS]


@functools.lru_cache(maxsize=65536)
def name_forms(typed: str) -> NameForms:
    """The Latin forms and skeleton of a name in any script."""
    script = _script(typed)
    if script == "arabic":
        words = _arabic_words(typed)
        latin = {" ".join(_arabic_roman_word(word) for word in words),
                 _words(anyascii(" ".join(words)))}
        skeleton = tuple(sorted(filter(None, (_arabic_skeleton_word(word) for word in words))))
        return NameForms(typed, tuple(sorted(form for form in latin if form)), skeleton)
    if script == "cyrillic":
        primary = _words(iuliia.ICAO_DOC_9303.translate(typed))
        latin = {_words(anyascii(scheme.translate(typed))) for scheme in _CYRILLIC_SCHEMES}
        latin.add(_words(iuliia.GOST_779.translate(typed).translate(_SCHOLARLY)))
    else:
        primary = _words(anyascii(typed.translate(_SCHOLARLY)))
        latin = {_words(anyascii(typed)), primary}
    latin.discard("")
    skeleton = tuple(sorted(filter(None, (skeleton_word(word) for word in primary.split()))))
    return NameForms(typed, tuple(sorted(latin)), skeleton)


def blocking_keys(person: Person) -> frozenset[str]:
    """The keys the index finds a name's candidates by: each pair of skeleton words (a
    one-word name: the word), and each word with the date of birth, so a typo in one word
    still finds the name when the date is known."""
    words = tuple(dict.fromkeys(word for word in person.forms.skeleton if len(word) >= 2))
    keys = {f"n:{a} {b}" for a, b in itertools.combinations(sorted(words), 2)}
    if len(words) == 1:
        keys.add(f"n:{words[0]}")
    if person.dob is not None:
        keys |= {f"d:{word} {person.dob}" for word in words}
    return frozenset(keys)


def name_similarity(a: NameForms, b: NameForms) -> int:
    """0-100: how alike two names are in any of their forms, word order aside."""
    best = max((fuzz.token_sort_ratio(x, y) for x in a.latin for y in b.latin), default=0.0)
    if a.skeleton and a.skeleton == b.skeleton:
        best = max(best, SKELETON_AGREES)
    return round(best)


def name_score(a: Person, b: Person) -> int:
    """The similarity of two people's names, boosted by an equal date of birth and
    country, penalised by different ones; 0-100."""
    score = name_similarity(a.forms, b.forms)
    if a.dob and b.dob:
        if a.dob == b.dob:
            score += DOB_SAME
        elif a.dob[:4] == b.dob[:4]:
            score += DOB_SAME_YEAR
        else:
            score += DOB_DIFFERENT
    if a.country and b.country:
        score += COUNTRY_SAME if a.country == b.country else COUNTRY_DIFFERENT
    return max(0, min(100, score))
