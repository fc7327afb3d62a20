-- Indexes for the figures `/metrics` counts at every scrape (see storage/metrics.py), so
-- that a scrape reads small indexes instead of whole tables: cases by priority and kind,
-- fired chase steps by action (only fired steps are in it; planning writes none), and
-- the notices about messages the bot could not decrypt (a handful among all messages).
CREATE INDEX cases_priority_kind ON cases (priority, kind);
CREATE INDEX chase_steps_fired ON chase_steps (action) WHERE state = 'fired';
CREATE INDEX outbox_undecryptable ON outbox (kind) WHERE kind = 'undecryptable';
