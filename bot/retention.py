"""The retention task: once an hour (and at start), purge the finished cases whose time
is up (`retention.closed_cases` in the config; see `storage.retention` for what goes
and what stays). Each case is purged in a transaction of its own, so a large backlog
never holds the database for long; a crash leaves every case purged or not, never
half."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from liaison.bot.clock import Clock
from liaison.storage import retention
from liaison.storage.db import Database

log = logging.getLogger(__name__)

PURGE_EVERY = timedelta(hours=1)


class Retention:
    def __init__(self, db: Database, clock: Clock, keep: timedelta | None) -> None:
        self._db = db
        self._clock = clock
        self._keep_ms = None if keep is None else int(keep.total_seconds() * 1000)

    async def run(self) -> None:
        if self._keep_ms is None:
            return  # cases are kept for ever
        while True:
            try:
                await self.purge()
            except Exception:
                log.exception("retention round failed; trying again later")
            await asyncio.sleep(PURGE_EVERY.total_seconds())

    async def purge(self) -> list[str]:
        """Purge what is due now; the references purged."""
        if self._keep_ms is None:
            return []
        cutoff = self._clock.now_ms() - self._keep_ms
        async with self._db.read() as conn:
            due = await retention.cases_due(conn, finished_before_ms=cutoff)
        purged = []
        for case_id in due:
            async with self._db.transaction() as conn:
                ref = await retention.purge_case(conn, case_id, now_ms=self._clock.now_ms())
            if ref is not None:
                purged.append(ref)
        async with self._db.transaction() as conn:
            messages = await retention.purge_sent_messages(
                conn, created_before_ms=cutoff, now_ms=self._clock.now_ms())
        if purged or messages:
            log.info("purged under the retention policy",
                     extra={"cases": purged, "messages": messages})
        return purged
