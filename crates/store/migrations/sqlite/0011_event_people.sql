-- Events by person, indexed in bulk a second or so after they are written (see
-- events.rs). An index on events (person_id, seq) cost every decision a page write at a
-- random place of its own, the bulk of what a decision wrote; a sorted bulk insert
-- writes each person's page once per round. Events not yet indexed (seq above
-- 'event_people_indexed') are found by scanning the short tail of the log.
CREATE TABLE event_people (
    person_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (person_id, seq)
) WITHOUT ROWID;
INSERT INTO event_people (person_id, seq) SELECT person_id, seq FROM events WHERE person_id IS NOT NULL;
INSERT INTO meta (name, value) VALUES ('event_people_indexed', (SELECT COALESCE(MAX(seq), 0) FROM events));
DROP INDEX events_person;
