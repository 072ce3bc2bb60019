-- Work with other systems. The inbox holds webhook deliveries, stored before they are
-- acknowledged and processed afterwards; the outbox holds calls to other systems, each
-- with a unique idempotency key, retried with backoff until done or failed for good.
CREATE TABLE inbox (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    done_at BIGINT
);
CREATE INDEX inbox_due ON inbox (state, next_attempt_at);

CREATE TABLE outbox (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    done_at BIGINT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);

-- Members of the coworking platform: which person, what lintel last applied, and the
-- check-in token the platform was told.
CREATE TABLE cobot_members (
    membership_id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL UNIQUE,
    plan_id TEXT NOT NULL,
    access_until BIGINT,
    check_in_token TEXT NOT NULL,
    token_registered BIGINT NOT NULL DEFAULT 0,
    synced_at BIGINT NOT NULL
);

-- Room bookings lintel turned into grants, and the visitors it created for them.
CREATE TABLE cobot_bookings (
    booking_id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    visitor BIGINT NOT NULL,
    ends_at BIGINT NOT NULL
);
