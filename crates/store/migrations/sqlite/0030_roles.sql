-- Operators' roles: an operator token ('admin' scope) has one; tokens made before roles
-- have none and stay owners.
ALTER TABLE admin_tokens ADD COLUMN role TEXT;
-- A wall display's session lasts until it is signed out or its token revoked: it is
-- never pruned for being old or idle.
ALTER TABLE sessions ADD COLUMN lasting BIGINT NOT NULL DEFAULT 0;
