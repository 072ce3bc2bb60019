-- A lock vendor's cloud. What lintel last told a lock cloud about each person (a digest of it), so that only
-- changes are sent.
CREATE TABLE lockcloud_users (
    person_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
);

-- Entries reported by other systems (a lock cloud's "opened"), each recorded once.
CREATE TABLE external_entries (
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    PRIMARY KEY (source, external_id)
);
