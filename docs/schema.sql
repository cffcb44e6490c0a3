-- The schema after all migrations, as SQLite reports it. Kept equal to the
-- migrated database by ca-server's store::tests::schema_matches_docs.

CREATE TRIGGER audit_events_append_only_delete
BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_append_only_update
BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY,
    time       TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    object     TEXT    NOT NULL,
    outcome    TEXT    NOT NULL CHECK (outcome IN ('success', 'denied', 'error')),
    reason     TEXT    NOT NULL,
    details    TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL UNIQUE
) STRICT;

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

CREATE TABLE certificates (
    serial                  TEXT    PRIMARY KEY,
    key_id                  TEXT    NOT NULL,
    principals              TEXT    NOT NULL,
    extensions              TEXT    NOT NULL,
    critical_options        TEXT    NOT NULL,
    valid_after             INTEGER NOT NULL,
    valid_before            INTEGER NOT NULL,
    subject_key_fingerprint TEXT    NOT NULL,
    ca_key_fingerprint      TEXT    NOT NULL,
    request_id              TEXT,
    issued_by               TEXT    NOT NULL,
    issued_at               TEXT    NOT NULL,
    audit_seq               INTEGER NOT NULL UNIQUE REFERENCES audit_events (seq)
) STRICT;

CREATE INDEX auth_tokens_expires_at ON auth_tokens (expires_at);

CREATE INDEX certificates_request_id ON certificates (request_id);

CREATE INDEX certificates_valid_before ON certificates (valid_before);
