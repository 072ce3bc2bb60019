-- OpenID sign-ins to the web UI under way (the authorization-code flow with PKCE): what
-- the callback needs, in the database so that it may come back to any node. Kept by the
-- SHA-256 of `state`; a row is taken (deleted) by the first callback that names it.
CREATE TABLE oidc_sign_ins (
    state_digest TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    next TEXT NOT NULL,
    -- Who started it (the client's address), so that one client cannot fill the table.
    client TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX oidc_sign_ins_client ON oidc_sign_ins (client);
CREATE INDEX oidc_sign_ins_created ON oidc_sign_ins (created_at);
