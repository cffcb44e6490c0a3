-- OpenID Connect logins in progress (one row per redirect to a provider) and
-- the one-time codes handed to `tpa-ssh login` through its loopback redirect.
-- Secrets (state, browser handle, CLI code) are stored as SHA-256 only.

CREATE TABLE oidc_logins (
    state_hash          TEXT PRIMARY KEY,
    browser_hash        TEXT NOT NULL,
    connector           TEXT NOT NULL,
    nonce               TEXT NOT NULL,
    pkce_verifier       TEXT NOT NULL,
    next_path           TEXT NOT NULL,
    cli_redirect_uri    TEXT,
    cli_code_challenge  TEXT,
    created_at          TEXT NOT NULL,
    expires_at          TEXT NOT NULL,
    used_at             TEXT
) STRICT;

CREATE INDEX oidc_logins_expires_at ON oidc_logins (expires_at);

CREATE TABLE cli_login_codes (
    code_hash       TEXT PRIMARY KEY,
    code_challenge  TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    username        TEXT NOT NULL,
    groups          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    used_at         TEXT
) STRICT;

CREATE INDEX cli_login_codes_expires_at ON cli_login_codes (expires_at);
