"""`Config`: the validated whole file and the lookups indexed from it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
)

from liaison.commands.attachments import AttachmentsConfig
from liaison.commands.chase_policy import ChasingConfig
from liaison.commands.deadlines import RequestsConfig
from liaison.commands.handling import HandlingConfig
from liaison.commands.links import Link
from liaison.commands.model import CategoryRule, Group, Post
from liaison.commands.notify import NotificationSettings
from liaison.commands.report_schedule import ReportsConfig
from liaison.config.fields import _relative_to_base, _Section
from liaison.config.sections import (
    AccessConfig,
    BackupsConfig,
    BotConfig,
    DecryptionConfig,
    HitsConfig,
    HomeserverConfig,
    LimitsConfig,
    LoggingConfig,
    MetricsConfig,
    OutboxConfig,
    RetentionConfig,
    SyncConfig,
    TrustConfig,
)


class Config(_Section):
    """The validated configuration. Build it with `load_config` or `parse_config`.

    Treat it as read-only: the lookups below are indexed once, at construction.
    """

    homeserver: HomeserverConfig
    bot: BotConfig
    data_dir: Path = Field(description="Credentials, crypto store and database live here")
    access: AccessConfig = AccessConfig()
    trust: TrustConfig
    logging: LoggingConfig = LoggingConfig()
    sync: SyncConfig = SyncConfig()
    decryption: DecryptionConfig = DecryptionConfig()
    outbox: OutboxConfig = OutboxConfig()
    chasing: ChasingConfig = ChasingConfig()
    requests: RequestsConfig = RequestsConfig()
    handling: HandlingConfig = HandlingConfig()
    notifications: NotificationSettings = NotificationSettings()
    reports: ReportsConfig = ReportsConfig()
    limits: LimitsConfig = LimitsConfig()
    retention: RetentionConfig = RetentionConfig()
    hits: HitsConfig = HitsConfig()
    attachments: AttachmentsConfig = AttachmentsConfig()
    metrics: MetricsConfig = MetricsConfig()
    backups: BackupsConfig = BackupsConfig()
    # Pydantic copies these defaults; ruff cannot tell that the imported _Section is a model.
    posts: list[Post] = []  # noqa: RUF012
    groups: list[Group] = []  # noqa: RUF012
    category_rules: list[CategoryRule] = []  # noqa: RUF012
    links: list[Link] = []  # noqa: RUF012

    _warnings: list[str] = PrivateAttr(default_factory=list)
    _config_path: Path | None = PrivateAttr(default=None)
    _source_sha256: str | None = PrivateAttr(default=None)
    _posts_by_id: dict[str, Post] = PrivateAttr(default_factory=dict)
    _posts_by_room: dict[str, Post] = PrivateAttr(default_factory=dict)
    _groups_by_name: dict[str, Group] = PrivateAttr(default_factory=dict)

    @field_validator("data_dir")
    @classmethod
    def _resolve_data_dir(cls, value: Path, info: ValidationInfo) -> Path:
        return _relative_to_base(value, info)

    def model_post_init(self, context: Any, /) -> None:
        # setdefault: the first definition wins; duplicates are reported by the loader.
        for post in self.posts:
            self._posts_by_id.setdefault(post.id, post)
            self._posts_by_room.setdefault(post.room, post)
        for group in self.groups:
            self._groups_by_name.setdefault(group.name, group)

    @property
    def warnings(self) -> list[str]:
        """Things that load but look wrong, rendered like errors (`config.yaml:40: ...`)."""
        return list(self._warnings)

    @property
    def config_path(self) -> Path | None:
        """The file this configuration was loaded from, if any."""
        return self._config_path

    @property
    def source_sha256(self) -> str | None:
        """SHA-256 of the text this configuration was parsed from (secrets are only
        referenced in it, never written), for the audit log."""
        return self._source_sha256

    def post_by_id(self, post_id: str) -> Post | None:
        return self._posts_by_id.get(post_id)

    def post_by_room(self, room_id: str) -> Post | None:
        return self._posts_by_room.get(room_id)

    def with_room_languages(self, chosen: Mapping[str, str]) -> Config:
        """This configuration with each post reading the language its room chose with
        `!lang` (room id → language); itself when no post's language changes."""
        posts = [post.model_copy(update={"language": chosen[post.room]})
                 if chosen.get(post.room, post.language) != post.language else post
                 for post in self.posts]
        if all(new is old for new, old in zip(posts, self.posts, strict=True)):
            return self
        changed = self.model_copy(update={"posts": posts})
        changed._posts_by_id, changed._posts_by_room, changed._groups_by_name = {}, {}, {}
        changed.model_post_init(None)
        return changed

    def with_room_replacements(self, replaced: Mapping[str, str]) -> Config:
        """This configuration with each post whose room was upgraded served in the room
        that replaced it (`replaced`: old room id → new, as `bot.room_upgrades` records
        them; followed to the last one); the old room still names the post, so events in
        it (a case's thread) find their post. Itself when no post's room was replaced."""
        def final(room: str) -> str:
            seen = {room}
            while room in replaced and replaced[room] not in seen:
                room = replaced[room]
                seen.add(room)
            return room

        posts = [post.model_copy(update={"room": final(post.room)})
                 if final(post.room) != post.room else post for post in self.posts]
        if all(new is old for new, old in zip(posts, self.posts, strict=True)):
            return self
        changed = self.model_copy(update={"posts": posts})
        changed._posts_by_id, changed._posts_by_room, changed._groups_by_name = {}, {}, {}
        changed.model_post_init(None)
        for old in replaced:
            post = changed._posts_by_room.get(final(old))
            if post is not None:
                changed._posts_by_room.setdefault(old, post)
        return changed

    def group(self, name: str) -> Group | None:
        return self._groups_by_name.get(name)

    def name_gaps(self) -> list[str]:
        """One line per language some posts have no name in (they are shown by their
        English name in rooms reading it): what `check-config` warns about, once each."""
        gaps = []
        for language in ("ru", "ar"):
            missing = [post.id for post in self.posts if not post.names.get(language)]
            if missing:
                gaps.append(f"{len(missing)} of {len(self.posts)} posts have no names.{language}"
                            f" and are shown in English in rooms reading {language}: "
                            + ", ".join(missing))
        return gaps
