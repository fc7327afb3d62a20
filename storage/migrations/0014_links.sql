-- Links between bots (docs/links.md, commands.links, storage.links): each partner's
-- accepted directory, what this bot last published to each, the cases that crossed a
-- link, and every protocol event sent, accepted or refused.
-- Timestamps are INTEGER epoch milliseconds UTC; JSON is stored as TEXT.

-- The newest directory accepted from each link's partner (`link` is the configured
-- link name); a directory whose version is not above the stored one is stale.
CREATE TABLE link_directories (
    link TEXT PRIMARY KEY,
    version INTEGER NOT NULL CHECK (version >= 1),
    content TEXT NOT NULL,
    event_id TEXT NOT NULL,
    received_ms INTEGER NOT NULL
);

-- The directory this bot last published to each link: its version and the digest of
-- its posts (commands.links.directory_digest), to republish only when it changes.
CREATE TABLE link_published (
    link TEXT PRIMARY KEY,
    version INTEGER NOT NULL CHECK (version >= 1),
    digest TEXT NOT NULL,
    published_ms INTEGER NOT NULL
);

-- A case that crossed a link: 'outbound' (this bot offered it; `foreign_ref` is the
-- reference as offered, which is the case's own) or 'inbound' (the partner offered it;
-- `foreign_ref` is the partner's reference, which case events name).
CREATE TABLE link_cases (
    case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    link TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    foreign_ref TEXT NOT NULL,
    PRIMARY KEY (case_id, link),
    UNIQUE (link, direction, foreign_ref)
);

-- Every protocol event sent, accepted ('received') or refused, once per idempotency
-- key and direction: a second event with a key already received is a replay.
CREATE TABLE link_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    link TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('sent', 'received', 'refused')),
    event_type TEXT NOT NULL,
    key TEXT NOT NULL,
    event_id TEXT,
    case_ref TEXT,
    ms INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    UNIQUE (link, direction, key)
);

CREATE INDEX link_log_by_link ON link_log (link, id);
