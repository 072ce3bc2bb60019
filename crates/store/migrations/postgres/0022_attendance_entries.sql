-- Attendance outlives the events it is counted from: when old events are pruned
-- ([events] retain_days), each allowed entry at a door that counts attendance stays here
-- as who and when, nothing else.
CREATE TABLE attendance_entries (
    person_id TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX attendance_entries_at ON attendance_entries (at);
CREATE INDEX attendance_entries_person ON attendance_entries (person_id);
