-- "Seen": the first read receipt on a relayed case (or on anything later in the target
-- room) from a member of that room other than the bot. Epoch ms UTC, and who.
ALTER TABLE deliveries ADD COLUMN seen_ms INTEGER;
ALTER TABLE deliveries ADD COLUMN seen_by TEXT;
