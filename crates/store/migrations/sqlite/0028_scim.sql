-- SCIM 2.0: the identity provider's own id for a group it provisions (its `externalId`).
-- A person's are external ids (`scim` and `scim:userName`).
ALTER TABLE access_groups ADD COLUMN scim_external_id TEXT;
