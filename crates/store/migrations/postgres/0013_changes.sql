-- The change feed: what each directory version touched (people, credentials, doors,
-- groups, memberships, grants, as JSON), written in the transaction that made the version.
-- Another node brings its decision index up to date by reading what the versions it has
-- not seen touched, instead of reloading the whole directory.
CREATE TABLE changes (
    version BIGINT PRIMARY KEY,
    touched TEXT NOT NULL
);

-- Wake-ups for the other nodes, sent when the writing transaction commits: a new directory
-- version, a new event. The payload is the writing node's name (the session setting
-- `lintel.node`), so that a node can ignore its own; the facts stay in the tables.
CREATE FUNCTION lintel_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], COALESCE(current_setting('lintel.node', true), ''));
    RETURN NULL;
END;
$$;
CREATE TRIGGER changes_notify AFTER INSERT ON changes
    FOR EACH STATEMENT EXECUTE FUNCTION lintel_notify('lintel_directory');
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION lintel_notify('lintel_events');
