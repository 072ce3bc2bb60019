-- Guest passes: a visitor's link to chosen doors for a while. The visitor is the person
-- `person_id` (with a personal secret and a grant); the pass stays on record after it
-- ends or is revoked, when the person is removed (`closed_at`).
CREATE TABLE guest_passes (
    id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT,
    -- A JSON array of door ids.
    doors TEXT NOT NULL,
    valid_from BIGINT NOT NULL,
    valid_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT,
    closed_at BIGINT
);
CREATE INDEX guest_passes_open ON guest_passes (valid_until) WHERE closed_at IS NULL;
