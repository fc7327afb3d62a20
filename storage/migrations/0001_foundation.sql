-- Foundation: outbox, exactly-once inbox, undecryptable events, rooms, small state.
-- Timestamps are INTEGER epoch milliseconds UTC; JSON is stored as TEXT.

-- Every outgoing Matrix event, written before it is sent. txn_id is fixed at
-- enqueue time so a resend after a crash or outage is deduplicated by the
-- homeserver. AUTOINCREMENT: an id seen in a log never names another message.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content TEXT NOT NULL,
    txn_id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    sent_ms INTEGER,
    event_id TEXT,
    last_error TEXT,
    kind TEXT NOT NULL DEFAULT 'reply',
    case_ref TEXT,
    failed_ms INTEGER,
    CHECK ((state = 'sent') = (sent_ms IS NOT NULL AND event_id IS NOT NULL)),
    CHECK ((state = 'failed') = (failed_ms IS NOT NULL))
);

-- The worker reads the oldest pending message of each room; metrics count by state.
CREATE INDEX outbox_state_room ON outbox (state, room_id, id);

-- Command events already acted on; claimed in the same transaction as the effects.
CREATE TABLE processed_events (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    processed_ms INTEGER NOT NULL
);

-- Events we could not decrypt yet: we ask for the keys and, failing that, tell the sender.
CREATE TABLE undecryptable_events (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    session_id TEXT NOT NULL,
    source TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_key_request_ms INTEGER,
    notified_ms INTEGER
);

CREATE INDEX undecryptable_events_received ON undecryptable_events (received_ms);

-- Rooms the bot is in. joined_ms is the first join and is never overwritten.
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    joined_ms INTEGER NOT NULL,
    unencrypted_warned_ms INTEGER
);

-- Small named values such as the sync token.
CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
