-- What a token may do: `admin` (everything, as before) or `decisions` (only ask
-- POST /api/v1/decisions: a makerspace station on the shop floor), optionally for one
-- door only.
ALTER TABLE admin_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE admin_tokens ADD COLUMN door TEXT;
