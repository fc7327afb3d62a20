-- A supervisor's direct room is recorded before it is created (room_id NULL: being
-- created), so an outage or a crash while opening it never leaves a second room behind;
-- the invite is sent (and retried) on that one room, and content goes in only once the
-- supervisor has joined. Epoch ms UTC.
CREATE TABLE direct_rooms_new (
    user_id TEXT PRIMARY KEY,
    room_id TEXT,
    created_ms INTEGER NOT NULL,
    invited_ms INTEGER,
    joined_ms INTEGER
);
INSERT INTO direct_rooms_new (user_id, room_id, created_ms, invited_ms)
    SELECT user_id, room_id, created_ms, created_ms FROM direct_rooms;
DROP TABLE direct_rooms;
ALTER TABLE direct_rooms_new RENAME TO direct_rooms;
