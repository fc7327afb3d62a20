-- Cases: alerts and requests, where each went (deliveries) and what happened (timeline).
-- Timestamps are INTEGER epoch milliseconds UTC; JSON is stored as TEXT.

-- The last case number per origin country, so references (KZ-0042) are never reused,
-- not even after closed cases are purged.
CREATE TABLE case_numbers (
    country TEXT PRIMARY KEY,
    last_number INTEGER NOT NULL CHECK (last_number >= 1)
);

-- One alert or request. `fields` is a JSON list of [key, value] pairs in the order typed;
-- `related_ref` is the `ref:` option (a case this one follows up). `forwardable` is 0 for
-- AMBER+STRICT: no post may pass the case on.
CREATE TABLE cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ref TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('alert', 'request')),
    origin_post TEXT NOT NULL,
    priority TEXT NOT NULL CHECK (priority IN ('flash', 'urgent', 'routine')),
    tlp TEXT NOT NULL CHECK (tlp IN ('CLEAR', 'GREEN', 'AMBER', 'AMBER+STRICT', 'RED')),
    category TEXT,
    grading TEXT,
    related_ref TEXT,
    fields TEXT NOT NULL DEFAULT '[]',
    text TEXT NOT NULL DEFAULT '',
    due_ms INTEGER,
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'cancelled')),
    forwardable INTEGER NOT NULL CHECK (forwardable IN (0, 1)),
    origin_room TEXT NOT NULL,
    origin_event_id TEXT NOT NULL,
    origin_sender TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    closed_ms INTEGER,
    closed_by TEXT,
    outcome TEXT,
    CHECK ((state = 'open') = (closed_ms IS NULL))
);

CREATE INDEX cases_origin_state ON cases (origin_post, state);

-- One case at one target post. The relayed message goes through the outbox; its event id
-- is known only once sent, so the delivery keeps the outbox txn_id and queries read the
-- event id from the outbox row (see storage/cases.py).
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    post TEXT NOT NULL,
    room_id TEXT NOT NULL,
    relay_txn_id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL DEFAULT 'routed'
        CHECK (state IN ('routed', 'acknowledged', 'answered')),
    routed_ms INTEGER NOT NULL,
    acknowledged_ms INTEGER,
    acknowledged_by TEXT,
    answered_ms INTEGER,
    answered_by TEXT,
    UNIQUE (case_id, post),
    CHECK ((acknowledged_ms IS NULL) = (acknowledged_by IS NULL)),
    CHECK ((answered_ms IS NULL) = (answered_by IS NULL))
);

CREATE INDEX deliveries_post ON deliveries (post, case_id);

-- Reactions and replies name the relayed event: find its outbox row by event id.
CREATE INDEX outbox_event_id ON outbox (event_id) WHERE event_id IS NOT NULL;

-- Everything that happened to a case, in order: created, routed, refused, acknowledged,
-- answered, updated, closed, cancelled (later: reminders, escalations, replies).
CREATE TABLE timeline (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    post TEXT,
    actor TEXT,
    ms INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX timeline_case ON timeline (case_id, id);
