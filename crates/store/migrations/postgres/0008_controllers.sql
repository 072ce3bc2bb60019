-- MQTT door controllers (docs/mqtt.md): the allow-list version lintel wants each one to
-- hold and the version it acknowledged, its online state from the retained status and
-- Last Will, and the salt of its card hashes (stable, so unchanged lists hash the same).
CREATE TABLE controllers (
    id TEXT PRIMARY KEY,
    salt TEXT NOT NULL,
    list_version BIGINT NOT NULL DEFAULT 0,
    list_digest TEXT,
    list_issued_at BIGINT,
    list_cards BIGINT NOT NULL DEFAULT 0,
    acked_version BIGINT NOT NULL DEFAULT 0,
    refused TEXT,
    online BIGINT,
    last_seen BIGINT
);

-- Offline decisions a controller uploaded, by its own id for them: each is recorded once,
-- however often the controller sends it again.
CREATE TABLE controller_uploads (
    controller TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    PRIMARY KEY (controller, upload_id)
);
