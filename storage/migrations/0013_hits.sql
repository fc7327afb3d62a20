-- Hits (commands.hits, handlers.hits): the entities of every case that is not RED, the
-- keys the index finds them by, and the links found between two cases.
-- Timestamps are INTEGER epoch milliseconds UTC.

-- One normalised entity of a case (commands.entities): `value` is its key (`01A123BC`,
-- `+998901234567`) or, for a name, the name as typed; removed when the case is purged.
CREATE TABLE entities (
    id INTEGER PRIMARY KEY,
    case_id INTEGER NOT NULL REFERENCES cases (id),
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    dob TEXT,
    country TEXT,
    created_ms INTEGER NOT NULL,
    UNIQUE (case_id, kind, value)
);

-- What the index looks an entity up by: `plate:01A123BC`, or a name's blocking keys
-- (`n:bdl mhmd`, `d:mhmd 1980-02-03`, see commands.names.blocking_keys).
CREATE TABLE entity_keys (
    key TEXT NOT NULL,
    entity_id INTEGER NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    PRIMARY KEY (key, entity_id)
) WITHOUT ROWID;

-- At most one link per pair of cases, the earlier first: found once, told once; a link
-- dismissed with !unlink keeps its row (`unlinked_ms`) so the pair is not reported again.
-- `earlier_value`/`later_value` are what matched as each case holds it (content: each
-- is emptied when its case is purged).
CREATE TABLE hits (
    earlier_case_id INTEGER NOT NULL REFERENCES cases (id),
    later_case_id INTEGER NOT NULL REFERENCES cases (id),
    kind TEXT NOT NULL,
    earlier_value TEXT,
    later_value TEXT,
    score INTEGER NOT NULL,
    found_ms INTEGER NOT NULL,
    unlinked_ms INTEGER,
    unlinked_by TEXT,
    PRIMARY KEY (earlier_case_id, later_case_id)
);

CREATE INDEX entities_by_case ON entities (case_id);
CREATE INDEX entity_keys_by_entity ON entity_keys (entity_id);
CREATE INDEX hits_by_later ON hits (later_case_id);
