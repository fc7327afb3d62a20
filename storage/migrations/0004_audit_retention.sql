-- The audit log, and retention of finished cases.
-- Timestamps are INTEGER epoch milliseconds UTC; JSON is stored as TEXT.

-- Every action, hash-chained (see storage/audit.py): `hash` covers every other column and
-- `prev_hash`, the hash of entry seq - 1 (64 zeros for the first). `detail` holds ids and
-- reasons, never message content.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    case_ref TEXT,
    room_id TEXT,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
);
CREATE INDEX audit_log_ts ON audit_log (ts_ms);
CREATE INDEX audit_log_case ON audit_log (case_ref);

-- Append-only: no entry is changed or removed, and a new one must extend the chain.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_log_chained BEFORE INSERT ON audit_log
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_log)
  OR NEW.prev_hash IS NOT COALESCE((SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1),
                                   '0000000000000000000000000000000000000000000000000000000000000000')
BEGIN
    SELECT RAISE(ABORT, 'an audit entry must follow the last one');
END;

-- When a finished case's content was removed under the retention policy (see
-- storage/retention.py); NULL while it is kept.
ALTER TABLE cases ADD COLUMN purged_ms INTEGER;

-- Retention looks for finished cases by when they were finished.
CREATE INDEX cases_finished ON cases (state, closed_ms) WHERE purged_ms IS NULL;
