-- Readiness writes (and removes) a row here: the store is ready only when it can write,
-- with room for new pages (a full disk refuses exactly those).
CREATE TABLE write_probe (data BLOB NOT NULL);
