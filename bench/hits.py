"""`python -m bench.hits [--entities N] [--cases N]`: the hit index at scale, and the
quality of name matching. No homeserver: this is the matching inside a case's
transaction (`handlers.hits.find_matches` after `commands.entities.extract`).

1. Build: a fresh database at the latest schema, seeded with N entities (default
   1,000,000: 40% plates, 30% phones, 30% names in Latin, Cyrillic and Arabic script
   with dates of birth), five per synthetic case, from a seeded generator. Reported:
   build time (keys computed + inserted, in a child process), database size; then the
   start-up (open the database, answer a first match) and the RSS of the process that
   holds the index open and matches.
2. Match: three rounds of `--cases` new cases (default 1000 each), each a case body with
   a plate, a phone and a name — half of them held already, in another script or
   spelling — extracted and matched against the index after a warm-up; wall-clock
   p50/p99/max per case (target: p99 <= 10 ms) and CPU time (what the figure is when the
   machine is shared).
3. Quality: a labelled synthetic set of name pairs (transliteration variants, typos,
   swapped word order, the same name with another date of birth, similar other names);
   precision and recall of `name_score` at the configured threshold and around it,
   and recall through the index's blocking keys.

Results go to `bench/results/hits.json` and `bench/results/hits.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from liaison.commands.entities import Entity, EntityKind, extract
from liaison.commands.names import Person, name_forms, name_score
from liaison.config.sections import HitsConfig
from liaison.handlers.hits import find_matches
from liaison.storage.db import Database
from liaison.storage.hits import index_keys

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 19
P99_TARGET_MS = 10.0
ROUNDS = 3
"""Rounds of new cases matched (each its own seed); the median round is reported, and
every round's p99: on a shared machine one round's tail is mostly waiting for a core."""

# Given names as written in Latin (spellings), Cyrillic and Arabic.
GIVEN = [
    (("Muhammad", "Mohammed", "Mukhammad"), "Мухаммад", "محمد"),
    (("Ahmad", "Ahmed", "Akhmad"), "Ахмад", "أحمد"),
    (("Ali",), "Али", "علي"),
    (("Hasan", "Hassan"), "Хасан", "حسن"),
    (("Husayn", "Hussein", "Khusein"), "Хусейн", "حسين"),
    (("Umar", "Omar"), "Умар", "عمر"),
    (("Yusuf", "Yousef"), "Юсуф", "يوسف"),
    (("Ibrahim", "Ibragim"), "Ибрагим", "إبراهيم"),
    (("Khalid", "Khaled", "Halid"), "Халид", "خالد"),
    (("Mustafa", "Mostafa"), "Мустафа", "مصطفى"),
    (("Karim", "Kareem"), "Карим", "كريم"),
    (("Rashid", "Rasheed"), "Рашид", "رشيد"),
    (("Jamal", "Djamal", "Dzhamal"), "Джамал", "جمال"),
    (("Salim", "Saleem"), "Салим", "سليم"),
    (("Tariq", "Tarik"), "Тарик", "طارق"),
    (("Nasir", "Nasser"), "Насир", "ناصر"),
    (("Farid", "Fareed"), "Фарид", "فريد"),
    (("Bilal",), "Билал", "بلال"),
]
# Surname syllables: (Latin, Cyrillic, Arabic) — surnames are made of two or three.
SYLLABLES = [
    ("ra", "ра", "را"), ("him", "хим", "حيم"), ("ka", "ка", "كا"), ("rim", "рим", "ريم"),
    ("tur", "тур", "تور"), ("sun", "сун", "سون"), ("na", "на", "نا"), ("zar", "зар", "زار"),
    ("sul", "сул", "سول"), ("tan", "тан", "تان"), ("a", "а", "ا"), ("ziz", "зиз", "زيز"),
    ("bek", "бек", "بك"), ("mir", "мир", "مير"), ("jon", "джон", "جون"), ("dav", "дав", "داو"),
    ("lat", "лат", "لات"), ("gul", "гуль", "گل"), ("sha", "ша", "شا"), ("rof", "роф", "روف"),
    ("kho", "хо", "خو"), ("dja", "джа", "جا"), ("mal", "мал", "مال"), ("bar", "бар", "بار"),
    ("no", "но", "نو"), ("sir", "сир", "سير"), ("fa", "фа", "فا"), ("rux", "рух", "روخ"),
]
ENDINGS = [("ov", "ов", "وف"), ("ev", "ев", "يف"), ("", "", ""), ("zoda", "зода", "زاده")]
PLATE_LETTERS = "ABCEHKMOPTXY"
CYRILLIC_PLATE = str.maketrans("ABCEHKMOPTXY", "АВСЕНКМОРТХУ")


@dataclass(frozen=True)
class Someone:
    given: int
    surname: tuple[int, ...]
    ending: int
    dob: str

    def latin(self, rng: random.Random, *, swap: bool = False) -> str:
        given = rng.choice(GIVEN[self.given][0])
        surname = "".join(SYLLABLES[s][0] for s in self.surname) + ENDINGS[self.ending][0]
        words = [given, surname.capitalize()]
        return " ".join(reversed(words) if swap else words)

    def cyrillic(self) -> str:
        surname = "".join(SYLLABLES[s][1] for s in self.surname) + ENDINGS[self.ending][1]
        return f"{GIVEN[self.given][1]} {surname.capitalize()}"

    def arabic(self) -> str:
        surname = "".join(SYLLABLES[s][2] for s in self.surname) + ENDINGS[self.ending][2]
        return f"{GIVEN[self.given][2]} {surname}"

    def written(self, rng: random.Random, script: str) -> str:
        return {"latin": lambda: self.latin(rng), "cyrillic": self.cyrillic,
                "arabic": self.arabic}[script]()


def someone(rng: random.Random) -> Someone:
    length = rng.choice((2, 2, 3))
    return Someone(rng.randrange(len(GIVEN)),
                   tuple(rng.randrange(len(SYLLABLES)) for _ in range(length)),
                   rng.randrange(len(ENDINGS)), f"{rng.randint(1950, 2005)}-"
                   f"{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}")


def plate(rng: random.Random) -> str:
    return (f"{rng.randint(1, 99):02d}{rng.choice(PLATE_LETTERS)}{rng.randint(100, 999)}"
            f"{rng.choice(PLATE_LETTERS)}{rng.choice(PLATE_LETTERS)}")


def phone(rng: random.Random) -> str:
    return f"+9989{rng.randint(0, 9)}{rng.randint(0, 9_999_999):07d}"


# --- 1. build -------------------------------------------------------------------------------


def synthetic_entities(rng: random.Random, count: int) -> Iterator[tuple[Entity, Someone | None]]:
    scripts = ("latin", "cyrillic", "arabic")
    for number in range(count):
        roll = number % 10
        if roll < 4:
            yield Entity(EntityKind.PLATE, plate(rng)), None
        elif roll < 7:
            yield Entity(EntityKind.PHONE, phone(rng)), None
        else:
            person = someone(rng)
            yield Entity(EntityKind.NAME, person.written(rng, scripts[number % 3]),
                         dob=person.dob), person


async def build(db: Database, entities: int, rng: random.Random) -> dict[str, Any]:
    started = time.perf_counter()
    cases, rows, keys = [], [], []
    held: dict[str, list[Any]] = {"plate": [], "phone": [], "person": []}
    for number, (entity, person) in enumerate(synthetic_entities(rng, entities)):
        case_id = number // 5 + 1
        if number % 5 == 0:
            cases.append((case_id, f"XX-{case_id:07d}", "XX-POST1", "GREEN",
                          "!x:bench", f"$e{case_id}", "@o:bench", 0))
        rows.append((number + 1, case_id, entity.kind.value, entity.value, entity.dob, 0))
        keys.extend((key, number + 1) for key in index_keys(entity))
        if number % 97 == 0:
            held[entity.kind.value if person is None else "person"].append(
                entity.value if person is None else person)
    computed = time.perf_counter() - started
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO cases (id, ref, kind, origin_post, priority, tlp, forwardable,"
            " origin_room, origin_event_id, origin_sender, created_ms)"
            " VALUES (?, ?, 'alert', ?, 'routine', ?, 1, ?, ?, ?, ?)", cases)
        await conn.executemany(
            "INSERT INTO entities (id, case_id, kind, value, dob, created_ms)"
            " VALUES (?, ?, ?, ?, ?, ?)", rows)
        await conn.executemany("INSERT OR IGNORE INTO entity_keys (key, entity_id)"
                               " VALUES (?, ?)", keys)
    total = time.perf_counter() - started
    return {"entities": entities, "cases": len(cases), "keys": len(keys),
            "keys_computed_s": round(computed, 1), "build_s": round(total, 1),
            "held": held}


# --- 2. match -------------------------------------------------------------------------------


def new_case(rng: random.Random, held: dict[str, list[Any]]) -> tuple[list[tuple[str, str]],
                                                                       str, int]:
    """A case body and how many of its entities are held already."""
    known = 0
    if rng.random() < 0.5 and held["plate"]:
        chosen = rng.choice(held["plate"])
        the_plate = f"{chosen[:2]} {chosen[2]} {chosen[3:6]} {chosen[6:]}".translate(
            CYRILLIC_PLATE)
        known += 1
    else:
        the_plate = plate(rng)
    if rng.random() < 0.5 and held["person"]:
        person = rng.choice(held["person"])
        name = person.written(rng, rng.choice(("latin", "cyrillic", "arabic")))
        known += 1
    else:
        person = someone(rng)
        name = person.latin(rng)
    the_phone = rng.choice(held["phone"]) if rng.random() < 0.3 and held["phone"] else phone(rng)
    fields = [("plate", the_plate), ("name", name), ("dob", person.dob)]
    return fields, f"White Kamaz. Driver's phone {the_phone}.", known


async def match(db: Database, cases: int, rng: random.Random,
                held: dict[str, list[Any]]) -> dict[str, Any]:
    """Match `cases` new cases (after a tenth as many unmeasured, to warm the page cache
    as a running bot's would be); wall-clock and CPU time per case."""
    threshold = HitsConfig().name_threshold
    walls, cpus, hits, known = [], [], 0, 0
    async with db.read() as conn:
        for number in range(cases + cases // 10):
            fields, text, expected = new_case(rng, held)
            wall, cpu = time.perf_counter(), time.process_time()
            found = extract(fields, text, region="UZ").entities
            matched = await find_matches(conn, None, found, threshold=threshold)
            if number < cases // 10:
                continue
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
            hits += len(matched)
            known += expected
    walls.sort()
    cpus.sort()
    return {"cases": cases, "p50_ms": round(statistics.median(walls), 2),
            "p99_ms": round(walls[int(len(walls) * 0.99) - 1], 2),
            "max_ms": round(walls[-1], 2),
            "cpu_p50_ms": round(statistics.median(cpus), 2),
            "cpu_p99_ms": round(cpus[int(len(cpus) * 0.99) - 1], 2),
            "cases_matched": hits, "entities_held_already": known}


# --- 3. quality -----------------------------------------------------------------------------


def typo(rng: random.Random, name: str) -> str:
    """One letter of the surname changed, dropped or doubled."""
    given, _, surname = name.partition(" ")
    position = rng.randrange(1, max(2, len(surname) - 1))
    edit = rng.choice(("change", "drop", "double"))
    letter = surname[position]
    if edit == "change":
        letter = rng.choice("aeiourstnkl")
    elif edit == "drop":
        letter = ""
    else:
        letter *= 2
    return f"{given} {surname[:position]}{letter}{surname[position + 1:]}"


def labelled_pairs(rng: random.Random, count: int) -> list[tuple[str, Person, Person, bool]]:
    """(variant, a, b, same person?) pairs."""
    pairs = []
    for _ in range(count):
        a = someone(rng)
        base = Person(name_forms(a.latin(rng)), dob=a.dob)
        variant = rng.choice(("cyrillic", "arabic", "spelling", "typo", "swapped",
                              "no-dob", "other-dob", "other-person"))
        dob: str | None = a.dob
        if variant in ("cyrillic", "arabic"):
            other, same = a.written(rng, variant), True
        elif variant == "spelling":
            other, same = a.latin(rng), True
        elif variant == "typo":
            other, same = typo(rng, a.latin(rng)), True
        elif variant == "swapped":
            other, same = a.latin(rng, swap=True), True
        elif variant == "no-dob":
            other, same, dob = a.written(rng, rng.choice(("cyrillic", "arabic"))), True, None
        elif variant == "other-dob":
            other, same = a.written(rng, "cyrillic"), False
            dob = f"{int(a.dob[:4]) + rng.randint(3, 20)}{a.dob[4:]}"
        else:  # the same given name, another surname of a similar shape
            b = Someone(a.given, tuple(rng.randrange(len(SYLLABLES)) for _ in a.surname),
                        a.ending, a.dob if rng.random() < 0.5 else someone(rng).dob)
            other, same, dob = b.written(rng, rng.choice(("latin", "cyrillic"))), False, b.dob
        pairs.append((variant, base, Person(name_forms(other), dob=dob), same))
    return pairs


def quality(rng: random.Random, count: int) -> dict[str, Any]:
    pairs = labelled_pairs(rng, count)
    scored = [(variant, name_score(a, b), same, bool(index_keys_of(a) & index_keys_of(b)))
              for variant, a, b, same in pairs]
    table = []
    for threshold in (80, 85, 90, 95):
        tp = sum(1 for _, score, same, _ in scored if same and score >= threshold)
        fp = sum(1 for _, score, same, _ in scored if not same and score >= threshold)
        fn = sum(1 for _, score, same, _ in scored if same and score < threshold)
        blocked = sum(1 for _, score, same, keyed in scored
                      if same and score >= threshold and keyed)
        table.append({"threshold": threshold,
                      "precision": round(tp / (tp + fp), 3) if tp + fp else 1.0,
                      "recall": round(tp / (tp + fn), 3) if tp + fn else 1.0,
                      "recall_through_index": round(blocked / (tp + fn), 3) if tp + fn else 1.0})
    by_variant = {}
    threshold = HitsConfig().name_threshold
    for variant in sorted({variant for variant, *_ in scored}):
        rows = [(score, same) for name, score, same, _ in scored if name == variant]
        matched = sum(1 for score, _ in rows if score >= threshold)
        by_variant[variant] = {"pairs": len(rows), "same": rows[0][1],
                               "matched_at_threshold": round(matched / len(rows), 3)}
    return {"pairs": count, "table": table, "by_variant": by_variant}


def index_keys_of(person: Person) -> frozenset[str]:
    return index_keys(Entity(EntityKind.NAME, person.forms.typed, dob=person.dob))


# --- report ---------------------------------------------------------------------------------


def rss_now_mib() -> float:
    """RSS now (Linux), as a bot serving the index would hold it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def markdown(result: dict[str, Any]) -> str:
    built, matched, judged = result["build"], result["match"], result["quality"]
    met = "✓" if matched["p99_ms"] <= P99_TARGET_MS else "✗"
    lines = [
        "# Hits: the entity index and name matching (`python -m bench.hits`)", "",
        f"{result['at']} · {result['machine']} · Python {result['python']} · seed {SEED}", "",
        "| figure | value | target | met |", "|---|---|---|---|",
        f"| match per new case, p99 (ms), median of {ROUNDS} rounds | {matched['p99_ms']} | "
        f"<= {P99_TARGET_MS} | {met} |",
        f"| p99 of each round, wall-clock / CPU (ms) | "
        f"{', '.join(map(str, matched['p99_ms_by_round']))} / "
        f"{', '.join(map(str, matched['cpu_p99_ms_by_round']))} | | |",
        f"| match per new case, p50 (ms) | {matched['p50_ms']} | | |",
        f"| CPU time per new case, p50 / p99 (ms) | {matched['cpu_p50_ms']} / "
        f"{matched['cpu_p99_ms']} | | |",
        f"| index build, {built['entities']:,} entities (s) | {built['build_s']} | | |",
        f"| of which keys computed (s) | {built['keys_computed_s']} | | |",
        f"| start-up: open the database and answer a first match (s) | "
        f"{result['startup_s']} | | |",
        f"| database size (MiB) | {result['db_mib']} | | |",
        f"| RSS: process before / index open / after the matches (MiB) | "
        f"{result['rss_before_mib']} / {result['rss_open_mib']} / {result['rss_matched_mib']}"
        " | | |",
        "", f"{built['entities']:,} entities in {built['cases']:,} cases, "
        f"{built['keys']:,} index keys; {matched['cases']} new cases matched (each a plate, a "
        f"phone and a name with date of birth; {matched['entities_held_already']} of their "
        f"entities held already), {matched['cases_matched']} matches found; max "
        f"{matched['max_ms']} ms.", "",
        f"## Name matching on {judged['pairs']} labelled pairs", "",
        "| threshold | precision | recall | recall through the index |", "|---|---|---|---|",
    ]
    lines += [f"| {row['threshold']} | {row['precision']} | {row['recall']} | "
              f"{row['recall_through_index']} |" for row in judged["table"]]
    lines += ["", f"At the default threshold ({HitsConfig().name_threshold}), by variant "
              "(share of pairs scored as a possible hit; for pairs of different people "
              "lower is better):", "", "| variant | same person | pairs | matched |",
              "|---|---|---|---|"]
    lines += [f"| {name} | {'yes' if row['same'] else 'no'} | {row['pairs']} | "
              f"{row['matched_at_threshold']} |" for name, row in judged["by_variant"].items()]
    return "\n".join(lines) + "\n"


def build_in_child(path: str, entities: int) -> dict[str, Any]:
    """The build, in a process of its own (its generator's memory is not the index's)."""
    async def run() -> dict[str, Any]:
        db = await Database.open(Path(path))
        try:
            return await build(db, entities, random.Random(SEED))
        finally:
            await db.close()
    return asyncio.run(run())


async def main_async(entities: int, cases: int, pairs: int) -> dict[str, Any]:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "liaison.db"
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            built = await asyncio.get_running_loop().run_in_executor(
                pool, build_in_child, str(path), entities)
        held = built.pop("held")
        rss_before = rss_now_mib()
        started = time.perf_counter()
        db = await Database.open(path)  # a restart: the index is the database, nothing loads
        try:
            async with db.read() as conn:
                await find_matches(conn, None, [Entity(EntityKind.PLATE, "01A123BC")],
                                   threshold=HitsConfig().name_threshold)
            startup = time.perf_counter() - started
            rss_open = rss_now_mib()
            rounds = [await match(db, cases, random.Random(SEED + round_), held)
                      for round_ in range(1, ROUNDS + 1)]
            matched = sorted(rounds, key=lambda one: one["p99_ms"])[len(rounds) // 2]
            matched["p99_ms_by_round"] = [one["p99_ms"] for one in rounds]
            matched["cpu_p99_ms_by_round"] = [one["cpu_p99_ms"] for one in rounds]
            rss_matched = rss_now_mib()
        finally:
            await db.close()
        size = sum(file.stat().st_size for file in Path(scratch).iterdir()) / 2**20
    return {"at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average at start "
                       f"{load[0]:.1f}, at end {os.getloadavg()[0]:.1f}",
            "python": platform.python_version(), "build": built, "match": matched,
            "quality": quality(random.Random(SEED), pairs), "db_mib": round(size, 1),
            "startup_s": round(startup, 3), "rss_before_mib": rss_before,
            "rss_open_mib": rss_open, "rss_matched_mib": rss_matched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = asyncio.run(main_async(args.entities, args.cases, args.pairs))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hits.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    (args.out / "hits.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
