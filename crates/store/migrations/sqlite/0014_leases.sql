-- Work that must run on one node at a time (a platform's sync, the queue of signed
-- unlocks, the MQTT link) is done by the node holding its lease: taken when free or
-- expired, renewed while held, given up on shutdown. A node that dies stops renewing, and
-- another takes over once the lease expires.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
