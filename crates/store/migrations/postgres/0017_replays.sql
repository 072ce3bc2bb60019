-- Signed requests seen (by a key derived from their signature), until they would be too
-- old to be accepted anyway: a request replayed to any node is refused.
CREATE TABLE replays (
    key TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX replays_expiry ON replays (expires_at);
