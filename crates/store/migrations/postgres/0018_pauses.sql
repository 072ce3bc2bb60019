-- Upstreams every node leaves alone for a while (the makerspace CRM after a lookup timed
-- out): one node's timeout spares the doors of all nodes the wait.
CREATE TABLE pauses (
    name TEXT PRIMARY KEY,
    until BIGINT NOT NULL,
    reason TEXT NOT NULL
);
