-- Wrong guesses (PINs, personal secrets, backup codes, sign-in passwords) per source, when
-- several nodes share the database: a guesser spreading attempts over the nodes meets one
-- limit. A single node keeps them in memory.
CREATE TABLE guesses (
    source TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_failure BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    refusal_recorded BIGINT NOT NULL
);
