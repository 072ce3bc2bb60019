-- Anti-passback zones. A zone's entry doors let a person in, its exit doors out; a person
-- inside may not enter again before they have left (`hard`: refused; `soft`: let in,
-- with an alarm) until `reset_minutes` after their last passage. A door is in one zone at
-- most. `zone_presence` is each person's last passage, kept by the decision log's commit.
CREATE TABLE zones (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    strictness TEXT NOT NULL,
    reset_minutes BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE zone_doors (
    door_id TEXT PRIMARY KEY REFERENCES doors (id) ON DELETE CASCADE,
    zone_pk BIGINT NOT NULL REFERENCES zones (pk) ON DELETE CASCADE,
    direction TEXT NOT NULL
);
CREATE INDEX zone_doors_zone ON zone_doors (zone_pk);
CREATE TABLE zone_presence (
    zone_pk BIGINT NOT NULL REFERENCES zones (pk) ON DELETE CASCADE,
    person_id TEXT NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    inside BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (zone_pk, person_id)
);

-- When the door's held-open warning was given (for the open that is still going on), so
-- that a node taking over the alarm watch does not warn twice.
ALTER TABLE doors ADD COLUMN held_warned_at BIGINT;
