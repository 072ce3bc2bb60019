-- The change feed: what each directory version touched (people, credentials, doors,
-- groups, memberships, grants, as JSON), written in the transaction that made the version.
-- Another process (a second node on PostgreSQL, the CLI beside a SQLite server) brings
-- its decision index up to date by reading what the versions it has not seen touched,
-- instead of reloading the whole directory.
CREATE TABLE changes (
    version INTEGER PRIMARY KEY,
    touched TEXT NOT NULL
);
