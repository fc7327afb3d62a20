"""Entities and names (`commands.entities`, `commands.names`): normalisers and check
digits as tables, transliteration pairs, scores, and bad input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.commands.entities import (
    Entity,
    EntityKind,
    EntityLimits,
    extract,
    mrz_check_digit,
    normalise,
    normalise_dob,
    vin_check_digit,
)
from liaison.commands.names import Person, name_forms, name_score, name_similarity


@pytest.mark.parametrize(("kind", "typed", "region", "key"), [
    (EntityKind.PLATE, "01A123BC", None, "01A123BC"),
    (EntityKind.PLATE, "01 А 123 ВС", None, "01A123BC"),  # Cyrillic А, В, С
    (EntityKind.PLATE, "01-a-123-bc", None, "01A123BC"),
    (EntityKind.PLATE, "01\u200bA123\u200fBC", None, "01A123BC"),  # invisible characters
    (EntityKind.PLATE, "КАМАЗ", None, None),  # no digit: not a plate
    (EntityKind.PLATE, "١٢٣ أ ب", None, "123أب"),  # Arabic-Indic digits
    (EntityKind.VIN, "1m8gdm9axkp042788", None, "1M8GDM9AXKP042788"),
    (EntityKind.VIN, "1M8GDM9AXKP04278", None, None),  # 16 characters
    (EntityKind.VIN, "1M8GDM9AIKP042788", None, None),  # I is never in a VIN
    (EntityKind.CONTAINER, "CSQU 305438 3", None, "CSQU3054383"),
    (EntityKind.CONTAINER, "CSQU3054384", None, None),  # check digit
    (EntityKind.IBAN, "gb82 west 1234 5698 7654 32", None, "GB82WEST12345698765432"),
    (EntityKind.IBAN, "GB82WEST12345698765433", None, None),
    (EntityKind.PHONE, "8 701 234 5678", "KZ", "+77012345678"),
    (EntityKind.PHONE, "+998 90 123 45 67", "KZ", "+998901234567"),
    (EntityKind.PHONE, "90 123 45 67", "UZ", "+998901234567"),
    (EntityKind.PHONE, "12", "UZ", None),
    (EntityKind.PASSPORT, "N 1234 567", None, "N1234567"),
    (EntityKind.PASSPORT, "Н1234567", None, "H1234567"),  # Cyrillic Н read as H
])
def test_normalised_keys(kind: EntityKind, typed: str, region: str | None,
                         key: str | None) -> None:
    assert normalise(kind, typed, region=region) == key


@pytest.mark.parametrize(("vin", "digit"), [
    ("1M8GDM9AXKP042788", "X"), ("11111111111111111", "1"), ("5GZCZ43D13S812715", "1"),
])
def test_vin_check_digit(vin: str, digit: str) -> None:
    assert vin_check_digit(vin) == digit


def test_mrz_check_digits_are_icao_9303() -> None:
    assert [mrz_check_digit(data) for data in ("L898902C3", "740812", "120415")] == [
        "6", "2", "9"]


@pytest.mark.parametrize(("typed", "iso"), [
    ("1980-02-03", "1980-02-03"), ("03.02.1980", "1980-02-03"), ("3/2/1980", "1980-02-03"),
    ("١٩٨٠-٠٢-٠٣", "1980-02-03"), ("born in spring", None), ("31.13.1980", None),
])
def test_dates_of_birth(typed: str, iso: str | None) -> None:
    assert normalise_dob(typed) == iso


def test_fields_in_three_languages_and_free_text_give_every_entity_once() -> None:
    found = extract(
        [("vehicle", "white Kamaz, plate 01A123BC"), ("госномер", "01 А 123 ВС"),
         ("фио", "Мухаммад Абдулла"), ("дата рождения", "03.02.1980"),
         ("هاتف", "+998 90 123 45 67"), ("vin", "1M8GDM9AXKP042788")],
        "Container CSQU3054383 on the trailer; IBAN GB82 WEST 1234 5698 7654 32.\n"
        "Call 8 701 234 5678. VIN again 1M8GDM9AXKP042788.\n"
        "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n"
        "L898902C36UTO7408122F1204159ZE184226B<<<<<10", region="KZ")
    assert found.dropped == 0
    assert set(found.entities) == {
        Entity(EntityKind.NAME, "Мухаммад Абдулла", dob="1980-02-03"),
        Entity(EntityKind.PLATE, "01A123BC"),
        Entity(EntityKind.PHONE, "+998901234567"),
        Entity(EntityKind.VIN, "1M8GDM9AXKP042788"),
        Entity(EntityKind.CONTAINER, "CSQU3054383"),
        Entity(EntityKind.IBAN, "GB82WEST12345698765432"),
        Entity(EntityKind.PHONE, "+77012345678"),
        Entity(EntityKind.PASSPORT, "L898902C3"),
        Entity(EntityKind.NAME, "Anna Maria Eriksson", dob="1974-08-12"),
    }
    assert len(found.entities) == len(set(found.entities))


def test_free_text_vins_need_their_check_digit_and_fields_do_not() -> None:
    fabricated = "1M8GDM9A1KP042788"  # the same VIN with a wrong check digit
    assert extract([], f"VIN {fabricated}", region=None).entities == ()
    assert extract([("vin", fabricated)], "", region=None).entities == (
        Entity(EntityKind.VIN, fabricated),)


def test_absurd_input_is_capped_not_crashed() -> None:
    many = " ".join(f"plate 01A{n:03d}BC" for n in range(2000))
    found = extract([("name", "x" * 5000), ("plate", "9" * 5000)], many, region="KZ",
                    limits=EntityLimits(max_entities=50))
    assert len(found.entities) == 50 and found.dropped > 0
    assert all(entity.kind is EntityKind.PLATE for entity in found.entities)
    stuffed = extract([("name", "Мuхаmmаd\u200b Аbdullа" * 40)], "", region=None)
    assert stuffed.entities == ()  # longer than a name can be


@pytest.mark.parametrize(("a", "b"), [
    ("Шевченко", "Shevchenko"), ("Шевченко", "Ševčenko"), ("Shevchenko", "Ševčenko"),
    ("محمد", "Mohammed"), ("محمد", "Muhammad"), ("محمد", "Мухаммед"), ("Mohammed", "Мухаммед"),
    ("Мухаммад Абдулла", "Muhammad Abdallah"), ("محمد عبدالله", "Abdallah Muhammad"),
])
def test_transliteration_pairs_are_the_same_name(a: str, b: str) -> None:
    assert name_forms(a).skeleton == name_forms(b).skeleton
    assert name_similarity(name_forms(a), name_forms(b)) >= 88


def test_names_are_scored_with_date_of_birth_and_country() -> None:
    def person(name: str, dob: str | None = None, country: str | None = None) -> Person:
        return Person(name_forms(name), dob=dob, country=country)

    known = person("Мухаммад Абдулла", "1980-02-03", "UZ")
    assert name_score(known, person("Muhammad Abdallah", "1980-02-03", "UZ")) == 100
    assert name_score(known, person("Muhammad Abdallah")) >= 90
    assert name_score(known, person("Muhammad Abdallah", "1980-07-01")) < 90
    assert name_score(known, person("Muhammad Abdallah", "1975-02-03")) < 75
    assert name_score(known, person("Ivan Petrov", "1980-02-03")) < 50


@settings(max_examples=200, deadline=None)
@given(fields=st.lists(st.tuples(st.sampled_from(["plate", "vin", "phone", "iban", "name",
                                                  "dob", "паспорт", "الاسم", "container"]),
                                 st.text(max_size=300)), max_size=10),
       free_text=st.text(max_size=2000))
def test_any_input_is_extracted_without_a_crash_and_within_the_cap(
        fields: list[tuple[str, str]], free_text: str) -> None:
    found = extract(fields, free_text, region="KZ", limits=EntityLimits(max_entities=5))
    assert len(found.entities) <= 5
    assert all(entity.value and len(entity.value) <= 300 for entity in found.entities)


@pytest.mark.parametrize(("said", "plate"), [
    ("vehicle: white Kamaz, plate 01A123BC", "01A123BC"),
    ("plate number 01A123BC seen at 18:40", "01A123BC"),
    ("vehicle with plate no. 01A123BC", "01A123BC"),
    ("госномер знак 01 А 123 ВС белый", "01A123BC"),
    ("plate 01 A 123 BC, white", "01A123BC"),
    ("номер телефона +7 701 234 5678", None),
])
def test_a_plate_named_as_one_in_free_text(said: str, plate: str | None) -> None:
    found = [e.value for e in extract([], said, region="KZ").entities
             if e.kind is EntityKind.PLATE]
    assert found == ([plate] if plate else [])
