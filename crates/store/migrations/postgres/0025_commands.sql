-- Door commands handed to the node that can carry them out: a door on the MQTT link is
-- driven by the node holding the link, a door behind an OSDP reader by the node with the
-- reader's serial port. The asking node writes the command; the owner takes it (once),
-- drives the door, records the event and writes what the device said; the asker reads it.
-- A command nobody took in time is given up by the asker, so that it cannot open the door
-- long after the person at it left.
CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    -- `mqtt`, or `osdp:<reader>`.
    device TEXT NOT NULL,
    door TEXT NOT NULL,
    seconds BIGINT,
    person_id TEXT,
    asked_at BIGINT NOT NULL,
    -- waiting, taken, done or given_up.
    state TEXT NOT NULL,
    taken_by TEXT,
    -- What the device did, as JSON, once done.
    outcome TEXT
);
CREATE INDEX commands_waiting ON commands (device) WHERE state = 'waiting';

-- A new command wakes the nodes that may own its device; a finished one, the asker.
CREATE TRIGGER commands_notify AFTER INSERT OR UPDATE ON commands
    FOR EACH STATEMENT EXECUTE FUNCTION lintel_notify('lintel_commands');
