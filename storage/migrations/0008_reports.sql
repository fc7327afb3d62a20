-- Scheduled reports (`reports.weekly` in the configuration, see bot/reports.py).
-- Timestamps are INTEGER epoch milliseconds UTC.

-- When each schedule was first seen: its slots before that are not owed (a schedule
-- added on a Wednesday does not post last Monday's report late). `schedule` is the
-- entry's identity (`WeeklyReport.key`); an edited entry is a new schedule.
CREATE TABLE report_schedules (
    schedule TEXT PRIMARY KEY,
    first_seen_ms INTEGER NOT NULL
);

-- Every report slot claimed: one room's report over one period. It is claimed in the
-- transaction that queues its messages in the outbox ('queued'), so it goes out once;
-- an older slot missed while the bot was down is recorded as 'skipped' (only the latest
-- missed one is sent, late).
CREATE TABLE report_slots (
    room_id TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    until_ms INTEGER NOT NULL,
    schedule TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'skipped')),
    late INTEGER NOT NULL DEFAULT 0 CHECK (late IN (0, 1)),
    claimed_ms INTEGER NOT NULL,
    PRIMARY KEY (schedule, until_ms)
);
