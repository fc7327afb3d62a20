-- Requests as the law frames them (issue 20): deadline classes, delays and refusals,
-- handling codes and actions, permits to pass an H2 case on, TLP:RED to named people.
-- Timestamps are INTEGER epoch milliseconds UTC.

-- The request's deadline class (`class:`), its handling code (H0-H3) with an H3
-- restriction, and the action the targets are asked to take.
ALTER TABLE cases ADD COLUMN deadline_class TEXT;
ALTER TABLE cases ADD COLUMN handling TEXT CHECK (handling IN ('H0', 'H1', 'H2', 'H3'));
ALTER TABLE cases ADD COLUMN handling_text TEXT;
ALTER TABLE cases ADD COLUMN action TEXT;

-- Each delivery's own answer deadline (the class counted from receipt in the target's
-- zone, then moved by `!delay`) and the first one, so a delay is bounded in all; a
-- refusal (`!refuse`) with its declared reason; for RED, the named person it went to
-- (the delivery's room is the bot's direct room with them).
ALTER TABLE deliveries ADD COLUMN due_ms INTEGER;
ALTER TABLE deliveries ADD COLUMN first_due_ms INTEGER;
ALTER TABLE deliveries ADD COLUMN refused_ms INTEGER;
ALTER TABLE deliveries ADD COLUMN refused_by TEXT;
ALTER TABLE deliveries ADD COLUMN refusal_reason TEXT;
ALTER TABLE deliveries ADD COLUMN recipient TEXT;

-- The originator's permission to pass an H2 case on to a post (`!permit REF POST`).
CREATE TABLE case_permits (
    case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    post TEXT NOT NULL,
    permitted_by TEXT NOT NULL,
    permitted_ms INTEGER NOT NULL,
    PRIMARY KEY (case_id, post)
);

-- Messages about a TLP:RED case waiting for a direct room with one person (the named
-- recipient, or the originator a reply is carried back to): queued to the outbox under
-- `txn_id` once they have joined it (`bot.red`).
CREATE TABLE direct_waiting (
    txn_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    content TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    sent_ms INTEGER,
    room_id TEXT
);

CREATE INDEX direct_waiting_unsent ON direct_waiting (sent_ms) WHERE sent_ms IS NULL;
