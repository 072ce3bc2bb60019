-- Sessions of the web UI, so that a session made on one node works on the others and
-- outlives a restart. Only the SHA-256 of a session's id is kept; who holds it is JSON
-- (an admin token by name and digest, or an operator by person id).
CREATE TABLE sessions (
    id_digest TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL
);
CREATE INDEX sessions_seen ON sessions (seen_at);
