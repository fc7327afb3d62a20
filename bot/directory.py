"""The directory: which post a room is, which language it reads, with which people.

It answers from the configuration (posts, their officers and supervisors) combined with
the runtime state the bot keeps in its database — each room's `!lang` choice
(`storage.languages`) and the rooms that replaced upgraded post rooms
(`bot.room_upgrades`). A room reads the language it chose with `!lang`, else its post's
configured language, else English.

The database is the truth; `Directory` keeps a copy for the synchronous lookups the
shell makes while it renders (`language_for_room`, `post_for_room`, and `config`, whose
posts read their chosen languages). The router refreshes it before every event and the
chaser before every round, so a `!lang` is seen from the next event on.

It also keeps the `LinkView` (`commands.links`): the configured links with the directory
each partner last published and this bot accepted (`storage.links`), read again with
the rest, and at once after a directory event commits (`bot.links`).
"""

from __future__ import annotations

from liaison.commands.links import LinkView
from liaison.commands.model import Post
from liaison.config import Config
from liaison.storage import languages, state
from liaison.storage import links as link_store
from liaison.storage.db import Database

REPLACED_PREFIX = "room.replaced."
"""kv keys of upgraded post rooms: `room.replaced.<old room id>` → the new room id
(written by `bot.room_upgrades`)."""


class Directory:
    def __init__(self, config: Config) -> None:
        self._base = config
        self._chosen: dict[str, str] = {}
        self._replaced: dict[str, str] = {}
        self._directory_versions: dict[str, tuple[int, int] | None] = {}
        self.links = LinkView(links=tuple(config.links))
        """The links and the partners' accepted directories: what routing reads of them."""
        self.config = config
        """The configuration with each post reading its room's chosen language, served in
        the room that replaced its room if that was upgraded (`bot.room_upgrades`)."""

    async def refresh(self, db: Database) -> None:
        """Read the rooms' choices and replacements again (outside any transaction of the
        caller's)."""
        async with db.read() as conn:
            chosen = await languages.room_languages(conn)
            replaced = await state.values_with_prefix(conn, REPLACED_PREFIX)
            # The directories themselves (up to thousands of posts) are parsed only when
            # a version changed: this runs before every event.
            versions = {link.name: await link_store.directory_received(conn, link.name)
                        for link in self._base.links}
            if versions != self._directory_versions:
                self._directory_versions = versions
                self.links = LinkView(links=tuple(self._base.links),
                                      directories=await link_store.accepted_directories(conn))
        if chosen != self._chosen or replaced != self._replaced:
            self._chosen, self._replaced = chosen, replaced
            # A `!lang` in the room that replaced a post's room is that post's choice.
            by_post_room = {**chosen, **{old: chosen[self.replacement(old)] for old in replaced
                                         if self.replacement(old) in chosen}}
            self.config = self._base.with_room_languages(by_post_room).with_room_replacements(
                replaced)

    def replacement(self, room_id: str) -> str:
        """The room that serves in place of `room_id` now (itself if it was not upgraded)."""
        seen = {room_id}
        while room_id in self._replaced and self._replaced[room_id] not in seen:
            room_id = self._replaced[room_id]
            seen.add(room_id)
        return room_id

    def language_for_room(self, room_id: str) -> str:
        chosen = self._chosen.get(room_id)
        if chosen is not None:
            return chosen
        post = self.config.post_by_room(room_id)
        return post.language if post is not None else "en"

    def chosen_language(self, room_id: str) -> str | None:
        """The room's own `!lang` choice, if it made one."""
        return self._chosen.get(room_id)

    def post_for_room(self, room_id: str) -> Post | None:
        return self.config.post_by_room(room_id)
