-- Doorbell snapshots, served to Slack at an unguessable URL for a limited time.
CREATE TABLE doorbell_snapshots (
    id TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    image BLOB NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX doorbell_snapshots_created ON doorbell_snapshots (created_at);
