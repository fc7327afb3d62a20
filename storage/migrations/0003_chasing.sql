-- Chasing: every planned reminder and escalation of every delivery, with its due time,
-- and the direct-message rooms the bot opened with supervisors.
-- Timestamps are INTEGER epoch milliseconds UTC; JSON is stored as TEXT.

-- A delivery whose chase has been planned (its steps are in chase_steps), so the
-- planner, which scans open deliveries, plans each one once.
CREATE TABLE chase_plans (
    delivery_id INTEGER PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
    planned_ms INTEGER NOT NULL
);

-- One step of one delivery's chase (see commands/chasing.py). `step` is unique within
-- the delivery (`ack.remind.2`); `targets` the escalation targets as configured when it
-- was planned. A step is pending until it fires (its messages queued in the outbox in the
-- same transaction; `sent` lists them with their txn ids) or stops because its phase was
-- taken; `late` when it fired after the bot had been down. `taken_notified_ms` is when the
-- rooms a fired escalation reached were told the case was taken.
CREATE TABLE chase_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    step TEXT NOT NULL,
    phase TEXT NOT NULL CHECK (phase IN ('ack', 'answer')),
    action TEXT NOT NULL CHECK (action IN ('remind', 'escalate')),
    targets TEXT NOT NULL DEFAULT '[]',
    due_ms INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'fired', 'stopped')),
    done_ms INTEGER,
    late INTEGER NOT NULL DEFAULT 0 CHECK (late IN (0, 1)),
    sent TEXT NOT NULL DEFAULT '[]',
    taken_notified_ms INTEGER,
    UNIQUE (delivery_id, step),
    CHECK ((state = 'pending') = (done_ms IS NULL))
);

CREATE INDEX chase_steps_pending ON chase_steps (state, due_ms);

-- The encrypted direct-message room the bot opened with a supervisor, reused for every
-- escalation to them until they leave it.
CREATE TABLE direct_rooms (
    user_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
