-- Members of the makerspace CRM that lintel looked up: which person, when their data was
-- fetched (so that it can be refreshed once it is older than `[crm] stale_after`), whether
-- they were in good standing, and the card's revocation code the CRM gave.
CREATE TABLE crm_members (
    crm_id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL UNIQUE,
    fetched_at BIGINT NOT NULL,
    in_good_standing BIGINT NOT NULL,
    revocation_code TEXT
);
