-- When the bot told a room that it serves nobody there (no post's, supervisors' or
-- configured person's room): it explains once, then stays silent. Epoch ms UTC.
ALTER TABLE rooms ADD COLUMN unknown_explained_ms INTEGER;
