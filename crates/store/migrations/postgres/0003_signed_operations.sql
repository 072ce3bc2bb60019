-- Signed operations: users' registered Ed25519 keys, lock administrators, the operation
-- ids already used (replay protection) and unlocks waiting for an offline door.
CREATE TABLE user_keys (
    id TEXT PRIMARY KEY,
    person_pk BIGINT NOT NULL REFERENCES people (pk) ON DELETE CASCADE,
    public_key TEXT NOT NULL,
    serial TEXT NOT NULL,
    not_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX user_keys_person ON user_keys (person_pk);

CREATE TABLE lock_admins (
    door_pk BIGINT NOT NULL REFERENCES doors (pk) ON DELETE CASCADE,
    person_pk BIGINT NOT NULL REFERENCES people (pk) ON DELETE CASCADE,
    PRIMARY KEY (door_pk, person_pk)
);
CREATE INDEX lock_admins_person ON lock_admins (person_pk);

CREATE TABLE used_operations (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX used_operations_expiry ON used_operations (expires_at);

CREATE TABLE queued_operations (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    door_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
