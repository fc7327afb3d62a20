"""Upgraded post rooms: the configuration serves each post in the room that replaced its
room, the old room still names the post, and replacements chain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from liaison.bot.directory import REPLACED_PREFIX, Directory
from liaison.config import parse_config
from liaison.storage import languages, state
from liaison.storage.db import Database
from tests.unit.test_config import VALID

OLD, NEW, NEWER = "!uz-termez:liaison.example", "!uz-termez-2:liaison.example", "!uz-3:x"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "liaison.db")
    yield database
    await database.close()


def test_a_replaced_room_serves_its_post_and_the_old_room_still_names_it() -> None:
    config = parse_config(VALID, source="config.yaml")
    moved = config.with_room_replacements({OLD: NEW, NEW: NEWER})
    termez = moved.post_by_id("UZ-TERMEZ")
    assert termez is not None and termez.room == NEWER  # followed to the last one
    assert moved.post_by_room(OLD) == moved.post_by_room(NEW) == moved.post_by_room(NEWER) \
        == termez
    assert moved.post_by_id("AF-HAIRATAN") == config.post_by_id("AF-HAIRATAN")
    assert config.with_room_replacements({}) is config
    assert config.with_room_replacements({NEW: OLD, OLD: NEW}).post_by_id("UZ-TERMEZ")  # loop


async def test_room_languages_read_replacements_and_a_lang_in_the_new_room_counts(
        db: Database) -> None:
    rooms = Directory(parse_config(VALID, source="config.yaml"))
    async with db.transaction() as conn:
        await state.set_value(conn, REPLACED_PREFIX + OLD, NEW)
        await languages.set_room_language(conn, room_id=NEW, language="ar", by="@u:x", now_ms=1)
    await rooms.refresh(db)
    assert rooms.replacement(OLD) == NEW and rooms.replacement(NEW) == NEW
    termez = rooms.config.post_by_id("UZ-TERMEZ")
    assert termez is not None and (termez.room, termez.language) == (NEW, "ar")
    assert rooms.post_for_room(OLD) == termez
    assert rooms.language_for_room(NEW) == "ar"
