"""Which language each room reads: the one it chose with `!lang` (stored in the database,
`storage.languages`), else its post's configured language, else English.

The database is the truth; `RoomLanguages` keeps a copy for the synchronous lookups the
shell makes while it renders (`language_for_room`, `post_for_room`, the `config` whose
posts read their chosen languages). The router refreshes it before every event and the
chaser before every round, so a `!lang` is seen from the next event on.
"""

from __future__ import annotations

from bot.config import Config
from commands.model import Post
from storage import languages
from storage.db import Database


class RoomLanguages:
    def __init__(self, config: Config) -> None:
        self._base = config
        self._chosen: dict[str, str] = {}
        self.config = config
        """The configuration with each post reading its room's chosen language."""

    async def refresh(self, db: Database) -> None:
        """Read the rooms' choices again (outside any transaction of the caller's)."""
        async with db.read() as conn:
            chosen = await languages.room_languages(conn)
        if chosen != self._chosen:
            self._chosen = chosen
            self.config = self._base.with_room_languages(chosen)

    def language_for_room(self, room_id: str) -> str:
        chosen = self._chosen.get(room_id)
        if chosen is not None:
            return chosen
        post = self._base.post_by_room(room_id)
        return post.language if post is not None else "en"

    def chosen_language(self, room_id: str) -> str | None:
        """The room's own `!lang` choice, if it made one."""
        return self._chosen.get(room_id)

    def post_for_room(self, room_id: str) -> Post | None:
        return self.config.post_by_room(room_id)
