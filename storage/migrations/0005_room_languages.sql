-- The language a room chose with `!lang` (en, ru, ar); a room without a row reads its
-- post's configured language. Timestamps are INTEGER epoch milliseconds UTC.
CREATE TABLE room_languages (
    room_id TEXT PRIMARY KEY,
    language TEXT NOT NULL CHECK (language IN ('en', 'ru', 'ar')),
    set_by TEXT NOT NULL,
    set_ms INTEGER NOT NULL
);
