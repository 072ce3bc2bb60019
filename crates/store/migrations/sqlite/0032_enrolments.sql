-- Enrolling a card by tapping it: the next unknown card tapped at `door_id` after event
-- `after_seq`, before `expires_at`, becomes `person_id`'s card.
CREATE TABLE enrolments (
    id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    door_id TEXT NOT NULL,
    after_seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- Who started it: the card is issued as theirs.
    actor TEXT NOT NULL,
    -- waiting, enrolled
    state TEXT NOT NULL,
    uid TEXT,
    credential_id TEXT
);
