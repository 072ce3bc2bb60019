-- Outbound webhooks (Standard Webhooks): endpoints other systems registered, and every
-- attempt to deliver to them. The deliveries themselves are outbox work (target
-- `webhook:<endpoint id>`), delivered in order per endpoint.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    -- JSON array of event kinds; `*` and `prefix.*` are wildcards.
    kinds TEXT NOT NULL,
    description TEXT,
    enabled BIGINT NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    -- The signing key (`whsec_...`). It signs, so it is kept as is, not hashed.
    secret TEXT NOT NULL,
    -- The key before the last rotation, still signing until `previous_until`.
    previous_secret TEXT,
    previous_until BIGINT,
    allow_http BIGINT NOT NULL DEFAULT 0,
    -- The last event considered for this endpoint.
    cursor BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE webhook_attempts (
    pk INTEGER PRIMARY KEY,
    delivery BIGINT NOT NULL,
    endpoint_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    status BIGINT,
    duration_ms BIGINT NOT NULL,
    -- The start of the answer, or why there was none.
    excerpt TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery);
