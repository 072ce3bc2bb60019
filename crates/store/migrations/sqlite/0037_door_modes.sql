-- Door modes. A door may have an unlock schedule (JSON: weekly rules in a time zone, and
-- first to arrive) that holds it unlocked, may be on an exit route (egress: an emergency
-- releases it), and may carry an operator's hold (unlocked or secure, until a time).
-- `mode` is the mode lintel last put the door in (the mode worker keeps it); `told_held`
-- whether its device was last told to hold the lock released (NULL: to be told again, as
-- after the device reconnected).
ALTER TABLE doors ADD COLUMN unlock_schedule TEXT;
ALTER TABLE doors ADD COLUMN egress BIGINT NOT NULL DEFAULT 0;
ALTER TABLE doors ADD COLUMN hold_state TEXT;
ALTER TABLE doors ADD COLUMN hold_until BIGINT;
ALTER TABLE doors ADD COLUMN hold_by TEXT;
ALTER TABLE doors ADD COLUMN mode TEXT NOT NULL DEFAULT 'secure';
ALTER TABLE doors ADD COLUMN told_held BIGINT;

-- Days on which a site's unlock schedules do not apply (holidays), local dates, both ends
-- included. `uid` is the iCalendar event's UID when imported, so a calendar loads again
-- without duplicates.
CREATE TABLE holidays (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    name TEXT NOT NULL,
    first_day TEXT NOT NULL,
    last_day TEXT NOT NULL,
    uid TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX holidays_site ON holidays (site, first_day);

-- An emergency release of a site (a fire panel, a building system, an operator): its
-- exit-route doors are held open, over lockdown, until an operator resets it.
ALTER TABLE sites ADD COLUMN emergency_by TEXT;
ALTER TABLE sites ADD COLUMN emergency_at BIGINT;

-- Door inputs (a door position switch, an exit button, tamper) and alarms. `position` is
-- what the door's position switch said last (`open` or `closed`) and since when; an alarm
-- stays until its condition cleared and an operator acknowledged it.
ALTER TABLE doors ADD COLUMN held_open_seconds BIGINT NOT NULL DEFAULT 30;
ALTER TABLE doors ADD COLUMN position TEXT;
ALTER TABLE doors ADD COLUMN position_at BIGINT;
-- The kinds of the door's open alarms, comma-separated, kept with the alarms.
ALTER TABLE doors ADD COLUMN alarms TEXT NOT NULL DEFAULT '';
CREATE TABLE alarms (
    id TEXT PRIMARY KEY,
    door TEXT NOT NULL,
    kind TEXT NOT NULL,
    raised_at BIGINT NOT NULL,
    cleared_at BIGINT,
    acked_at BIGINT,
    acked_by TEXT,
    note TEXT
);
CREATE INDEX alarms_open ON alarms (door, kind, acked_at, cleared_at);

-- How far a reader of the event log has got (notifications: the last event it queued).
CREATE TABLE event_cursors (
    name TEXT PRIMARY KEY,
    after_seq BIGINT NOT NULL
);
