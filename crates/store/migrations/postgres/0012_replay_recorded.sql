-- A replayed operation is recorded once (its first replay), so that replaying a captured
-- token cannot fill the event log.
ALTER TABLE used_operations ADD COLUMN replay_recorded BIGINT NOT NULL DEFAULT 0;
