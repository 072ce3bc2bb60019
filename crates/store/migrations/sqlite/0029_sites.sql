-- Sites: the locations (buildings, the spaces of a chain) that doors belong to. Every
-- door is in one; a single location has the one made here and never needs another.
CREATE TABLE sites (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- An IANA time zone name: the site's local time for its reports.
    time_zone TEXT,
    created_at BIGINT NOT NULL
);
INSERT INTO sites (id, name, created_at) VALUES ('main', 'Main site', 0);
ALTER TABLE doors ADD COLUMN site TEXT NOT NULL DEFAULT 'main';
CREATE INDEX doors_site ON doors (site);
-- Entries kept for attendance after their events were pruned keep their door's site.
ALTER TABLE attendance_entries ADD COLUMN site TEXT;
-- An endpoint limited to one site gets only the events at that site's doors.
ALTER TABLE webhook_endpoints ADD COLUMN site TEXT;
