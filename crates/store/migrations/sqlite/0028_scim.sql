-- SCIM 2.0: groups an identity provider created (the only ones it may read or change),
-- and the provider's own id for each (its `externalId`). A person's are external ids
-- (`scim` and `scim:userName`).
ALTER TABLE access_groups ADD COLUMN scim_managed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE access_groups ADD COLUMN scim_external_id TEXT;
