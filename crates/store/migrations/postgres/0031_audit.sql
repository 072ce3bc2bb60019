-- The audit trail: who made each change (`token:<name>`, `operator:<person>`, `cli`,
-- `integration:<name>`, `scim:<token>`); empty for what no one did (decisions, devices).
ALTER TABLE events ADD COLUMN actor TEXT;
