-- Attachments on cases (see commands.attachments). Each attachment is a timeline entry of
-- kind 'attached' whose detail holds the event id, the SHA-256 of the decrypted bytes,
-- size, MIME type and file name; the relayed media events are ordinary outbox rows.
-- This index finds the alert a bare attachment follows: the sender's newest case in
-- the room, within the configured window.
CREATE INDEX cases_origin_sender ON cases (origin_room, origin_sender, created_ms);
