-- Login sessions (web) and API tokens. Only the SHA-256 of a token is stored.

CREATE TABLE auth_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('web_session', 'api')),
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    username    TEXT NOT NULL,
    groups      TEXT NOT NULL,
    csrf_token  TEXT,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT
) STRICT;

CREATE INDEX auth_tokens_expires_at ON auth_tokens (expires_at);
