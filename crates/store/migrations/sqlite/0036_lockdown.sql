-- Lockdown: a door in lockdown refuses every credential but those of people exempt from
-- it (`attributes.lockdown_exempt`). Who put it there and when, while it is.
ALTER TABLE doors ADD COLUMN lockdown_by TEXT;
ALTER TABLE doors ADD COLUMN lockdown_at BIGINT;
