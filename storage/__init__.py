"""Durable state in one SQLite file: the outbox, the inbox, rooms and small values."""

from liaison.storage.db import Database, MigrationError, SchemaTooNewError

__all__ = ["Database", "MigrationError", "SchemaTooNewError"]
