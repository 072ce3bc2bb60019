-- lintel's directory and event log (SQLite). Times are unix microseconds; flags are 0/1
-- BIGINTs so that both backends read them alike.
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (name, value) VALUES ('directory_version', 0);

CREATE TABLE people (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    email TEXT,
    phone TEXT,
    email_verified BIGINT NOT NULL DEFAULT 0,
    phone_verified BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active',
    skills TEXT NOT NULL DEFAULT '[]',
    attributes TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX people_email ON people (email);

CREATE TABLE external_ids (
    system TEXT NOT NULL,
    external_id TEXT NOT NULL,
    person_pk BIGINT NOT NULL REFERENCES people (pk) ON DELETE CASCADE,
    PRIMARY KEY (system, external_id)
);
CREATE INDEX external_ids_person ON external_ids (person_pk);

CREATE TABLE credentials (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    person_pk BIGINT REFERENCES people (pk) ON DELETE SET NULL,
    kind TEXT NOT NULL,
    card_uid TEXT,
    revocation_code TEXT,
    digest TEXT,
    status TEXT NOT NULL DEFAULT 'active',
    status_reason TEXT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE UNIQUE INDEX credentials_live_card ON credentials (card_uid) WHERE status = 'active' AND card_uid IS NOT NULL;
CREATE UNIQUE INDEX credentials_live_digest ON credentials (digest) WHERE status = 'active' AND digest IS NOT NULL;
CREATE INDEX credentials_person ON credentials (person_pk);

CREATE TABLE doors (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    driver TEXT NOT NULL,
    fail_mode TEXT NOT NULL,
    required_skill TEXT,
    open_seconds BIGINT NOT NULL,
    attendance BIGINT NOT NULL,
    online BIGINT,
    last_seen BIGINT,
    last_opened BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE access_groups (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE group_doors (
    group_pk BIGINT NOT NULL REFERENCES access_groups (pk) ON DELETE CASCADE,
    door_pk BIGINT NOT NULL REFERENCES doors (pk) ON DELETE CASCADE,
    PRIMARY KEY (group_pk, door_pk)
);

CREATE TABLE group_members (
    group_pk BIGINT NOT NULL REFERENCES access_groups (pk) ON DELETE CASCADE,
    person_pk BIGINT NOT NULL REFERENCES people (pk) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_pk, person_pk)
);
CREATE INDEX group_members_person ON group_members (person_pk);

CREATE TABLE grants (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    person_pk BIGINT REFERENCES people (pk) ON DELETE CASCADE,
    group_pk BIGINT REFERENCES access_groups (pk) ON DELETE CASCADE,
    door_group_pk BIGINT REFERENCES access_groups (pk) ON DELETE CASCADE,
    has_doors BIGINT NOT NULL DEFAULT 0,
    schedule TEXT,
    valid_from BIGINT,
    valid_until BIGINT,
    passes BIGINT,
    passes_used BIGINT NOT NULL DEFAULT 0,
    source TEXT,
    created_at BIGINT NOT NULL,
    CHECK ((person_pk IS NULL) <> (group_pk IS NULL))
);
CREATE INDEX grants_person ON grants (person_pk);
CREATE INDEX grants_group ON grants (group_pk);

CREATE TABLE grant_doors (
    grant_pk BIGINT NOT NULL REFERENCES grants (pk) ON DELETE CASCADE,
    door_pk BIGINT NOT NULL REFERENCES doors (pk) ON DELETE CASCADE,
    PRIMARY KEY (grant_pk, door_pk)
);

CREATE TABLE events (
    -- No AUTOINCREMENT: events are never deleted, so rowids only grow, and each commit
    -- saves a write to sqlite_sequence.
    seq INTEGER PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    allowed BIGINT,
    reason TEXT,
    person_id TEXT,
    door_id TEXT,
    credential_id TEXT,
    grant_id TEXT,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_person ON events (person_id, seq);
CREATE INDEX events_door ON events (door_id, seq);
CREATE INDEX events_kind_at ON events (kind, at);

CREATE TABLE admin_tokens (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
